//! The guard's part of a reconcile: before deciding, leave held releases alone (telling
//! their entries why) and uninstall pruned ones; after deciding, turn a plan that would
//! leave an adopted release unlabelled (or restart it) into an in-place upgrade, which
//! carries this database's label.

use std::time::{Duration, Instant};

use sdp_config::database::HeldReason;
use sdp_config::entity::{DeploymentState, DeploymentStatus};
use sdp_runtime::queue::{Lane, Next};

use super::Verdict;
use crate::decide::{self, ApplyKind, Memory, Plan, Report, already_reported};
use crate::effects::HelmEntry;
use crate::reconcile::{HELM, PREPARE, Reconciler};
use crate::spec::Desired;
use crate::view::Item;

/// Wait before looking again while the guard has not classified the releases yet.
const NOT_YET: Duration = Duration::from_secs(2);

impl Reconciler {
    /// Carry out the guard's verdict on `release`: `Some` ends the round (or the
    /// reconcile), `None` lets the normal rules decide.
    pub(crate) async fn guard_round(
        &self,
        release: &str,
        lane: Lane,
        entry: Option<(&str, &Item)>,
        desired: Option<&Desired>,
        state: Option<&DeploymentState>,
        memory: &mut Memory,
    ) -> Option<Option<Next>> {
        match self.effects.guard.verdict(release) {
            Verdict::Free => None,
            Verdict::NotYet => Some(Some(Next::At(tokio::time::Instant::from_std(
                Instant::now() + NOT_YET,
            )))),
            Verdict::Held(why) => {
                let (Some((id, entry)), Some(Desired::Helm(spec))) = (entry, desired) else {
                    return Some(Some(Next::Done));
                };
                let report = held_report(release, why, spec.digest.clone(), state);
                if already_reported(state, &report) {
                    return Some(Some(Next::Done));
                }
                let t = HelmEntry {
                    id,
                    entry,
                    spec,
                    state,
                };
                Some(Some(match self.effects.report(&t, &report).await {
                    crate::effects::Written::Failed(e) => self.db_failed(id, &e),
                    _ => Next::Done,
                }))
            }
            Verdict::Prune if lane == PREPARE => Some(Some(Next::Then(HELM))),
            Verdict::Prune => {
                tracing::warn!(
                    release,
                    "uninstalling: pruned by an operator (sdpcfg guard prune)"
                );
                match self.effects.uninstall(release).await {
                    Ok(()) => {
                        self.effects.guard.uninstalled(release);
                        decide::after_uninstall(memory);
                        // Go on: an entry naming the release installs it afresh.
                        Some(None)
                    }
                    Err(e) => Some(self.helm_failed(memory, None, 0, &e).await),
                }
            }
        }
    }

    /// An adopted (or unlabelled, ours) release gets this database's label with its next
    /// helm call: a plan that would make none, or restart the workload, becomes an
    /// in-place upgrade.
    pub(crate) fn relabel_plan(
        &self,
        release: &str,
        plan: Plan,
        t: Option<&HelmEntry<'_>>,
        memory: &Memory,
    ) -> Plan {
        let Some(t) = t else { return plan };
        if !self.effects.guard.needs_relabel(release) {
            return plan;
        }
        let deployed =
            t.state.and_then(DeploymentState::known_status) == Some(DeploymentStatus::Deployed);
        match plan {
            Plan::Apply(ApplyKind::Restart, n) => Plan::Apply(ApplyKind::Upgrade, n),
            Plan::Adopt(_) => Plan::Apply(
                ApplyKind::Upgrade,
                decide::attempts_so_far(t.spec, t.state, memory) + 1,
            ),
            Plan::Nothing if deployed => Plan::Apply(ApplyKind::Upgrade, 1),
            other => other,
        }
    }
}

/// What an entry whose release is held is told.
fn held_report(
    release: &str,
    why: HeldReason,
    digest: String,
    state: Option<&DeploymentState>,
) -> Report {
    Report {
        status: DeploymentStatus::Pending,
        release: Some(release.to_string()),
        revision: state.and_then(|s| s.revision),
        digest: Some(digest),
        attempts: None,
        helm_lease: None,
        message: format!(
            "release {release:?} is held by the database guard: it was {}; it is neither upgraded nor uninstalled until an operator runs `sdpcfg guard adopt` (keep it) or `sdpcfg guard prune` (remove it); see `sdpcfg guard`",
            why.describe()
        ),
    }
}
