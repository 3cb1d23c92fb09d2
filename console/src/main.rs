//! `sdp-console`: the live, read-only web console of SDP processing control.

use std::process::ExitCode;

use clap::Parser;
use sdp_console::{Settings, run};
use sdp_runtime::{logging, program};

fn main() -> ExitCode {
    let settings = Settings::parse();
    logging::init(&settings.daemon.log_level, settings.daemon.log_json);
    program::run("sdp-console", |shutdown| run(settings, shutdown))
}
