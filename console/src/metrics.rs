//! Prometheus metrics served at `/metrics` (prefix `sdp_console`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The console's metrics.
#[derive(Default)]
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
            "resent",
            "Whole snapshots resent to pages that fell behind",
            self.resent.clone(),
        );
    }
}
