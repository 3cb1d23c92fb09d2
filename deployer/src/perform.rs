//! Carrying out the helm steps of a plan (probe, install/upgrade/replace, recovery), each
//! with its state report, and what a failed helm call means: retry with backoff, or FAILED
//! with helm's own words after the last attempt.

use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;
use sdp_config::entity::{DeploymentState, DeploymentStatus};

use crate::decide::{self, ApplyKind, Memory, Observation, OwnedRelease, Recovery, Report};
use crate::helm::{HelmError, InstallRequest, ListQuery, ReleaseStatus};
use crate::naming;
use crate::reconcile::{Ctx, DB_RETRY, Outcome};
use crate::spec::HelmSpec;
use crate::store::Basis;
use crate::view::Item;

pub(crate) fn result_label(e: &HelmError) -> &'static str {
    match e {
        HelmError::TimedOut { .. } => "timeout",
        HelmError::Cancelled { .. } => "cancelled",
        e if e.is_busy() => "busy",
        _ => "error",
    }
}

/// The acted-on entry of a helm deployment.
pub(crate) struct Target<'a> {
    /// Deployment ID.
    pub(crate) id: &'a str,
    /// The entry as acted on.
    pub(crate) entry: &'a Item,
    /// What it asks for.
    pub(crate) spec: &'a HelmSpec,
    /// Its state.
    pub(crate) state: Option<&'a DeploymentState>,
}

impl Ctx {
    pub(crate) fn helm_busy(&self) -> bool {
        self.helm_load.load(Ordering::Relaxed) >= self.concurrency
    }

    pub(crate) async fn timed<T>(
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

    /// Write a report for a target; `None` to carry on, or how to end the reconcile.
    pub(crate) async fn report(&self, t: &Target<'_>, report: &Report) -> Option<Outcome> {
        match self
            .store
            .report(t.id, t.entry, Basis::Digest(&t.spec.digest), report)
            .await
        {
            Ok(true) => None,
            // The entry changed or went away: its own reconcile follows.
            Ok(false) => Some(Outcome::Done),
            Err(e) => Some(self.db_failed(t.id, &e)),
        }
    }

    pub(crate) fn db_failed(&self, id: &str, e: &sdp_config::Error) -> Outcome {
        if matches!(e, sdp_config::Error::NotLeader { .. }) {
            tracing::warn!(deploy_id = id, "not the leader any more; state not written");
        } else {
            tracing::warn!(deploy_id = id, error = %e, "cannot write the deployment state; retrying");
        }
        Outcome::RetryAt(Instant::now() + DB_RETRY)
    }

    pub(crate) fn base_report(
        &self,
        t: &Target<'_>,
        status: DeploymentStatus,
        attempts: u32,
        message: String,
    ) -> Report {
        Report {
            status,
            release: Some(t.spec.release.clone()),
            revision: t.state.and_then(|s| s.revision),
            digest: Some(t.spec.digest.clone()),
            attempts: Some(i64::from(attempts)),
            message,
        }
    }

    /// What is the release, really? Three cheap read-only calls at most.
    pub(crate) async fn probe(
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

    /// A helm call failed: count it, report it, and say when to look again. `None`:
    /// carry on at once (the release is busy: probe it).
    pub(crate) async fn helm_failed(
        &self,
        memory: &mut Memory,
        target: Option<&Target<'_>>,
        attempt: u32,
        err: &HelmError,
    ) -> Option<Outcome> {
        if err.is_cancelled() {
            memory.observed = Observation::Unknown;
            return Some(Outcome::RetryAt(Instant::now()));
        }
        memory.observed = Observation::Unknown;
        if err.is_busy() {
            return None;
        }
        memory.left_pending = true;
        let Some(t) = target else {
            // An uninstall or probe for a deployment that is gone: retry for ever, slowly.
            if memory.digest.is_some() {
                memory.digest = None;
                memory.attempts = 0;
            }
            memory.attempts += 1;
            let at =
                Instant::now() + decide::backoff(self.backoff, self.backoff_max, memory.attempts);
            self.metrics.retries.inc();
            tracing::warn!(error = %err, attempts = memory.attempts, "helm failed for a removed deployment; retrying");
            return Some(Outcome::RetryAt(at));
        };
        memory.digest = Some(t.spec.digest.clone());
        memory.attempts = attempt;
        let max = self.policy.max_attempts;
        if attempt >= max {
            memory.retry_at = None;
            self.metrics.failed.inc();
            tracing::warn!(deploy_id = t.id, release = %t.spec.release, attempts = attempt, error = %err, "giving up");
            let report = self.base_report(t, DeploymentStatus::Failed, attempt, err.to_string());
            return Some(self.report(t, &report).await.unwrap_or(Outcome::Done));
        }
        let delay = decide::backoff(self.backoff, self.backoff_max, attempt);
        let at = Instant::now() + delay;
        memory.retry_at = Some(at);
        self.metrics.retries.inc();
        tracing::info!(deploy_id = t.id, release = %t.spec.release, attempt, retry_in_ms = delay.as_millis() as u64, error = %err, "helm failed; will retry");
        let message = format!(
            "attempt {attempt} of {max} failed, retrying in {:.1} s: {err}",
            delay.as_secs_f64()
        );
        let report = self.base_report(t, DeploymentStatus::Pending, attempt, message);
        Some(
            self.report(t, &report)
                .await
                .unwrap_or(Outcome::RetryAt(at)),
        )
    }

    pub(crate) async fn apply(
        &self,
        memory: &mut Memory,
        t: &Target<'_>,
        kind: ApplyKind,
        attempt: u32,
    ) -> Option<Outcome> {
        let max = self.policy.max_attempts;
        let (status, doing, kind_label) = match kind {
            ApplyKind::Install => (
                DeploymentStatus::Installing,
                "installing".to_string(),
                "install",
            ),
            ApplyKind::Upgrade => (
                DeploymentStatus::Upgrading,
                "upgrading".to_string(),
                "upgrade",
            ),
            ApplyKind::Replace => (
                DeploymentStatus::Upgrading,
                format!(
                    "replacing (uninstall, then install: chart {} cannot be upgraded in place)",
                    t.spec.chart.name
                ),
                "replace",
            ),
        };
        let report = self.base_report(
            t,
            status,
            attempt,
            format!("{doing}, attempt {attempt} of {max}"),
        );
        if let Some(end) = self.report(t, &report).await {
            return Some(end);
        }
        tracing::info!(deploy_id = t.id, release = %t.spec.release, chart = %t.spec.chart.reference, attempt, "{doing}");
        let ns = &self.spec.namespace;
        if kind == ApplyKind::Replace {
            if let Err(e) = self
                .timed(
                    "uninstall",
                    self.helm.uninstall(ns, &t.spec.release, &self.hard_stop),
                )
                .await
            {
                return self.helm_failed(memory, Some(t), attempt, &e).await;
            }
        }
        let req = InstallRequest {
            release: &t.spec.release,
            namespace: ns,
            chart: &t.spec.chart.reference,
            values: &t.spec.values,
            deploy_id: t.id,
            digest: &t.spec.digest,
        };
        match self
            .timed(kind_label, self.helm.upgrade_install(&req, &self.hard_stop))
            .await
        {
            Ok(revision) => {
                self.succeeded(memory, t.spec, revision);
                let done = match kind {
                    ApplyKind::Install => "installed",
                    ApplyKind::Upgrade => "upgraded",
                    ApplyKind::Replace => "replaced",
                };
                let mut report = self.base_report(
                    t,
                    DeploymentStatus::Deployed,
                    attempt,
                    format!("{done}: revision {revision}"),
                );
                report.revision = Some(revision);
                Some(self.report(t, &report).await.unwrap_or(Outcome::Done))
            }
            Err(e) => self.helm_failed(memory, Some(t), attempt, &e).await,
        }
    }

    pub(crate) fn succeeded(&self, memory: &mut Memory, spec: &HelmSpec, revision: i64) {
        memory.observed = Observation::Owned(OwnedRelease {
            status: ReleaseStatus::Deployed,
            revision,
            updated: Some(Utc::now()),
            digest: Some(spec.digest.clone()),
            last_good: None,
            detailed: true,
        });
        memory.digest = Some(spec.digest.clone());
        memory.attempts = 0;
        memory.retry_at = None;
        memory.left_pending = false;
    }

    pub(crate) async fn recover(
        &self,
        memory: &mut Memory,
        t: &Target<'_>,
        recovery: Recovery,
        attempt: u32,
    ) -> Option<Outcome> {
        let stuck = match &memory.observed {
            Observation::Owned(o) => o.status.as_str().to_string(),
            _ => "a pending state".to_string(),
        };
        let ns = &self.spec.namespace;
        let (status, message) = match recovery {
            Recovery::Reinstall => (
                DeploymentStatus::Uninstalling,
                format!("release was stuck in {stuck}: uninstalling it to install again"),
            ),
            Recovery::Rollback(rev) => (
                DeploymentStatus::Upgrading,
                format!(
                    "release was stuck in {stuck}: rolling back to revision {rev}, then upgrading"
                ),
            ),
        };
        tracing::warn!(deploy_id = t.id, release = %t.spec.release, %stuck, ?recovery, "recovering a stuck release");
        let report = self.base_report(t, status, attempt, message);
        if let Some(end) = self.report(t, &report).await {
            return Some(end);
        }
        let result = match recovery {
            Recovery::Reinstall => {
                self.timed(
                    "recover-uninstall",
                    self.helm.uninstall(ns, &t.spec.release, &self.hard_stop),
                )
                .await
            }
            Recovery::Rollback(rev) => {
                self.timed(
                    "rollback",
                    self.helm
                        .rollback(ns, &t.spec.release, rev, &self.hard_stop),
                )
                .await
            }
        };
        match result {
            Ok(()) => {
                memory.left_pending = false;
                memory.observed = match recovery {
                    Recovery::Reinstall => Observation::Absent,
                    Recovery::Rollback(_) => Observation::Unknown,
                };
                None
            }
            Err(e) => self.helm_failed(memory, Some(t), attempt, &e).await,
        }
    }
}
