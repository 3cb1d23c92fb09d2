//! The one task between the read model and the pages: on each new snapshot of the
//! follower, publish it with the delta from the previous one; pass each change record
//! on to the feed. Every page shares its output, so pages cost etcd nothing.

use std::sync::Arc;

use sdp_config::overview::Follower;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::delta;
use crate::hub::{Frame, Hub, Published, event, to_json};

/// Most blocks and deployments (changed or removed) sent as a delta; beyond, pages
/// get the whole snapshot.
const MAX_DELTA: usize = 1_000;

/// Publish until `shutdown` fires or the follower stops.
pub(crate) async fn run(hub: Arc<Hub>, follower: Follower, shutdown: CancellationToken) {
    let mut snapshots = follower.snapshots();
    let mut changes = follower.subscribe();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    tracing::warn!("the overview follower stopped");
                    return;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                publish(&hub, snapshot);
            }
            change = changes.recv() => match change {
                Ok(change) => hub.record(change),
                Err(RecvError::Lagged(missed)) => {
                    // The table stays right (it follows snapshots); only the feed
                    // misses lines.
                    tracing::warn!(missed, "the change feed fell behind; some changes are not listed");
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Publish `snapshot` with the delta from the one published before.
pub(crate) fn publish(hub: &Hub, snapshot: Arc<sdp_config::overview::Snapshot>) {
    let started = std::time::Instant::now();
    let before = hub.published();
    if before.snapshot.revision == snapshot.revision && Arc::ptr_eq(&before.snapshot, &snapshot) {
        return;
    }
    let frame = {
        let delta = delta::between(&before.snapshot, &snapshot);
        if delta.entries() > MAX_DELTA {
            // The pages share the snapshot's own JSON instead, and the frame buffer
            // keeps no copy of everything.
            Frame::Reset { to: delta.revision }
        } else {
            Frame::Delta {
                from: delta.from,
                to: delta.revision,
                event: event("delta", &to_json(&delta)),
            }
        }
    };
    hub.publish(Arc::new(Published::new(snapshot)), Some(frame));
    hub.metrics
        .publish_duration
        .observe(started.elapsed().as_secs_f64());
}
