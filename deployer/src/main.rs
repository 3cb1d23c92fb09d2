//! `sdp-deployer`: settings, logging, signals; the work is in the library.

use std::process::ExitCode;

use clap::Parser;
use sdp_deployer::Settings;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn init_tracing(settings: &Settings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&settings.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if settings.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// SIGINT or SIGTERM cancels `shutdown`; a second signal exits at once.
fn handle_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if n > 0 {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            tracing::info!("signal received: stopping (send another to exit at once)");
            shutdown.cancel();
        }
    });
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    init_tracing(&settings);
    let shutdown = CancellationToken::new();
    if let Err(e) = handle_signals(shutdown.clone()) {
        tracing::error!(error = %e, "cannot install signal handlers");
        return ExitCode::FAILURE;
    }
    match sdp_deployer::run(settings, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sdp-deployer failed");
            eprintln!("sdp-deployer: {e}");
            ExitCode::FAILURE
        }
    }
}
