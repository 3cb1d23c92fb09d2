//! What a queue exports: depth, in-flight and latency per lane.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LaneLabel {
    pub(crate) lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RunLabels {
    pub(crate) lane: &'static str,
    /// `done`, `retry`, `backoff`, `handoff`, `panic`.
    pub(crate) next: &'static str,
}

fn latency() -> Histogram {
    // 100 µs to about 100 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// A queue's metrics. Register once per process, share between the queues of
/// successive leadership terms.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    pub(crate) depth: Family<LaneLabel, Gauge>,
    pub(crate) in_flight: Family<LaneLabel, Gauge>,
    pub(crate) scheduled: Gauge,
    pub(crate) wait: Family<LaneLabel, Histogram, fn() -> Histogram>,
    pub(crate) work: Family<LaneLabel, Histogram, fn() -> Histogram>,
    pub(crate) runs: Family<RunLabels, Counter>,
}

impl Default for QueueMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueMetrics {
    /// Unregistered metrics.
    pub fn new() -> Self {
        QueueMetrics {
            depth: Family::default(),
            in_flight: Family::default(),
            scheduled: Gauge::default(),
            wait: Family::new_with_constructor(latency),
            work: Family::new_with_constructor(latency),
            runs: Family::default(),
        }
    }

    /// Register as `queue_*` in `registry` (whose prefix names the daemon).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "queue_depth",
            "Keys ready to run, by lane",
            self.depth.clone(),
        );
        registry.register(
            "queue_in_flight",
            "Keys running, by lane",
            self.in_flight.clone(),
        );
        registry.register(
            "queue_scheduled",
            "Keys waiting for a retry or a later look",
            self.scheduled.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time from ready to running, by lane",
            self.wait.clone(),
        );
        registry.register(
            "queue_work_seconds",
            "Time one run takes, by lane",
            self.work.clone(),
        );
        registry.register(
            "queue_runs",
            "Runs by lane and what came next",
            self.runs.clone(),
        );
    }
}
