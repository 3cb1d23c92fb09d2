//! The effects of a plan, carried out: helm calls (probe, install/upgrade/replace,
//! recovery, uninstall), each timed and counted, and state writes. Nothing here decides:
//! every result goes back to [`crate::decide`].

use std::sync::Arc;
use std::time::Instant;

use sdp_config::entity::DeploymentState;

use crate::decide::{ApplyKind, Observation, OwnedRelease, Recovery, Report};
use crate::helm::{Helm, HelmError, InstallRequest, ListQuery, ReleaseStatus};
use crate::metrics::Metrics;
use crate::naming;
use crate::spec::{HelmSpec, SpecContext};
use crate::store::{ActedOn, StateStore};
use crate::view::Item;
use tokio_util::sync::CancellationToken;

/// The entry of a helm deployment being acted on.
#[derive(Clone, Copy)]
pub(crate) struct HelmEntry<'a> {
    pub(crate) id: &'a str,
    pub(crate) entry: &'a Item,
    /// What it asks for.
    pub(crate) spec: &'a HelmSpec,
    /// Its state, parsed.
    pub(crate) state: Option<&'a DeploymentState>,
}

/// How a state write went.
#[derive(Debug)]
pub(crate) enum Written {
    Yes,
    /// The entry changed or went away: its own reconcile follows.
    EntryChanged,
    Failed(sdp_config::Error),
}

/// Helm and the state store of one leadership term.
pub(crate) struct Effects {
    pub(crate) helm: Arc<dyn Helm>,
    pub(crate) spec: Arc<SpecContext>,
    pub(crate) store: StateStore,
    pub(crate) metrics: Arc<Metrics>,
    /// Fires to stop running helm calls.
    pub(crate) hard_stop: CancellationToken,
    /// `kubernetes-direct` objects.
    pub(crate) direct: Arc<crate::direct::Direct>,
    /// The database-identity guard (and the database label of new revisions).
    pub(crate) guard: Arc<crate::guard::Guard>,
    /// The configuration database (the guard reads its identity).
    pub(crate) db: sdp_config::Config,
}

/// The metrics label of a failed helm call.
pub(crate) fn result_label(e: &HelmError) -> &'static str {
    match e {
        HelmError::TimedOut { .. } => "timeout",
        HelmError::Cancelled { .. } => "cancelled",
        e if e.is_busy() => "busy",
        _ => "error",
    }
}

impl Effects {
    async fn timed<T>(
        &self,
        kind: &str,
        fut: impl Future<Output = Result<T, HelmError>>,
    ) -> Result<T, HelmError> {
        let start = Instant::now();
        self.metrics.in_flight.inc();
        let result = fut.await;
        self.metrics.in_flight.dec();
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => result_label(e),
        };
        self.metrics.operation(kind, label, start.elapsed());
        result
    }

    /// Write `report` as the state of a helm entry (conditional on its spec digest).
    pub(crate) async fn report(&self, t: &HelmEntry<'_>, report: &Report) -> Written {
        self.report_on(t.id, t.entry, ActedOn::Digest(&t.spec.digest), report)
            .await
    }

    /// Write `report` as the state of entry `id`, conditional on `acted_on`.
    pub(crate) async fn report_on(
        &self,
        id: &str,
        entry: &Item,
        acted_on: ActedOn<'_>,
        report: &Report,
    ) -> Written {
        match self.store.report(id, entry, acted_on, report).await {
            Ok(true) => Written::Yes,
            Ok(false) => Written::EntryChanged,
            Err(e) => Written::Failed(e),
        }
    }

    /// Delete the state key of `id`, whose entry is gone.
    pub(crate) async fn forget(&self, id: &str, known: &Item) -> Result<(), sdp_config::Error> {
        self.store.forget(id, known).await
    }

    /// What is the release, really? Three cheap read-only calls at most.
    pub(crate) async fn probe(
        &self,
        release: &str,
        known: &Observation,
    ) -> Result<Observation, HelmError> {
        self.timed("probe", self.probe_untimed(release, known))
            .await
    }

    async fn probe_untimed(
        &self,
        release: &str,
        known: &Observation,
    ) -> Result<Observation, HelmError> {
        let ns = &self.spec.namespace;
        let stop = &self.hard_stop;
        if !matches!(known, Observation::Owned(_)) {
            let all = self
                .helm
                .list(
                    ns,
                    ListQuery {
                        name: Some(release),
                        owned_only: false,
                        ..ListQuery::default()
                    },
                    stop,
                )
                .await?;
            if all.is_empty() {
                return Ok(Observation::Absent);
            }
            let owned = self
                .helm
                .list(
                    ns,
                    ListQuery {
                        name: Some(release),
                        owned_only: true,
                        ..ListQuery::default()
                    },
                    stop,
                )
                .await?;
            if owned.is_empty() {
                return Ok(Observation::Foreign);
            }
        }
        let history = self.helm.history(ns, release, stop).await?;
        let Some(latest) = history.last() else {
            return Ok(Observation::Absent);
        };
        let last_good = history
            .iter()
            .rev()
            .filter(|r| r.revision < latest.revision)
            .find(|r| {
                matches!(
                    r.status,
                    ReleaseStatus::Deployed | ReleaseStatus::Superseded
                )
            })
            .map(|r| r.revision);
        Ok(Observation::Owned(OwnedRelease {
            status: latest.status.clone(),
            revision: latest.revision,
            updated: latest.updated,
            digest: naming::digest_from_description(&latest.description).map(String::from),
            last_good,
            detailed: true,
        }))
    }

    /// Install, upgrade, or replace (uninstall, then install) the spec of `t`; the new
    /// revision.
    pub(crate) async fn apply(&self, t: &HelmEntry<'_>, kind: ApplyKind) -> Result<i64, HelmError> {
        let ns = &self.spec.namespace;
        if matches!(kind, ApplyKind::Replace | ApplyKind::Restart) {
            self.timed(
                "uninstall",
                self.helm.uninstall(ns, &t.spec.release, &self.hard_stop),
            )
            .await?;
        }
        let database = self.guard.database().unwrap_or_default();
        let req = InstallRequest {
            release: &t.spec.release,
            namespace: ns,
            chart: &t.spec.chart.reference,
            values: &t.spec.values,
            deploy_id: t.id,
            digest: &t.spec.digest,
            database: &database,
        };
        let label = match kind {
            ApplyKind::Install => "install",
            ApplyKind::Upgrade => "upgrade",
            ApplyKind::Replace => "replace",
            ApplyKind::Restart => "restart",
        };
        self.timed(label, self.helm.upgrade_install(&req, &self.hard_stop))
            .await
    }

    /// Free a release stuck in `pending-*`.
    pub(crate) async fn recover(&self, release: &str, recovery: Recovery) -> Result<(), HelmError> {
        let ns = &self.spec.namespace;
        match recovery {
            Recovery::Reinstall => {
                self.timed(
                    "recover-uninstall",
                    self.helm.uninstall(ns, release, &self.hard_stop),
                )
                .await
            }
            Recovery::Rollback(rev) => {
                self.timed(
                    "rollback",
                    self.helm.rollback(ns, release, rev, &self.hard_stop),
                )
                .await
            }
        }
    }

    /// Uninstall a release whose entry is gone.
    pub(crate) async fn uninstall(&self, release: &str) -> Result<(), HelmError> {
        self.timed(
            "uninstall",
            self.helm
                .uninstall(&self.spec.namespace, release, &self.hard_stop),
        )
        .await
    }
}
