//! `sdp-controller`: the SDP processing controller daemon.

use std::process::ExitCode;

use clap::Parser;
use sdp_controller::{Settings, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    init_tracing(&settings);
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signals(shutdown.clone()));
    match run(settings, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                error = format!("{:#}", anyhow::Error::from(e)),
                "processing controller stopped"
            );
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` if set, else `SDP_LOG_LEVEL`; JSON lines with `SDP_LOG_JSON=true`.
fn init_tracing(settings: &Settings) {
    let directive = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| settings.log_level.clone());
    let (filter, bad) = match EnvFilter::try_new(&directive) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if settings.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    if let Some(e) = bad {
        tracing::warn!(directive, error = %e, "invalid log filter; logging at info");
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn on_signals(shutdown: CancellationToken) {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::error!("cannot listen for SIGTERM");
        return;
    };
    for first in [true, false] {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if first {
            tracing::info!("signal received: shutting down (send another to exit at once)");
            shutdown.cancel();
        } else {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}
