//! `sdpcfg`: the SKA SDP configuration database from the command line, with the
//! commands, output and exit codes of the Python `sdpcfg` (see `sdpcfg --help`).
//!
//! Order of work: options and words → input checks (Python's messages) → standard
//! input and parameters → connect → run. Nothing touches etcd until the input is valid.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod commands;
mod edit;
mod guard;
mod input;
mod output;
mod report;
mod show;
mod status;
mod table;
mod wait;
mod workflows;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use sdp_config::{Config, ConnectionSettings};

use crate::args::Cli;
use crate::output::Out;

/// Seconds to wait for etcd before reporting it unreachable.
const TIMEOUT_SECS: f64 = 5.0;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let command = match args::command(&cli) {
        Ok(command) => command,
        Err(message) => {
            let _ = Cli::command()
                .error(clap::error::ErrorKind::InvalidValue, message)
                .print();
            return ExitCode::FAILURE;
        }
    };
    let problems = command.problems();
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("{problem}");
        }
        return ExitCode::FAILURE;
    }
    match run(cli, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", report::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, command: args::Command) -> anyhow::Result<()> {
    let action = input::prepare(command, input::read_stdin)?;
    let mut settings = ConnectionSettings::from_env()?;
    if let Some(prefix) = cli.prefix {
        settings.prefix = prefix;
    }
    settings.timeout_secs = TIMEOUT_SECS;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = Config::connect(&settings).await?;
        commands::run(&db, action, Out { quiet: cli.quiet }).await
    })
}

/// Output closed by the reader (`sdpcfg ls /pb/ | head -1`): not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
