//! Prometheus metrics (the work queue's are registered beside them).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of helm operations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabels {
    /// `install`, `upgrade`, `replace`, `uninstall`, `rollback`, `probe`, `list`, `repo`.
    pub kind: String,
    /// `ok`, `error`, `timeout`, `busy`, `cancelled`.
    pub result: String,
}

/// Labels of durations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    /// Operation kind.
    pub kind: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

/// Everything the deployer counts.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Helm operations by kind and result.
    pub operations: Family<OpLabels, Counter>,
    /// Helm operation durations by kind.
    pub durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Helm operations running.
    pub in_flight: Gauge,
    /// Retries scheduled after failed helm calls.
    pub retries: Counter,
    /// Deployments given up on (FAILED after the last attempt).
    pub failed: Counter,
    /// Resyncs by result.
    pub resyncs: Family<OpLabels, Counter>,
    /// 1 while this replica is the leader.
    pub is_leader: Gauge,
    /// Deployment entries in view.
    pub entries: Gauge,
    /// Keys under `/deploy/` whose path is not a valid configuration path (left alone).
    pub invalid_keys: Gauge,
    /// Pod events received (added, changed, deleted).
    pub pod_events: Counter,
    /// Pod watch failures (each followed by a new listing).
    pub pod_watch_errors: Counter,
    /// Pods of releases followed.
    pub pods: Gauge,
    /// Workload reports written into deployment states.
    pub workload_writes: Counter,
    /// Releases the database-identity guard holds.
    pub guard_releases: Gauge,
}

impl Metrics {
    /// Create everything and register it in `registry` (prefix `sdp_deployer`).
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let operations = Family::<OpLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let in_flight = Gauge::default();
        let retries = Counter::default();
        let failed = Counter::default();
        let resyncs = Family::<OpLabels, Counter>::default();
        let is_leader = Gauge::default();
        let entries = Gauge::default();
        let invalid_keys = Gauge::default();
        let pod_events = Counter::default();
        let pod_watch_errors = Counter::default();
        let pods = Gauge::default();
        let workload_writes = Counter::default();
        let guard_releases = Gauge::default();
        registry.register(
            "helm_operations",
            "Helm operations by kind and result",
            operations.clone(),
        );
        registry.register(
            "helm_operation_duration_seconds",
            "Duration of helm operations",
            durations.clone(),
        );
        registry.register(
            "helm_in_flight",
            "Helm operations running",
            in_flight.clone(),
        );
        registry.register(
            "retries",
            "Retries scheduled after failed helm calls",
            retries.clone(),
        );
        registry.register(
            "failed",
            "Deployments given up on after their last attempt",
            failed.clone(),
        );
        registry.register(
            "resyncs",
            "Resyncs with the release list by result",
            resyncs.clone(),
        );
        registry.register(
            "is_leader",
            "1 while this replica leads and runs helm",
            is_leader.clone(),
        );
        registry.register("entries", "Deployment entries seen", entries.clone());
        registry.register(
            "invalid_keys",
            "Keys under /deploy/ with an invalid configuration path, left alone",
            invalid_keys.clone(),
        );
        registry.register(
            "pod_events",
            "Pod events received from the Kubernetes watch",
            pod_events.clone(),
        );
        registry.register(
            "pod_watch_errors",
            "Pod watch failures, each followed by a new listing",
            pod_watch_errors.clone(),
        );
        registry.register("pods", "Pods of releases followed", pods.clone());
        registry.register(
            "workload_writes",
            "Workload reports written into deployment states",
            workload_writes.clone(),
        );
        registry.register(
            "guard_releases",
            "Releases held by the database-identity guard (made from another configuration database)",
            guard_releases.clone(),
        );
        Metrics {
            guard_releases,
            operations,
            durations,
            in_flight,
            retries,
            failed,
            resyncs,
            is_leader,
            entries,
            invalid_keys,
            pod_events,
            pod_watch_errors,
            pods,
            workload_writes,
        }
    }

    /// Count one helm operation.
    pub(crate) fn operation(&self, kind: &str, result: &str, took: Duration) {
        self.operations
            .get_or_create(&OpLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
        self.durations
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(took.as_secs_f64());
    }
}
