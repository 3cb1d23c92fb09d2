//! A term of leadership: act on every block at once, and again on every resync, until
//! leadership is lost or the controller stops. Every replica keeps its view warm; only
//! the leader acts.

use std::sync::Arc;
use std::time::Duration;

use sdp_runtime::election::Term;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// Name of the election among controller replicas.
pub(crate) const ELECTION: &str = "processing-controller";

pub(crate) async fn lead(
    shared: Arc<Shared>,
    term: Term,
    resync: Duration,
    shutdown: CancellationToken,
) {
    tracing::info!("leading: acting on processing blocks");
    shared.set_leader(Some(term.guard.clone()));
    shared.wake_everything();
    let mut resync_timer = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
    loop {
        tokio::select! {
            () = term.lost.cancelled() => {
                shared.set_leader(None);
                return;
            }
            // Still leading: in-flight reconciles finish under this guard, and leadership
            // is resigned after them.
            () = shutdown.cancelled() => return,
            _ = resync_timer.tick() => {
                tracing::debug!("periodic full reconcile");
                shared.wake_everything();
            }
        }
    }
}
