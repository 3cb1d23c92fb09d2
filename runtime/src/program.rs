//! The frame of every SDP program's `main`: an async runtime, signals, the program's body,
//! and its exit status.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::signals;

/// How long background work (a stuck name lookup, a blocking read) may hold up the exit
/// once the body has returned.
const RUNTIME_STOP: Duration = Duration::from_secs(1);

/// Run `body` on a multi-threaded runtime with a token that the first SIGINT or SIGTERM
/// cancels; a second signal exits at once with status 130. Exit status 0 when `body`
/// succeeds, 1 when it fails, with the error and its causes logged (initialise logging
/// first, see [`crate::logging`]).
///
/// This is the one place where an SDP program calls `std::process::exit`.
pub fn run<F, Fut, E>(program: &str, body: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "{program}: cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let signals = match signals::install() {
            Ok(s) => s,
            Err(e) => return Err(anyhow::Error::from(e).context("cannot listen for signals")),
        };
        tokio::select! {
            r = body(signals.shutdown) => r.map_err(Into::into),
            Ok(()) = signals.forced => std::process::exit(130),
        }
    });
    runtime.shutdown_timeout(RUNTIME_STOP);
    match result {
        Ok(()) => {
            tracing::info!("{program} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{program} failed");
            ExitCode::FAILURE
        }
    }
}
