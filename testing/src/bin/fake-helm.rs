//! `fake-helm`: a stand-in for the `helm` CLI (v4) in tests, for the commands that need a
//! Kubernetes cluster.
//!
//! It accepts the subset of helm's command line the deployer uses, rejects unknown flags
//! the way helm does (`Error: unknown flag: --x`, exit 1) and keeps release state in a
//! directory instead of a cluster. Everything lives under `$FAKE_HELM_DIR`:
//!
//! - `calls.jsonl`: one JSON line per call, written when the call starts:
//!   `{"argv": [...], "env": ["<name of each environment variable>"],
//!   "values": ["<content of each -f file>"], "values_modes": [0o600],
//!   "t": <unix ms>, "pid": <pid>}`.
//! - `releases/<namespace>/<name>.json`: each release (status, revision, labels, chart,
//!   values, description, history, and `installs`: how many times it was created from
//!   nothing).
//! - `repos.json`: repositories added with `repo add`.
//! - `faults.json` (written by tests): a list of rules applied to mutating commands
//!   (`upgrade`, `install`, `uninstall`, `rollback`), each
//!   `{"kind": "fail" | "hang" | "pending" | "delay", "count": N (absent: always),
//!   "release": "name" (absent: any), "command": "upgrade" (absent: any),
//!   "message": "…" (fail, pending), "ms": 1000 (delay)}`. The first matching rule with
//!   a count left applies and its count is decremented. `fail` exits 1 with
//!   `Error: <message>` before touching the release; `hang` marks the release pending and
//!   sleeps until killed; `pending` marks the release pending and exits 1, leaving it
//!   stuck as a killed helm would; `delay` sleeps before finishing.
//!
//! Simpler forms of the same: a file `fail`, `hang` or `pending` in `$FAKE_HELM_DIR`
//! holding `N message` applies to the next N mutating calls, and `FAKE_HELM_HANG=1` makes
//! every mutating call hang.
//!
//! `FAKE_HELM_DELAY_MS` adds a delay to every mutating command (between marking the
//! release `pending-*` and finishing, as a real install spends its time). `template`
//! runs the real helm given by `FAKE_HELM_REAL` when set, otherwise prints a stub
//! manifest. Like helm, a release in `pending-*` refuses upgrades with "another operation
//! (install/upgrade/rollback) is in progress".

#[path = "fake-helm/args.rs"]
mod args;
#[path = "fake-helm/commands.rs"]
mod commands;
#[path = "fake-helm/store.rs"]
mod store;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use args::parse;
use store::Fake;

/// Errors are helm's messages (printed after `Error: `).
type Res<T> = Result<T, String>;

const VERSION: &str = "v4.1.4+fake";
const PENDING: [&str; 3] = ["pending-install", "pending-upgrade", "pending-rollback"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match run(&args) {
        Ok(out) => {
            print!("{out}");
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Res<String> {
    let (command, cli) = parse(args)?;
    if command == "version" {
        return Ok(if cli.has("short") {
            format!("{VERSION}\n")
        } else {
            format!(
                "version.BuildInfo{{Version:\"{VERSION}\", GitCommit:\"fake\", GitTreeState:\"clean\", GoVersion:\"fake\"}}\n"
            )
        });
    }
    let fake = Fake::from_env()?;
    fake.record(args, &cli)?;
    match command.as_str() {
        "upgrade" => fake.upgrade(&cli, cli.has("install")),
        "install" => fake.upgrade(&cli, true),
        "uninstall" | "delete" | "del" | "un" => fake.uninstall(&cli),
        "list" | "ls" => fake.list(&cli),
        "history" | "hist" => fake.history(&cli),
        "rollback" => fake.rollback(&cli),
        "status" => fake.status(&cli),
        "template" => fake.template(args, &cli),
        "repo" => fake.repo(&cli),
        other => Err(format!("unknown command \"{other}\" for \"helm\"")),
    }
}

/// What a fault rule asks for.
enum Fault {
    Fail(String),
    Hang,
    Pending(String),
    Delay(Duration),
}
