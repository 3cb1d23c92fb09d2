//! `sdp-controller`: the SDP processing controller daemon.

use std::process::ExitCode;

use clap::Parser;
use sdp_controller::{Settings, run};
use sdp_runtime::{logging, program};

fn main() -> ExitCode {
    let settings = Settings::parse();
    logging::init(&settings.daemon.log_level, settings.daemon.log_json);
    program::run("sdp-controller", |shutdown| run(settings, shutdown))
}
