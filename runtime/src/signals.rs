//! SIGINT and SIGTERM into a cancellation token: the first asks for a graceful stop, a
//! second one means "now".

use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// What the signal handler gives a program.
#[derive(Debug)]
pub struct Signals {
    /// Cancelled by the first signal.
    pub shutdown: CancellationToken,
    /// Completes on the second signal.
    pub forced: oneshot::Receiver<()>,
}

/// Listen for SIGINT and SIGTERM. Must be called inside a tokio runtime.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn install() -> io::Result<Signals> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = CancellationToken::new();
    let (force, forced) = oneshot::channel();
    let token = shutdown.clone();
    tokio::spawn(async move {
        let mut force = Some(force);
        while let Some(pending) = force.take() {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if token.is_cancelled() {
                tracing::warn!(signal = name, "second signal: exiting now");
                let _ = pending.send(());
            } else {
                tracing::info!(
                    signal = name,
                    "stopping (send another signal to exit at once)"
                );
                token.cancel();
                force = Some(pending);
            }
        }
    });
    Ok(Signals { shutdown, forced })
}
