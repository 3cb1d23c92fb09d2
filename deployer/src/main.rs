//! `sdp-deployer`: the SDP Helm deployer daemon.

use std::process::ExitCode;

use clap::Parser;
use sdp_deployer::{Settings, run};
use sdp_runtime::{logging, program};

fn main() -> ExitCode {
    let settings = Settings::parse();
    logging::init(&settings.daemon.log_level, settings.daemon.log_json);
    program::run("sdp-deployer", |shutdown| run(settings, shutdown))
}
