//! What the HTTP handlers and the publisher share: the snapshot pages are shown (with
//! its JSON, made once), the stream of frames pushed to every page, and the recent
//! changes a new page starts its feed with.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::body::Bytes;
use sdp_config::overview::{Change, Snapshot};
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;

/// Frames kept for a page that is slow to read them; one that falls further behind gets
/// the whole snapshot again.
pub(crate) const FRAME_BUFFER: usize = 1_024;

/// A snapshot as published to the pages.
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// The snapshot itself.
    pub snapshot: Arc<Snapshot>,
    /// Its JSON, made on first use and shared by every page and `/api/overview` request
    /// until the next change (tens of thousands of blocks are megabytes).
    json: OnceLock<Bytes>,
}

impl Published {
    pub(crate) fn new(snapshot: Arc<Snapshot>) -> Self {
        Published {
            snapshot,
            json: OnceLock::new(),
        }
    }

    /// The snapshot as JSON.
    pub(crate) fn json(&self) -> Bytes {
        self.json.get_or_init(|| to_json(&*self.snapshot)).clone()
    }
}

/// One server-sent event, formatted once and shared by every page.
#[derive(Clone, Debug)]
pub(crate) enum Frame {
    /// The `delta` event from the snapshot of revision `from` to that of `to`.
    Delta {
        /// Revision it applies to.
        from: i64,
        /// Revision it produces.
        to: i64,
        /// The whole event, `event:` line to blank line.
        event: Bytes,
    },
    /// Too much changed for a delta (the first listing, a listing again after a
    /// compaction): every page takes the whole snapshot of revision `to` or later.
    Reset {
        /// Revision of the snapshot published with it.
        to: i64,
    },
    /// A `change` event for the feed.
    Change(Bytes),
}

/// The shared state.
pub(crate) struct Hub {
    published: watch::Sender<Arc<Published>>,
    frames: broadcast::Sender<Frame>,
    recent: Mutex<VecDeque<Change>>,
    history: usize,
    /// Shared with the health server's registry.
    pub metrics: Metrics,
}

impl Hub {
    /// An empty hub (revision 0: nothing listed yet) keeping `history` recent changes.
    pub(crate) fn new(history: usize) -> Arc<Hub> {
        Arc::new(Hub {
            published: watch::Sender::new(Arc::new(Published::default())),
            frames: broadcast::Sender::new(FRAME_BUFFER),
            recent: Mutex::new(VecDeque::with_capacity(history.min(1_024))),
            history,
            metrics: Metrics::default(),
        })
    }

    /// The snapshot pages are shown now.
    pub(crate) fn published(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// Frames from now on; subscribe before reading [`Hub::published`] so that no delta
    /// falls between the two.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Frame> {
        self.frames.subscribe()
    }

    /// Publish `snapshot` and push `delta`, the event that leads to it from the
    /// previous one: in this order, so that a page that subscribed and then read the
    /// previous snapshot gets the delta, and one that read this snapshot skips it.
    pub(crate) fn publish(&self, snapshot: Arc<Published>, delta: Option<Frame>) {
        let s = &snapshot.snapshot;
        self.metrics.revision.set(s.revision);
        self.metrics.blocks.set(gauge(s.blocks.len()));
        self.metrics.deployments.set(gauge(s.deployments.len()));
        self.published.send_replace(snapshot);
        if let Some(frame) = delta {
            self.metrics.deltas.inc();
            // No page connected is not an error.
            let _ = self.frames.send(frame);
        }
    }

    /// Keep `change` for the feed of pages opened later and push it to open ones.
    pub(crate) fn record(&self, change: Change) {
        let event = event("change", &to_json(&change));
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            if recent.len() >= self.history {
                recent.pop_front();
            }
            if self.history > 0 {
                recent.push_back(change);
            }
        }
        self.metrics.changes.inc();
        let _ = self.frames.send(Frame::Change(event));
    }

    /// The recent changes, oldest first, as JSON.
    pub(crate) fn recent_json(&self) -> Bytes {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        to_json(&*recent)
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// JSON of a value whose serialisation cannot fail (plain structs, string keys); an
/// empty object if it ever did.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(v) => Bytes::from(v),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a value for the page");
            Bytes::from_static(b"{}")
        }
    }
}

/// A whole server-sent event whose data is `json` (JSON has no raw newlines, so one
/// `data:` line holds it).
pub(crate) fn event(name: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_are_one_data_line() {
        assert_eq!(
            &event("delta", br#"{"a":1}"#)[..],
            b"event: delta\ndata: {\"a\":1}\n\n"
        );
    }

    #[test]
    fn a_page_that_read_the_new_snapshot_can_tell_the_delta_is_old() {
        let hub = Hub::new(2);
        let mut frames = hub.subscribe();
        let snapshot = Arc::new(Snapshot::new(7, vec![], vec![]));
        let delta = Frame::Delta {
            from: 0,
            to: 7,
            event: Bytes::from_static(b""),
        };
        hub.publish(Arc::new(Published::new(snapshot)), Some(delta));
        assert_eq!(hub.published().snapshot.revision, 7);
        assert!(matches!(
            frames.try_recv().unwrap(),
            Frame::Delta { to: 7, .. }
        ));
        assert_eq!(&hub.published().json()[..12], br#"{"revision":"#);
    }
}
