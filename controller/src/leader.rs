//! Leader election: every replica watches and keeps its view; only the leader acts.

use std::sync::Arc;
use std::time::Duration;

use sdp_config::Leadership;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;

/// Name of the election among controller replicas.
pub const ELECTION: &str = "processing-controller";

/// Campaign, lead (with a full reconcile on election and every `resync`), stand by
/// again when leadership is lost. Returns the leadership still held when `shutdown`
/// fires, so that the caller can resign after in-flight work has finished.
pub async fn lead(
    ctx: Arc<Ctx>,
    ttl: Duration,
    resync: Duration,
    shutdown: CancellationToken,
) -> Option<Leadership> {
    let election = ctx.db.election(ELECTION);
    let me = identity();
    loop {
        tracing::info!(candidate = %me, "campaigning for leadership; standing by");
        let leadership = election.campaign(&me, ttl, &shutdown).await.ok()?;
        tracing::info!(candidate = %me, "leading: acting on processing blocks");
        ctx.set_leader(Some(leadership.guard()));
        ctx.wake_everything();
        let mut resync_timer =
            tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
        loop {
            tokio::select! {
                () = leadership.lost() => {
                    ctx.set_leader(None);
                    tracing::warn!("leadership lost; standing by");
                    break;
                }
                () = shutdown.cancelled() => return Some(leadership),
                _ = resync_timer.tick() => {
                    tracing::debug!("periodic full reconcile");
                    ctx.wake_everything();
                }
            }
        }
    }
}

/// `<hostname>/<pid>`: what this candidate proclaims.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{}", std::process::id())
}
