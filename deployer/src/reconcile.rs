//! Reconciling one release: read the view, [`decide`], carry the plan out with helm and
//! report in the state key, until there is nothing left to do now.
//!
//! Runs in two phases (see [`Phase`]): a cheap one for every release that needs a look
//! (decisions that need no helm, and a PENDING report while helm workers are busy), and
//! the helm phase, in the bounded worker pool.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use sdp_config::entity::{DeploymentState, DeploymentStatus};
use tokio_util::sync::CancellationToken;

use crate::decide::{
    self, Memory, Observation, Plan, Policy, Report, Situation, already_reported, attempts_so_far,
    decide,
};
use crate::helm::Helm;
use crate::metrics::Metrics;
use crate::perform::Target;
use crate::spec::{Desired, SpecContext};
use crate::store::{Basis, StateStore};
use crate::view::{Item, View};

/// Rounds of decide-and-act in one reconcile (probe → recover → install is three).
const MAX_ROUNDS: usize = 8;
/// Delay before trying again after a configuration-database failure.
pub(crate) const DB_RETRY: Duration = Duration::from_secs(2);

/// Which part of the work a reconcile may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Everything that needs no helm call; stops with [`Outcome::NeedsHelm`] otherwise.
    Prepare,
    /// Everything, helm included (runs in the worker pool).
    Helm,
}

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing left to do until something changes.
    Done,
    /// Helm work is needed: queue for a worker.
    NeedsHelm,
    /// Look again at this time.
    RetryAt(Instant),
}

/// What reconciles share during one leadership term.
pub struct Ctx {
    /// Helm (cluster or render).
    pub helm: Arc<dyn Helm>,
    /// How entries are interpreted.
    pub spec: Arc<SpecContext>,
    /// State writes.
    pub store: StateStore,
    /// The view.
    pub view: Arc<Mutex<View>>,
    /// Retry limits.
    pub policy: Policy,
    /// First retry delay.
    pub backoff: Duration,
    /// Retry delay cap.
    pub backoff_max: Duration,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Fires to stop starting helm calls (shutdown, or leadership lost).
    pub stop_new: CancellationToken,
    /// Fires to stop running helm calls.
    pub hard_stop: CancellationToken,
    /// Helm work running or queued (maintained by the dispatcher).
    pub helm_load: Arc<AtomicUsize>,
    /// Size of the helm worker pool.
    pub concurrency: usize,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("target", &self.helm.target())
            .finish_non_exhaustive()
    }
}

/// A deployment ID with its entry.
type IdEntry = (String, Item);

/// The deployment a release belongs to, and the others that (wrongly) map to it.
fn pick<'a>(
    entries: &'a [IdEntry],
    release: &str,
    prefix: &str,
) -> (Option<&'a IdEntry>, Vec<&'a IdEntry>) {
    let winner = entries
        .iter()
        .find(|(id, _)| format!("{prefix}{id}") == release)
        .or_else(|| entries.first());
    let losers = entries.iter().filter(|e| Some(*e) != winner).collect();
    (winner, losers)
}

fn parse_state(item: Option<&Item>) -> Option<DeploymentState> {
    item.and_then(|s| DeploymentState::parse(&s.value).ok())
}

impl Ctx {
    /// Reconcile `release`, updating `memory`.
    pub async fn reconcile(&self, release: &str, phase: Phase, memory: &mut Memory) -> Outcome {
        for _ in 0..MAX_ROUNDS {
            if self.stop_new.is_cancelled() {
                // Stopping: what is running finishes, nothing new starts.
                return Outcome::Done;
            }
            let snap = self
                .view
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .snapshot(release);
            let (winner, losers) = pick(&snap.entries, release, &self.spec.prefix);
            for (id, entry) in losers {
                let Some((winner_id, _)) = winner else { break };
                let state = parse_state(snap.state(id));
                let report = Report {
                    status: DeploymentStatus::Failed,
                    release: None,
                    revision: None,
                    digest: None,
                    attempts: None,
                    message: format!(
                        "release name {release:?} is already used by deployment {winner_id:?}; use another deployment ID"
                    ),
                };
                if !already_reported(state.as_ref(), &report) {
                    if let Err(e) = self.store.report(id, entry, Basis::Text, &report).await {
                        return self.db_failed(id, &e);
                    }
                }
            }
            let desired = winner.map(|(id, e)| self.spec.desired(id, &e.value));
            let state = winner.and_then(|(id, _)| parse_state(snap.state(id)));
            let orphans = snap.orphan_states();
            let plan = decide(&Situation {
                desired: desired.as_ref(),
                state: state.as_ref(),
                orphan_states: !orphans.is_empty(),
                memory,
                policy: &self.policy,
                now: Instant::now(),
                wall: Utc::now(),
            });
            tracing::debug!(release, ?plan, ?phase, "decided");
            let target = match (winner, &desired) {
                (Some((id, entry)), Some(Desired::Helm(spec))) => Some(Target {
                    id,
                    entry,
                    spec,
                    state: state.as_ref(),
                }),
                _ => None,
            };
            if phase == Phase::Prepare && plan.needs_helm() {
                if let Some(t) = &target {
                    if self.helm_busy() && !decide::state_is_about(t.state, t.spec) {
                        let attempts = attempts_so_far(t.spec, t.state, memory);
                        let report = self.base_report(
                            t,
                            DeploymentStatus::Pending,
                            attempts,
                            "waiting for a helm worker".into(),
                        );
                        if let Some(end) = self.report(t, &report).await {
                            return end;
                        }
                    }
                }
                return Outcome::NeedsHelm;
            }
            match plan {
                Plan::Nothing => return Outcome::Done,
                Plan::Report(report) => {
                    let Some((id, entry)) = winner else {
                        return Outcome::Done;
                    };
                    let basis = match &target {
                        Some(t) => Basis::Digest(&t.spec.digest),
                        None => Basis::Text,
                    };
                    return match self.store.report(id, entry, basis, &report).await {
                        Ok(_) => Outcome::Done,
                        Err(e) => self.db_failed(id, &e),
                    };
                }
                Plan::Wait(until, note) => {
                    if matches!(&memory.observed, Observation::Owned(o) if o.status.is_pending()) {
                        memory.observed = Observation::Unknown;
                    }
                    if let (Some(note), Some(t)) = (note, &target) {
                        if let Some(Outcome::RetryAt(at)) = self.report(t, &note).await {
                            return Outcome::RetryAt(at.min(until));
                        }
                    }
                    return Outcome::RetryAt(until);
                }
                Plan::Forget => {
                    for (id, item) in &orphans {
                        if let Err(e) = self.store.forget(id, item).await {
                            return self.db_failed(id, &e);
                        }
                    }
                    return Outcome::Done;
                }
                Plan::Adopt(revision) => {
                    let Some(t) = &target else {
                        return Outcome::Done;
                    };
                    let attempts = attempts_so_far(t.spec, t.state, memory).max(1);
                    self.succeeded(memory, t.spec, revision);
                    let mut report = self.base_report(
                        t,
                        DeploymentStatus::Deployed,
                        attempts,
                        format!("deployed: revision {revision}"),
                    );
                    report.revision = Some(revision);
                    return self.report(t, &report).await.unwrap_or(Outcome::Done);
                }
                Plan::Probe => {
                    let known = memory.observed.clone();
                    match self.timed("probe", self.probe(release, &known)).await {
                        Ok(observed) => memory.observed = observed,
                        Err(e) => {
                            let attempt = target
                                .as_ref()
                                .map_or(0, |t| attempts_so_far(t.spec, t.state, memory))
                                + 1;
                            if let Some(end) =
                                self.helm_failed(memory, target.as_ref(), attempt, &e).await
                            {
                                return end;
                            }
                        }
                    }
                }
                Plan::Apply(kind, attempt) => {
                    let Some(t) = &target else {
                        return Outcome::Done;
                    };
                    if let Some(end) = self.apply(memory, t, kind, attempt).await {
                        return end;
                    }
                }
                Plan::Recover(recovery, attempt) => {
                    let Some(t) = &target else {
                        return Outcome::Done;
                    };
                    if let Some(end) = self.recover(memory, t, recovery, attempt).await {
                        return end;
                    }
                }
                Plan::Uninstall => {
                    tracing::info!(release, "uninstalling: its deployment is gone");
                    match self
                        .timed(
                            "uninstall",
                            self.helm
                                .uninstall(&self.spec.namespace, release, &self.hard_stop),
                        )
                        .await
                    {
                        Ok(()) => {
                            memory.observed = Observation::Absent;
                            memory.attempts = 0;
                            memory.digest = None;
                            memory.left_pending = false;
                        }
                        Err(e) => {
                            if let Some(end) = self.helm_failed(memory, None, 0, &e).await {
                                return end;
                            }
                        }
                    }
                }
            }
        }
        Outcome::RetryAt(Instant::now() + Duration::from_secs(1))
    }
}
