//! Prometheus metrics served at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sdp_config::entity::PbStatus;

use crate::failure::FailureKind;
use crate::view::View;

/// Label of a failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    /// One of [`FailureKind::as_str`].
    pub reason: String,
}

/// Label of the block gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    /// A block status, `NONE` (no state yet) or `OTHER` (a state without a known status).
    pub status: String,
}

/// The controller's metrics (the work queue's are registered beside them).
pub(crate) struct Metrics {
    /// Workflow deployments created.
    pub deployments_created: Counter,
    /// Deployments of deleted blocks removed.
    pub deployments_deleted: Counter,
    /// Blocks failed, and reconciles that failed on etcd, by kind.
    pub failures: Family<ReasonLabel, Counter>,
    /// Seconds per reconcile (decide and perform).
    pub reconcile_duration: Histogram,
    /// 1 while leading.
    pub is_leader: Gauge,
    /// Blocks by status.
    pub blocks: Family<StatusLabel, Gauge>,
    /// Workflow definitions known.
    pub workflows: Gauge,
    /// Watches re-established after a disconnect (mirrors the library's counter).
    pub watch_reconnects: Counter,
    reconnects_seen: AtomicU64,
}

impl Metrics {
    /// Register every metric in `registry` (prefix `sdp_controller`).
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let deployments_created = Counter::default();
        let deployments_deleted = Counter::default();
        let failures = Family::<ReasonLabel, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        let is_leader = Gauge::default();
        let blocks = Family::<StatusLabel, Gauge>::default();
        let workflows = Gauge::default();
        let watch_reconnects = Counter::default();
        registry.register(
            "deployments_created",
            "Workflow deployments created",
            deployments_created.clone(),
        );
        registry.register(
            "deployments_deleted",
            "Deployments of deleted processing blocks removed",
            deployments_deleted.clone(),
        );
        registry.register(
            "failures",
            "Processing blocks failed and reconciles that failed, by kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one processing block",
            reconcile_duration.clone(),
        );
        registry.register(
            "is_leader",
            "Whether this replica leads (and acts): 1 or 0",
            is_leader.clone(),
        );
        registry.register("blocks", "Processing blocks by status", blocks.clone());
        registry.register(
            "workflows",
            "Workflow definitions known (file and database)",
            workflows.clone(),
        );
        registry.register(
            "etcd_watch_reconnects",
            "etcd watches re-established after a disconnect",
            watch_reconnects.clone(),
        );
        for kind in FailureKind::ALL {
            let _ = failures.get_or_create(&ReasonLabel {
                reason: kind.as_str().into(),
            });
        }
        Metrics {
            deployments_created,
            deployments_deleted,
            failures,
            reconcile_duration,
            is_leader,
            blocks,
            workflows,
            watch_reconnects,
            reconnects_seen: AtomicU64::new(0),
        }
    }

    /// Count a failure.
    pub(crate) fn failed(&self, kind: FailureKind) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: kind.as_str().into(),
            })
            .inc();
    }

    /// Refresh the gauges computed from the view and the library's counters.
    pub(crate) fn observe(&self, view: &View, watch_reconnects: u64) {
        let mut counts: Vec<(String, i64)> = PbStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        counts.push(("NONE".into(), 0));
        counts.push(("OTHER".into(), 0));
        counts.push(("UNREADABLE".into(), 0));
        for id in view.blocks.keys() {
            let status = match view.states.get(id) {
                None => "NONE",
                Some(s) if s.unreadable.is_some() => "UNREADABLE",
                Some(s) => s
                    .status
                    .as_deref()
                    .filter(|st| PbStatus::parse(st).is_some())
                    .unwrap_or("OTHER"),
            };
            if let Some(c) = counts.iter_mut().find(|(s, _)| s == status) {
                c.1 += 1;
            }
        }
        for (status, n) in counts {
            self.blocks.get_or_create(&StatusLabel { status }).set(n);
        }
        self.workflows.set(view.registry.len() as i64);
        let seen = self
            .reconnects_seen
            .swap(watch_reconnects, Ordering::Relaxed);
        if watch_reconnects > seen {
            self.watch_reconnects.inc_by(watch_reconnects - seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Part;

    #[test]
    fn every_metric_is_exposed() {
        let mut registry = Registry::with_prefix("sdp_controller");
        let m = Metrics::new(&mut registry);
        m.deployments_created.inc();
        m.failed(FailureKind::UnknownWorkflow);
        m.reconcile_duration.observe(0.001);
        m.observe(&View::new(false), 2);
        let mut v = crate::fixtures::synced_view(false);
        for (id, state) in [
            ("a", "not json"),
            ("b", "[]"),
            ("c", r#"{"state": "executing"}"#),
        ] {
            let block = crate::fixtures::batch_block(id, &[]);
            crate::fixtures::put(&mut v, Part::Blocks, &format!("/pb/{id}"), &block, 2);
            let path = format!("/pb/{id}/state");
            crate::fixtures::put(&mut v, Part::States, &path, state, 3);
        }
        m.observe(&v, 5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "sdp_controller_deployments_created_total 1",
            "sdp_controller_failures_total{reason=\"unknown_workflow\"} 1",
            "sdp_controller_failures_total{reason=\"template_error\"} 0",
            "sdp_controller_reconcile_duration_seconds_count 1",
            "sdp_controller_blocks{status=\"STARTING\"} 0",
            "sdp_controller_blocks{status=\"UNREADABLE\"} 2",
            "sdp_controller_blocks{status=\"OTHER\"} 1",
            "sdp_controller_etcd_watch_reconnects_total 5",
            "sdp_controller_is_leader 0",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
