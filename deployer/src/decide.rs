//! The pure part of reconciling one release: from what the entry asks for, the state
//! last reported, and what is known about the release, decide the next step. No etcd,
//! no helm, no clock reads: everything comes in as arguments, so every rule here is
//! unit-tested.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sdp_config::entity::{DeploymentState, DeploymentStatus};

use crate::helm::ReleaseStatus;
use crate::spec::{Desired, HelmSpec};

/// What is known about a release of this deployer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRelease {
    /// Status of the latest revision.
    pub status: ReleaseStatus,
    /// Latest revision.
    pub revision: i64,
    /// When the latest revision was last updated (from history).
    pub updated: Option<DateTime<Utc>>,
    /// The spec digest of the latest revision (from its description), if known.
    pub digest: Option<String>,
    /// The latest earlier revision that was successfully deployed (rollback target).
    pub last_good: Option<i64>,
    /// `updated`, `digest` and `last_good` come from a fresh `helm history` or from
    /// this deployer's own successful call (not just a listing).
    pub detailed: bool,
}

/// What is known about the release right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Observation {
    /// Nothing known (not looked yet, or it may have changed).
    #[default]
    Unknown,
    /// Not among this deployer's releases in the last listing (absent, or not ours).
    NotListed,
    /// No release of that name exists.
    Absent,
    /// A release of that name exists and was not installed by this deployer.
    Foreign,
    /// Ours.
    Owned(OwnedRelease),
}

/// What the dispatcher remembers about a release between reconciles (lost on restart;
/// the state key carries what must survive one).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// What is known about the release.
    pub observed: Observation,
    /// The spec digest `attempts` and `retry_at` count for.
    pub digest: Option<String>,
    /// Failed helm attempts for `digest`.
    pub attempts: u32,
    /// Do not try `digest` again before this.
    pub retry_at: Option<Instant>,
    /// A helm call of this process on the release failed or was killed: a `pending-*`
    /// status seen now was left by it, not by a helm that may still be running.
    pub left_pending: bool,
}

/// Limits of retrying.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Helm attempts per spec before FAILED.
    pub max_attempts: u32,
    /// A `pending-*` release not updated for this long, and not left by us, is stuck.
    pub stale_after: Duration,
    /// Longest wait before looking at a busy release again.
    pub busy_poll: Duration,
}

/// How an install-or-upgrade is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyKind {
    /// No release yet.
    Install,
    /// Release exists: `helm upgrade`.
    Upgrade,
    /// Release exists and its chart cannot be upgraded in place: uninstall + install.
    Replace,
}

/// How a release stuck in `pending-*` is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// `helm rollback` to this last good revision.
    Rollback(i64),
    /// Uninstall (then install again).
    Reinstall,
}

/// A state to report, without time and namespace (see [`render_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Status.
    pub status: DeploymentStatus,
    /// Release name, when there is one to show.
    pub release: Option<String>,
    /// Revision, when known.
    pub revision: Option<i64>,
    /// Spec digest the report is about.
    pub digest: Option<String>,
    /// Attempts made for that spec.
    pub attempts: Option<i64>,
    /// Words for the user.
    pub message: String,
}

/// The next step for a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Up to date.
    Nothing,
    /// Only report (bad input, a type left alone, a conflict).
    Report(Report),
    /// Find out what the release is (needs helm).
    Probe,
    /// Install or upgrade the spec (attempt number).
    Apply(ApplyKind, u32),
    /// The release already has the spec (e.g. installed before a crash): report DEPLOYED.
    Adopt(i64),
    /// Free a release stuck in `pending-*` (attempt number).
    Recover(Recovery, u32),
    /// Look again at `until` (backoff, or a release busy with someone else's helm), with
    /// an optional state report meanwhile.
    Wait(Instant, Option<Report>),
    /// The entry is gone: uninstall the release (ours).
    Uninstall,
    /// The entry is gone and so is the release: delete leftover state keys.
    Forget,
}

impl Plan {
    /// Whether carrying out the plan calls helm.
    pub fn needs_helm(&self) -> bool {
        matches!(
            self,
            Plan::Probe | Plan::Apply(..) | Plan::Recover(..) | Plan::Uninstall
        )
    }
}

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    /// What the entry asks for; `None` when there is no entry.
    pub desired: Option<&'a Desired>,
    /// The state key of that entry, parsed.
    pub state: Option<&'a DeploymentState>,
    /// State keys left without an entry map to this release.
    pub orphan_states: bool,
    /// What the dispatcher remembers.
    pub memory: &'a Memory,
    /// Retry limits.
    pub policy: &'a Policy,
    /// Now, monotonic.
    pub now: Instant,
    /// Now, wall clock (compared with helm's timestamps).
    pub wall: DateTime<Utc>,
}

/// Whether the state already says what `report` says (`updated` aside).
pub fn already_reported(state: Option<&DeploymentState>, report: &Report) -> bool {
    state.is_some_and(|s| {
        s.known_status() == Some(report.status)
            && s.message.as_deref() == Some(report.message.as_str())
            && s.release == report.release
            && s.revision == report.revision
            && s.digest == report.digest
            && s.attempts == report.attempts
    })
}

/// The state document for `report`, keeping fields of `previous` this deployer does not
/// set.
pub fn render_state(
    previous: Option<&DeploymentState>,
    report: &Report,
    namespace: &str,
    wall: DateTime<Utc>,
) -> DeploymentState {
    DeploymentState {
        status: Some(report.status.as_str().to_string()),
        release: report.release.clone(),
        namespace: Some(namespace.to_string()),
        revision: report.revision,
        digest: report.digest.clone(),
        attempts: report.attempts,
        message: Some(report.message.clone()),
        updated: Some(wall.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        extra: previous.map(|p| p.extra.clone()).unwrap_or_default(),
    }
}

fn report_once(state: Option<&DeploymentState>, report: Report) -> Plan {
    if already_reported(state, &report) {
        Plan::Nothing
    } else {
        Plan::Report(report)
    }
}

/// A report about an entry that cannot be deployed, keeping what the previous state
/// said about an existing release (it is left as it is).
fn refusal(state: Option<&DeploymentState>, status: DeploymentStatus, message: String) -> Report {
    Report {
        status,
        release: state.and_then(|s| s.release.clone()),
        revision: state.and_then(|s| s.revision),
        digest: None,
        attempts: None,
        message,
    }
}

/// Decide the next step for one release.
pub fn decide(s: &Situation<'_>) -> Plan {
    match s.desired {
        None => decide_gone(s),
        Some(Desired::Refused(reason)) => report_once(
            s.state,
            refusal(s.state, DeploymentStatus::Failed, reason.clone()),
        ),
        Some(Desired::NotHandled(kind)) => report_once(
            s.state,
            refusal(
                s.state,
                DeploymentStatus::Pending,
                format!(
                    "deployments of type {kind} are not handled by the Helm deployer; left alone"
                ),
            ),
        ),
        Some(Desired::Helm(spec)) => decide_helm(s, spec),
    }
}

fn decide_gone(s: &Situation<'_>) -> Plan {
    match &s.memory.observed {
        Observation::Owned(_) => Plan::Uninstall,
        Observation::Unknown | Observation::NotListed => Plan::Probe,
        Observation::Absent | Observation::Foreign if s.orphan_states => Plan::Forget,
        Observation::Absent | Observation::Foreign => Plan::Nothing,
    }
}

/// Whether the state reports on exactly this spec (same digest and release).
pub fn state_is_about(state: Option<&DeploymentState>, spec: &HelmSpec) -> bool {
    state.is_some_and(|st| {
        st.digest.as_deref() == Some(spec.digest.as_str())
            && st.release.as_deref() == Some(spec.release.as_str())
    })
}

/// Failed helm attempts so far for `spec`: remembered, or from the state after a restart.
pub fn attempts_so_far(spec: &HelmSpec, state: Option<&DeploymentState>, memory: &Memory) -> u32 {
    if memory.digest.as_deref() == Some(spec.digest.as_str()) {
        memory.attempts
    } else if state_is_about(state, spec) {
        state
            .and_then(|st| st.attempts)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0)
    } else {
        0
    }
}

fn decide_helm(s: &Situation<'_>, spec: &HelmSpec) -> Plan {
    let state = s.state;
    let memory = s.memory;
    let same_spec_in_state = state_is_about(state, spec);
    let attempts = attempts_so_far(spec, state, memory);
    let attempt = attempts + 1;
    let exhausted = attempts >= s.policy.max_attempts;

    // Backing off after a failure of this very spec.
    if memory.digest.as_deref() == Some(spec.digest.as_str()) {
        if let Some(at) = memory.retry_at.filter(|at| *at > s.now) {
            return Plan::Wait(at, None);
        }
    }

    match &memory.observed {
        Observation::Foreign => {
            return report_once(
                state,
                Report {
                    status: DeploymentStatus::Failed,
                    release: Some(spec.release.clone()),
                    revision: None,
                    digest: Some(spec.digest.clone()),
                    attempts: Some(0),
                    message: format!(
                        "a release named {:?} already exists in namespace {:?} and was not installed by sdp-deployer; it is left alone (delete it, or use another deployment ID)",
                        spec.release, spec.namespace
                    ),
                },
            );
        }
        Observation::Owned(o) if o.status.is_pending() => {
            if !o.detailed {
                return Plan::Probe;
            }
            let age = o.updated.map(|u| (s.wall - u).to_std().unwrap_or_default());
            let stale = memory.left_pending || age.is_none_or(|a| a >= s.policy.stale_after);
            if !stale {
                let remaining = s.policy.stale_after.saturating_sub(age.unwrap_or_default());
                let note = Report {
                    status: DeploymentStatus::Pending,
                    release: Some(spec.release.clone()),
                    revision: Some(o.revision),
                    digest: Some(spec.digest.clone()),
                    attempts: Some(i64::from(attempts)),
                    message: format!(
                        "release is {} by another helm process; waiting for it to finish (treated as stuck after {} s)",
                        o.status.as_str(),
                        s.policy.stale_after.as_secs()
                    ),
                };
                let note = (!already_reported(state, &note)).then_some(note);
                return Plan::Wait(s.now + remaining.min(s.policy.busy_poll), note);
            }
            if exhausted {
                return give_up(
                    state,
                    spec,
                    attempts,
                    &format!("release stuck in {}", o.status.as_str()),
                );
            }
            let recovery = match (&o.status, o.last_good) {
                (ReleaseStatus::PendingInstall, _) | (_, None) => Recovery::Reinstall,
                (_, Some(rev)) => Recovery::Rollback(rev),
            };
            return Plan::Recover(recovery, attempt);
        }
        _ => {}
    }

    if same_spec_in_state {
        match state.and_then(DeploymentState::known_status) {
            Some(DeploymentStatus::Deployed) => {
                return match &memory.observed {
                    Observation::NotListed => Plan::Probe,
                    // The release vanished (removed by hand): install it again, afresh.
                    Observation::Absent => Plan::Apply(ApplyKind::Install, 1),
                    Observation::Owned(o) if o.status == ReleaseStatus::Uninstalled => {
                        Plan::Apply(ApplyKind::Install, 1)
                    }
                    _ => Plan::Nothing,
                };
            }
            Some(DeploymentStatus::Failed) if exhausted => return Plan::Nothing,
            _ => {}
        }
    }

    // The spec is not known to be deployed.
    if exhausted {
        return give_up(state, spec, attempts, "giving up");
    }
    match &memory.observed {
        Observation::Unknown | Observation::NotListed => Plan::Probe,
        Observation::Absent => Plan::Apply(ApplyKind::Install, attempt),
        Observation::Owned(o) if !o.detailed => Plan::Probe,
        Observation::Owned(o)
            if o.status == ReleaseStatus::Deployed
                && o.digest.as_deref() == Some(spec.digest.as_str()) =>
        {
            Plan::Adopt(o.revision)
        }
        Observation::Owned(o)
            if matches!(
                o.status,
                ReleaseStatus::Uninstalled | ReleaseStatus::Uninstalling
            ) =>
        {
            Plan::Apply(ApplyKind::Install, attempt)
        }
        Observation::Owned(_) if spec.replace_on_change => Plan::Apply(ApplyKind::Replace, attempt),
        Observation::Owned(_) => Plan::Apply(ApplyKind::Upgrade, attempt),
        Observation::Foreign => Plan::Nothing, // handled above
    }
}

fn give_up(state: Option<&DeploymentState>, spec: &HelmSpec, attempts: u32, why: &str) -> Plan {
    // Normally the FAILED report was written with the last failure; this covers a
    // restart in between. Keep its message (helm's words) when there is one.
    if state.is_some_and(|st| {
        st.known_status() == Some(DeploymentStatus::Failed)
            && st.digest.as_deref() == Some(spec.digest.as_str())
    }) {
        return Plan::Nothing;
    }
    Plan::Report(Report {
        status: DeploymentStatus::Failed,
        release: Some(spec.release.clone()),
        revision: state.and_then(|st| st.revision),
        digest: Some(spec.digest.clone()),
        attempts: Some(i64::from(attempts)),
        message: format!(
            "{why} after {attempts} failed attempts; change the deployment to try again"
        ),
    })
}

/// Delay before retry `attempt + 1` after `attempt` failures: `initial · 2^(attempt-1)`,
/// capped, with the library's jitter (×0.5…1).
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let d = initial.saturating_mul(1u32 << exp).min(max);
    sdp_config::backoff::jitter(d)
}

#[cfg(test)]
mod tests;
