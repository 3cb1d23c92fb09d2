//! Reading the overview once ([`read`]), or keeping it current from one etcd watch
//! ([`follow`]), publishing a new [`Snapshot`] after each batch of changes and a
//! [`Change`] per change.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::change::Change;
use super::model::Overview;
use super::snapshot::Snapshot;
use crate::client::Config;
use crate::error::{Error, Result};
use crate::path::prefix_end;
use crate::watch::{Watch, WatchEvent};

/// Changes kept for a subscriber that falls behind (it then sees
/// [`broadcast::error::RecvError::Lagged`] and should read the latest snapshot).
pub const CHANGE_BUFFER: usize = 1_024;

/// Most events applied before a snapshot is published, so that a long burst still
/// shows progress.
const MAX_BATCH: usize = 10_000;

/// A running follower; stops when the shutdown token given to [`follow`] fires (or when
/// every handle and receiver is dropped).
#[derive(Clone, Debug)]
pub struct Follower {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    changes: broadcast::Sender<Change>,
}

impl Follower {
    /// A receiver of the latest snapshot; it is marked changed after each applied
    /// batch. Before the first listing it holds an empty snapshot of revision 0.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// Every change from now on, in order (none for the first listing, which is the
    /// starting point, not a change).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Wait for the first listing and return its snapshot.
    ///
    /// # Errors
    /// [`Error::Cancelled`] when the follower stopped before it listed anything.
    pub async fn listed(&self) -> Result<Arc<Snapshot>> {
        let mut rx = self.snapshots.clone();
        let snapshot = rx
            .wait_for(|s| s.revision > 0)
            .await
            .map_err(|_| Error::Cancelled)?;
        Ok(snapshot.clone())
    }
}

/// Follow every processing block and deployment, with their state and owner keys,
/// under `db`'s global prefix, until `shutdown` fires.
///
/// One etcd watch covers it all: the key range from `/deploy/` at its depth to
/// `/pb/<id>/…` one level down (depth-tagged keys sort by depth, then path), listed at
/// one revision (in four parts read side by side) and watched from the next; a
/// compacted revision means listing again.
/// Must be called inside a tokio runtime.
pub fn follow(db: &Config, shutdown: CancellationToken) -> Follower {
    let (start, end, splits) = range(db);
    let watch = db.watch_range(start, end, splits, None);
    let (snapshot_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (changes, _) = broadcast::channel(CHANGE_BUFFER);
    tokio::spawn(run(watch, snapshot_tx, changes.clone(), shutdown));
    Follower { snapshots, changes }
}

/// The overview as it is now, read once (the same listing [`follow`] starts with).
///
/// # Errors
/// The listing failed (etcd unreachable, permission denied…).
pub async fn read(db: &Config) -> Result<Snapshot> {
    let (start, end, splits) = range(db);
    let (entries, revision) = db.list_range(&start, &end, &splits).await?;
    let overview = Overview::from_pairs(
        revision,
        entries.iter().map(|e| (e.path.as_str(), e.value.as_str())),
    );
    Ok(overview.snapshot())
}

/// The etcd key range of blocks, deployments and their state and owner keys, and the
/// keys at which a listing of it is cut into parts read side by side: the blocks, the
/// deployments and the keys below each.
fn range(db: &Config) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let keys = db.keys();
    let start = keys.key_prefix("/deploy/", 0).into_bytes();
    let end = prefix_end(keys.key_prefix("/pb/", 1).as_bytes());
    let splits = [("/pb/", 0), ("/deploy/", 1), ("/pb/", 1)]
        .map(|(dir, level)| keys.key_prefix(dir, level).into_bytes())
        .to_vec();
    (start, end, splits)
}

async fn run(
    mut watch: Watch,
    snapshots: watch::Sender<Arc<Snapshot>>,
    changes: broadcast::Sender<Change>,
    shutdown: CancellationToken,
) {
    let mut overview = Overview::default();
    let mut listed = false;
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            () = snapshots.closed() => return,
            batch = watch.next_batch() => batch,
        };
        let Some(first) = first else { return };
        let now = Utc::now();
        let mut found = Vec::new();
        let mut applied = 0;
        let mut batch = Some(first);
        // Whole etcd responses only: a transaction is never half applied in a snapshot.
        while let Some(events) = batch {
            let changes = overview.apply_batch(&events, now);
            // The first listing is where the picture starts, not a change in it.
            if listed || !matches!(events.first(), Some(WatchEvent::Listed { .. })) {
                found.extend(changes);
            }
            listed = true;
            applied += events.len();
            batch = if applied < MAX_BATCH {
                watch.try_next_batch()
            } else {
                None
            };
        }
        snapshots.send_replace(Arc::new(overview.snapshot()));
        for change in found {
            // No subscriber is not an error.
            let _ = changes.send(change);
        }
    }
}
