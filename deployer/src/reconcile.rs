//! One reconcile of one release, as plan → effect → outcome rounds: read the view,
//! [`decide`] the plan, carry out its effect ([`Effects`]), let [`crate::decide`] turn
//! the result into the release's memory and the next step, until nothing is left to do
//! now. No rule lives here.
//!
//! A release is looked at in two lanes of the work queue: [`PREPARE`] (wide: decisions
//! that need no helm, and a PENDING report while the helm workers are busy) and
//! [`HELM`] (as wide as `SDP_HELM_CONCURRENCY`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use sdp_config::entity::DeploymentState;
use sdp_runtime::queue::{Lane, Next, Queue};
use tokio_util::sync::CancellationToken;

use crate::decide::{
    self, AfterFailure, LeaseCheck, Memory, Observation, Plan, Policy, Situation, TermInfo,
    attempts_so_far, decide,
};
use crate::direct::Handled;
use crate::effects::{Effects, HelmEntry, Written};
use crate::spec::Desired;
use crate::store::ActedOn;
use crate::view::{Item, View};

/// The lane every release enters.
pub(crate) const PREPARE: Lane = 0;
/// The lane whose runs may call helm.
pub(crate) const HELM: Lane = 1;

/// Rounds of plan and effect in one reconcile (probe → recover → install is three).
const MAX_ROUNDS: usize = 8;
/// Delay before trying again after a configuration-database failure.
const DB_RETRY: Duration = Duration::from_secs(2);

/// What reconciles share during one leadership term.
pub(crate) struct Reconciler {
    pub(crate) effects: Effects,
    pub(crate) view: Arc<Mutex<View>>,
    pub(crate) policy: Policy,
    /// Fires to stop starting helm calls (shutdown, or leadership lost).
    pub(crate) stop_new: CancellationToken,
    /// The work queue, to see whether the helm workers are all busy.
    pub(crate) queue: Queue<String>,
    pub(crate) concurrency: usize,
    /// The lease of this leadership term (recorded in states before helm calls).
    pub(crate) term_lease: i64,
    /// When this term began.
    pub(crate) term_started: Instant,
}

fn parse_state(item: Option<&Item>) -> Option<DeploymentState> {
    item.and_then(|s| DeploymentState::parse(&s.value).ok())
}

/// How a round ended when it ends the reconcile.
fn at(instant: Instant) -> Next {
    Next::At(tokio::time::Instant::from_std(instant))
}

impl Reconciler {
    fn helm_busy(&self) -> bool {
        self.queue.in_flight(HELM) + self.queue.depth(HELM) >= self.concurrency
    }

    pub(crate) fn db_failed(&self, id: &str, e: &sdp_config::Error) -> Next {
        if matches!(e, sdp_config::Error::NotLeader { .. }) {
            tracing::warn!(deploy_id = id, "not the leader any more; state not written");
        } else {
            tracing::warn!(deploy_id = id, error = %e, "cannot write the deployment state; retrying");
        }
        at(Instant::now() + DB_RETRY)
    }

    /// Write a report; `None` to carry on, or how the reconcile ends.
    async fn report(&self, t: &HelmEntry<'_>, report: &decide::Report) -> Option<Next> {
        match self.effects.report(t, report).await {
            Written::Yes => None,
            Written::EntryChanged => Some(Next::Done),
            Written::Failed(e) => Some(self.db_failed(t.id, &e)),
        }
    }

    /// Reconcile `release` in `lane`, updating `memory`.
    pub(crate) async fn reconcile(&self, release: &str, lane: Lane, memory: &mut Memory) -> Next {
        for _ in 0..MAX_ROUNDS {
            if self.stop_new.is_cancelled() {
                // Stopping: what is running finishes, nothing new starts.
                return Next::Done;
            }
            if let Some(end) = self.round(release, lane, memory).await {
                return end;
            }
        }
        at(Instant::now() + Duration::from_secs(1))
    }

    /// One plan, its effect and outcome; `None` to go on with another round.
    async fn round(&self, release: &str, lane: Lane, memory: &mut Memory) -> Option<Next> {
        let snap = self
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot(release);
        let (owner, conflicts) =
            decide::release_owner(&snap.entries, release, &self.effects.spec.prefix, |id| {
                parse_state(snap.state(id))
            });
        for ((id, entry), report) in conflicts {
            match self
                .effects
                .report_on(id, entry, ActedOn::Text, &report)
                .await
            {
                Written::Failed(e) => return Some(self.db_failed(id, &e)),
                Written::Yes | Written::EntryChanged => {}
            }
        }
        // State keys of deleted entries go even while the release stays for another
        // entry (with no entry left they go after the uninstall: `Plan::Forget`).
        if owner.is_some() {
            for (id, item) in snap.orphan_states() {
                if let Err(e) = self.effects.forget(&id, &item).await {
                    return Some(self.db_failed(&id, &e));
                }
            }
        }
        let desired = owner.map(|(id, e)| self.effects.spec.desired(id, &e.value));
        let state = owner.and_then(|(id, _)| parse_state(snap.state(id)));
        if owner.is_some_and(|(id, _)| snap.state(id).is_none()) {
            decide::without_state(memory);
        }
        let entry = owner.map(|(id, e)| (id.as_str(), e));
        if let Handled::Yes(end) = self
            .direct_round(release, entry, desired.as_ref(), state.as_ref(), memory)
            .await
        {
            return end;
        }
        if let Some(end) = self
            .guard_round(
                release,
                lane,
                entry,
                desired.as_ref(),
                state.as_ref(),
                memory,
            )
            .await
        {
            return end;
        }
        let orphans = snap.orphan_states();
        let plan = decide(&Situation {
            desired: desired.as_ref(),
            state: state.as_ref(),
            orphan_states: !orphans.is_empty(),
            memory,
            policy: &self.policy,
            now: Instant::now(),
            wall: Utc::now(),
            term: TermInfo {
                lease: self.term_lease,
                age: self.term_started.elapsed(),
            },
        });
        tracing::debug!(release, ?plan, lane, "decided");
        let target = match (owner, &desired) {
            (Some((id, entry)), Some(Desired::Helm(spec))) => Some(HelmEntry {
                id,
                entry,
                spec,
                state: state.as_ref(),
            }),
            _ => None,
        };
        let plan = self.relabel_plan(release, plan, target.as_ref(), memory);
        if lane == PREPARE && plan.needs_helm() {
            let subject = target.as_ref().map(|t| (t.spec, t.state));
            if let (Some(t), Some(report)) = (
                &target,
                decide::queue_for_helm(subject, memory, self.helm_busy()),
            ) && let Some(end) = self.report(t, &report).await
            {
                return Some(end);
            }
            return Some(Next::Then(HELM));
        }
        match plan {
            Plan::Nothing => Some(Next::Done),
            Plan::Report(report) => {
                let (id, entry) = owner?;
                let acted_on = match &target {
                    Some(t) => ActedOn::Digest(&t.spec.digest),
                    None => ActedOn::Text,
                };
                Some(
                    match self.effects.report_on(id, entry, acted_on, &report).await {
                        Written::Yes | Written::EntryChanged => Next::Done,
                        Written::Failed(e) => self.db_failed(id, &e),
                    },
                )
            }
            Plan::Wait(until, note) => {
                decide::after_wait(memory);
                if let (Some(note), Some(t)) = (note, &target)
                    && let Some(Next::At(when)) = self.report(t, &note).await
                {
                    return Some(Next::At(when.min(tokio::time::Instant::from_std(until))));
                }
                Some(at(until))
            }
            Plan::Forget => {
                for (id, item) in &orphans {
                    if let Err(e) = self.effects.forget(id, item).await {
                        return Some(self.db_failed(id, &e));
                    }
                }
                Some(Next::Done)
            }
            Plan::Adopt(revision) => {
                let t = target?;
                let attempts = attempts_so_far(t.spec, t.state, memory).max(1);
                decide::after_success(memory, t.spec, revision, Utc::now());
                let report = decide::deployed_report(t.spec, t.state, None, attempts, revision);
                Some(self.report(&t, &report).await.unwrap_or(Next::Done))
            }
            Plan::Probe => {
                let known = memory.observed.clone();
                match self.effects.probe(release, &known).await {
                    Ok(observed) => {
                        memory.observed = observed;
                        None
                    }
                    Err(e) => {
                        let attempt = target
                            .as_ref()
                            .map_or(0, |t| attempts_so_far(t.spec, t.state, memory))
                            + 1;
                        self.helm_failed(memory, target.as_ref(), attempt, &e).await
                    }
                }
            }
            Plan::CheckLease(lease) => match self.effects.store.lease_exists(lease).await {
                Ok(exists) => {
                    memory.lease_check = Some(LeaseCheck {
                        lease,
                        gone: !exists,
                    });
                    None
                }
                Err(e) => {
                    tracing::warn!(release, lease, error = %e, "cannot ask etcd about a lease; retrying");
                    Some(at(Instant::now() + DB_RETRY))
                }
            },
            Plan::Apply(kind, attempt) => {
                let t = target?;
                let mut report = decide::apply_report(t.spec, t.state, kind, attempt, &self.policy);
                // Written before helm starts: a deployer after this one can tell a
                // `pending-*` release left by this term's call (see `decide::left_by`).
                report.helm_lease = Some(self.term_lease);
                if let Some(end) = self.report(&t, &report).await {
                    return Some(end);
                }
                tracing::info!(deploy_id = t.id, release = %t.spec.release, chart = %t.spec.chart.reference, attempt, ?kind, "applying");
                match self.effects.apply(&t, kind).await {
                    Ok(revision) => {
                        self.effects.guard.labelled(&t.spec.release);
                        decide::after_success(memory, t.spec, revision, Utc::now());
                        let report =
                            decide::deployed_report(t.spec, t.state, Some(kind), attempt, revision);
                        Some(self.report(&t, &report).await.unwrap_or(Next::Done))
                    }
                    Err(e) => self.helm_failed(memory, Some(&t), attempt, &e).await,
                }
            }
            Plan::Recover(recovery, attempt) => {
                let t = target?;
                let stuck = match &memory.observed {
                    Observation::Owned(o) => o.status.as_str().to_string(),
                    _ => "a pending state".to_string(),
                };
                tracing::warn!(deploy_id = t.id, release = %t.spec.release, %stuck, ?recovery, "recovering a stuck release");
                let mut report =
                    decide::recovery_report(t.spec, t.state, &stuck, recovery, attempt);
                report.helm_lease = Some(self.term_lease);
                if let Some(end) = self.report(&t, &report).await {
                    return Some(end);
                }
                match self.effects.recover(&t.spec.release, recovery).await {
                    Ok(()) => {
                        decide::after_recovery(memory, recovery);
                        None
                    }
                    Err(e) => self.helm_failed(memory, Some(&t), attempt, &e).await,
                }
            }
            Plan::Uninstall => {
                match self
                    .effects
                    .guard
                    .may_uninstall(&self.effects.db, release)
                    .await
                {
                    Ok(true) => {}
                    // Not known to be this database's: the next resync sorts it out.
                    Ok(false) => return Some(Next::Done),
                    Err(e) => return Some(self.db_failed(release, &e)),
                }
                tracing::info!(release, "uninstalling: its deployment is gone");
                match self.effects.uninstall(release).await {
                    Ok(()) => {
                        self.effects.guard.uninstalled(release);
                        decide::after_uninstall(memory);
                        None
                    }
                    Err(e) => self.helm_failed(memory, None, 0, &e).await,
                }
            }
        }
    }

    /// A helm call failed: let decide say what it means, report it, end or carry on.
    pub(crate) async fn helm_failed(
        &self,
        memory: &mut Memory,
        target: Option<&HelmEntry<'_>>,
        attempt: u32,
        err: &crate::helm::HelmError,
    ) -> Option<Next> {
        let subject = target.map(|t| (t.spec, t.state));
        let now = Instant::now();
        match decide::after_helm_failure(memory, subject, attempt, err, &self.policy, now) {
            AfterFailure::Stopped => Some(at(now)),
            AfterFailure::Probe => None,
            AfterFailure::Retry(when, report) => {
                self.effects.metrics.retries.inc();
                match (target, report) {
                    (Some(t), Some(report)) => {
                        tracing::info!(deploy_id = t.id, release = %t.spec.release, attempt, error = %err, "helm failed; will retry");
                        Some(self.report(t, &report).await.unwrap_or(at(when)))
                    }
                    _ => {
                        tracing::warn!(error = %err, attempts = memory.attempts, "helm failed for a removed deployment; retrying");
                        Some(at(when))
                    }
                }
            }
            AfterFailure::GiveUp(report) => {
                self.effects.metrics.failed.inc();
                let t = target?;
                tracing::warn!(deploy_id = t.id, release = %t.spec.release, attempts = attempt, error = %err, "giving up");
                Some(self.report(t, &report).await.unwrap_or(Next::Done))
            }
        }
    }
}
