//! Prometheus metrics served at `/metrics` (prefix `sdp_console`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The console's metrics.
pub(crate) struct Metrics {
    /// Pages connected to `/api/events`.
    pub pages: Gauge,
    /// Revision of the snapshot the pages are shown.
    pub revision: Gauge,
    /// Processing blocks in that snapshot.
    pub blocks: Gauge,
    /// Deployments in that snapshot.
    pub deployments: Gauge,
    /// Deltas pushed (each once, whatever the number of pages).
    pub deltas: Counter,
    /// Change records pushed to the feed.
    pub changes: Counter,
    /// Pages sent a whole snapshot again because they fell behind.
    pub resent: Counter,
    /// Seconds from a new snapshot to its delta being handed to the pages (compare,
    /// serialise, publish).
    pub publish_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            pages: Gauge::default(),
            revision: Gauge::default(),
            blocks: Gauge::default(),
            deployments: Gauge::default(),
            deltas: Counter::default(),
            changes: Counter::default(),
            resent: Counter::default(),
            // 50 µs to about 1.6 s.
            publish_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

impl Metrics {
    /// Register every metric in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "pages",
            "Pages connected to /api/events",
            self.pages.clone(),
        );
        registry.register(
            "revision",
            "etcd revision of the snapshot shown",
            self.revision.clone(),
        );
        registry.register("blocks", "Processing blocks shown", self.blocks.clone());
        registry.register("deployments", "Deployments shown", self.deployments.clone());
        registry.register("deltas", "Deltas pushed to the pages", self.deltas.clone());
        registry.register("changes", "Change records pushed", self.changes.clone());
        registry.register(
            "publish_duration_seconds",
            "Seconds from a new snapshot to its delta handed to the pages",
            self.publish_duration.clone(),
        );
        registry.register(
            "resent",
            "Whole snapshots resent to pages that fell behind",
            self.resent.clone(),
        );
    }
}
