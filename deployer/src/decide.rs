//! Every decision about a release, pure: from what the entry asks for, the state last
//! reported, and what is known about the release, decide the next step ([`decide`]);
//! which entry owns a release name several entries map to ([`release_owner`]); whether a
//! step waits for a helm worker ([`queue_for_helm`]); and what an effect's result means
//! for the memory of the release and the next step ([`after_helm_failure`],
//! [`after_success`], …). No etcd, no helm, no clock reads: everything comes in as
//! arguments, so every rule here is unit-tested. `reconcile` only carries the plans out.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sdp_config::entity::{DeploymentState, DeploymentStatus};

use crate::helm::{HelmError, ReleaseStatus};
use crate::spec::{Desired, HelmSpec};
use crate::view::Item;

/// What is known about a release of this deployer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnedRelease {
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
pub(crate) enum Observation {
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
pub(crate) struct Memory {
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
    /// The `kubernetes-direct` object this process applied for the release.
    pub direct: Option<crate::direct::Applied>,
    /// What etcd said about the lease recorded in the state (`helm_lease`), the term
    /// whose helm call may have left the release `pending-*`.
    pub lease_check: Option<LeaseCheck>,
}

/// Whether a recorded leadership lease still exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseCheck {
    /// The lease asked about.
    pub lease: i64,
    /// etcd no longer knows it: its term has ended, for good.
    pub gone: bool,
}

/// The leadership term this deployer works in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TermInfo {
    /// Its etcd lease (recorded in states before each helm call).
    pub lease: i64,
    /// How long it has lasted.
    pub age: Duration,
}

/// State field naming the leadership lease (hex, as `etcdctl lease list` shows it) of
/// the term that started the last helm call for the entry.
pub(crate) const HELM_LEASE: &str = "helm_lease";

/// The lease recorded in a state by [`render_state`].
pub(crate) fn recorded_lease(state: Option<&DeploymentState>) -> Option<i64> {
    let text = state?.extra.get(HELM_LEASE)?.as_str()?;
    u64::from_str_radix(text, 16).ok().map(|v| v as i64)
}

/// Limits of retrying.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Helm attempts per spec before FAILED.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per failure (the project's backoff).
    pub backoff: Duration,
    /// Longest delay between attempts.
    pub backoff_max: Duration,
    /// A `pending-*` release not updated for this long, and not left by us, is stuck.
    pub stale_after: Duration,
    /// A `pending-*` release whose last helm call was started by a term that has ended
    /// (its lease gone) is stuck once the current term is this old: by then no helm of
    /// that term can be running (a dead deployer's helm dies with it; a deployer that
    /// lost leadership stops its calls one lease TTL after noticing, SIGKILL after the
    /// kill grace). Two lease TTLs (noticing can lag the expiry) + kill grace + 1 s.
    pub dead_term_wait: Duration,
    /// Longest wait before looking at a busy release again.
    pub busy_poll: Duration,
}

impl Policy {
    /// The give-up rule, the only one: a spec whose helm attempts reached the limit is
    /// FAILED and not tried again until it changes.
    pub(crate) fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }

    /// When to try attempt `attempt + 1` after attempt `attempt` failed.
    pub(crate) fn retry_delay(&self, attempt: u32) -> Duration {
        sdp_config::backoff::delay(self.backoff, self.backoff_max, attempt)
    }
}

/// How an install-or-upgrade is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApplyKind {
    /// No release yet.
    Install,
    /// Release exists: `helm upgrade`.
    Upgrade,
    /// Release exists and its chart cannot be upgraded in place: uninstall + install.
    Replace,
    /// Release exists and its state was deleted (a retry): uninstall + install, afresh.
    Restart,
}

/// How a release stuck in `pending-*` is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// `helm rollback` to this last good revision.
    Rollback(i64),
    /// Uninstall (then install again).
    Reinstall,
}

/// A state to report, without time and namespace (see [`render_state`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Report {
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
    /// The lease of the term about to start a helm call (recorded in the state as
    /// [`HELM_LEASE`] before the call); `None` keeps what the state says.
    pub helm_lease: Option<i64>,
}

/// The next step for a release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
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
    /// Ask etcd whether this lease (of the term whose helm call left the release
    /// `pending-*`) still exists.
    CheckLease(i64),
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
    pub(crate) fn needs_helm(&self) -> bool {
        matches!(
            self,
            Plan::Probe | Plan::Apply(..) | Plan::Recover(..) | Plan::Uninstall
        )
    }
}

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Situation<'a> {
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
    /// The current leadership term.
    pub term: TermInfo,
}

/// Whether the state already says what `report` says (`updated` aside).
pub(crate) fn already_reported(state: Option<&DeploymentState>, report: &Report) -> bool {
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
pub(crate) fn render_state(
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
        extra: {
            let mut extra = previous.map(|p| p.extra.clone()).unwrap_or_default();
            if let Some(lease) = report.helm_lease {
                extra.insert(HELM_LEASE.into(), format!("{:x}", lease as u64).into());
            }
            extra
        },
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
        helm_lease: None,
        release: state.and_then(|s| s.release.clone()),
        revision: state.and_then(|s| s.revision),
        digest: None,
        attempts: None,
        message,
    }
}

/// Decide the next step for one release.
pub(crate) fn decide(s: &Situation<'_>) -> Plan {
    match s.desired {
        None => decide_gone(s),
        Some(Desired::Refused(reason)) => report_once(
            s.state,
            refusal(s.state, DeploymentStatus::Failed, reason.clone()),
        ),
        // FAILED, not PENDING: nothing here will ever run it, and a status that never
        // changes must not read as "later". Reported once, never retried.
        Some(Desired::NotHandled(kind)) => report_once(
            s.state,
            refusal(
                s.state,
                DeploymentStatus::Failed,
                format!(
                    "deployments of type {kind} are not run by sdp-deployer: it deploys into Kubernetes and starts no processes of its own; use a helm or kubernetes-direct deployment"
                ),
            ),
        ),
        Some(Desired::Helm(spec)) => decide_helm(s, spec),
        // Carried out before deciding (`Reconciler::direct_round`).
        Some(Desired::Direct(_)) => Plan::Nothing,
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

/// Whose helm call left a `pending-*` release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeftBy {
    /// This term's (failed, killed, or simply over: no two reconciles of one release
    /// run at once, so none of ours runs now).
    Us,
    /// A term that has ended (its lease is gone).
    EndedTerm,
    /// Maybe a helm that still runs (another tool's, or a term whose lease lives).
    Unknown,
}

/// Whose helm call left the release `pending-*`, from the lease the state records; or
/// the lease to ask etcd about first (`Err`).
fn left_by(s: &Situation<'_>, state: Option<&DeploymentState>) -> Result<LeftBy, i64> {
    if s.memory.left_pending {
        return Ok(LeftBy::Us);
    }
    match recorded_lease(state) {
        None => Ok(LeftBy::Unknown),
        Some(lease) if lease == s.term.lease => Ok(LeftBy::Us),
        Some(lease) => match s.memory.lease_check {
            Some(c) if c.lease == lease && c.gone => Ok(LeftBy::EndedTerm),
            Some(c) if c.lease == lease => Ok(LeftBy::Unknown),
            _ => Err(lease),
        },
    }
}

/// Whether the state reports on exactly this spec (same digest and release).
pub(crate) fn state_is_about(state: Option<&DeploymentState>, spec: &HelmSpec) -> bool {
    state.is_some_and(|st| {
        st.digest.as_deref() == Some(spec.digest.as_str())
            && st.release.as_deref() == Some(spec.release.as_str())
    })
}

/// Failed helm attempts so far for `spec`: remembered, or from the state after a restart.
pub(crate) fn attempts_so_far(
    spec: &HelmSpec,
    state: Option<&DeploymentState>,
    memory: &Memory,
) -> u32 {
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
    let exhausted = s.policy.exhausted(attempts);

    // Backing off after a failure of this very spec.
    if memory.digest.as_deref() == Some(spec.digest.as_str())
        && let Some(at) = memory.retry_at.filter(|at| *at > s.now)
    {
        return Plan::Wait(at, None);
    }

    match &memory.observed {
        Observation::Foreign => {
            return report_once(
                state,
                Report {
                    helm_lease: None,
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
            let left = match left_by(s, state) {
                Ok(left) => left,
                Err(lease) => return Plan::CheckLease(lease),
            };
            let age = o.updated.map(|u| (s.wall - u).to_std().unwrap_or_default());
            let stale_by_age = age.is_none_or(|a| a >= s.policy.stale_after);
            let stale = match left {
                LeftBy::Us => true,
                LeftBy::EndedTerm => stale_by_age || s.term.age >= s.policy.dead_term_wait,
                LeftBy::Unknown => stale_by_age,
            };
            if !stale {
                let until_stale = s.policy.stale_after.saturating_sub(age.unwrap_or_default());
                let (remaining, message) = match left {
                    LeftBy::EndedTerm => {
                        let remaining = s.policy.dead_term_wait.saturating_sub(s.term.age);
                        (
                            remaining.min(until_stale),
                            format!(
                                "release is {} after a helm call of a deployer term that has ended; recovering it once this term is {} s old (no helm of the ended term can run by then)",
                                o.status.as_str(),
                                s.policy.dead_term_wait.as_secs()
                            ),
                        )
                    }
                    LeftBy::Us | LeftBy::Unknown => (
                        until_stale,
                        format!(
                            "release is {} by another helm process; waiting for it to finish (treated as stuck after {} s)",
                            o.status.as_str(),
                            s.policy.stale_after.as_secs()
                        ),
                    ),
                };
                let note = Report {
                    status: DeploymentStatus::Pending,
                    release: Some(spec.release.clone()),
                    revision: Some(o.revision),
                    digest: Some(spec.digest.clone()),
                    attempts: Some(i64::from(attempts)),
                    message,
                    helm_lease: None,
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
        // No state about this release while it exists: its state was deleted (an
        // operator's retry, `sdpcfg retry`), the entry is new, or the release was made for
        // another entry (since deleted). Start afresh: a failed or exited workload, or
        // another entry's, is created again, not adopted.
        Observation::Owned(o)
            if state.is_none_or(|st| st.release.as_deref() != Some(spec.release.as_str()))
                && !matches!(
                    o.status,
                    ReleaseStatus::Uninstalled | ReleaseStatus::Uninstalling
                ) =>
        {
            Plan::Apply(ApplyKind::Restart, attempt)
        }
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
        helm_lease: None,
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

/// A deployment ID with its entry.
pub(crate) type IdEntry = (String, Item);

/// Which of the entries mapping to `release` owns it, and the FAILED reports owed to the
/// others, skipping those already reported (`state_of` gives an entry's parsed state).
///
/// Ownership goes by entry, not by name: an entry whose state says it holds the release
/// (names it) keeps it, so a later entry whose ID happens to give the same name (`Foo`
/// maps to `foo-1cbec737`; an entry named `foo-1cbec737` maps there too) never takes it
/// over. Only when no live entry holds it does the entry whose ID gives exactly that
/// name come first, then the first by ID.
pub(crate) fn release_owner<'a>(
    entries: &'a [IdEntry],
    release: &str,
    prefix: &str,
    state_of: impl Fn(&str) -> Option<DeploymentState>,
) -> (Option<&'a IdEntry>, Vec<(&'a IdEntry, Report)>) {
    let exact = |id: &str| format!("{prefix}{id}") == release;
    let holders: Vec<&IdEntry> = entries
        .iter()
        .filter(|(id, _)| state_of(id).is_some_and(|st| st.release.as_deref() == Some(release)))
        .collect();
    let winner = holders
        .iter()
        .copied()
        .find(|(id, _)| exact(id))
        .or_else(|| holders.first().copied())
        .or_else(|| entries.iter().find(|(id, _)| exact(id)))
        .or_else(|| entries.first());
    let Some((winner_id, _)) = winner else {
        return (None, Vec::new());
    };
    let reports = entries
        .iter()
        .filter(|e| e.0 != *winner_id)
        .filter_map(|e| {
            let report = Report {
                helm_lease: None,
                status: DeploymentStatus::Failed,
                release: None,
                revision: None,
                digest: None,
                attempts: None,
                message: format!(
                    "release name {release:?} is already used by deployment {winner_id:?}; use another deployment ID"
                ),
            };
            (!already_reported(state_of(&e.0).as_ref(), &report)).then_some((e, report))
        })
        .collect();
    (winner, reports)
}

/// A report about `spec` in progress (or failed), keeping the revision the state shows.
pub(crate) fn progress_report(
    spec: &HelmSpec,
    state: Option<&DeploymentState>,
    status: DeploymentStatus,
    attempts: u32,
    message: String,
) -> Report {
    Report {
        status,
        helm_lease: None,
        release: Some(spec.release.clone()),
        revision: state.and_then(|s| s.revision),
        digest: Some(spec.digest.clone()),
        attempts: Some(i64::from(attempts)),
        message,
    }
}

/// In the cheap lane a plan that needs helm goes to the helm lane. While every helm
/// worker is busy and the state does not speak of this spec yet, the user is told that
/// it waits (`Some(report)`).
pub(crate) fn queue_for_helm(
    spec: Option<(&HelmSpec, Option<&DeploymentState>)>,
    memory: &Memory,
    helm_busy: bool,
) -> Option<Report> {
    let (spec, state) = spec?;
    if !helm_busy || state_is_about(state, spec) {
        return None;
    }
    let attempts = attempts_so_far(spec, state, memory);
    Some(progress_report(
        spec,
        state,
        DeploymentStatus::Pending,
        attempts,
        "waiting for a helm worker".into(),
    ))
}

/// What comes after a failed helm call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The call was stopped (shutdown or leadership lost): look again soon.
    Stopped,
    /// Another operation holds the release: find out what it is now.
    Probe,
    /// Try again at this time; report meanwhile when there is an entry.
    Retry(Instant, Option<Report>),
    /// That was the last attempt: FAILED, in helm's own words.
    GiveUp(Report),
}

/// After helm call number `attempt` for `spec` (or for a removed deployment, `None`)
/// failed with `err`: update `memory` and say what comes next.
pub(crate) fn after_helm_failure(
    memory: &mut Memory,
    spec: Option<(&HelmSpec, Option<&DeploymentState>)>,
    attempt: u32,
    err: &HelmError,
    policy: &Policy,
    now: Instant,
) -> AfterFailure {
    memory.observed = Observation::Unknown;
    if err.is_cancelled() {
        return AfterFailure::Stopped;
    }
    if err.is_busy() {
        return AfterFailure::Probe;
    }
    memory.left_pending = true;
    let Some((spec, state)) = spec else {
        // An uninstall or probe for a deployment that is gone: retry for ever, slowly.
        if memory.digest.is_some() {
            memory.digest = None;
            memory.attempts = 0;
        }
        memory.attempts += 1;
        return AfterFailure::Retry(now + policy.retry_delay(memory.attempts), None);
    };
    memory.digest = Some(spec.digest.clone());
    memory.attempts = attempt;
    if policy.exhausted(attempt) {
        memory.retry_at = None;
        return AfterFailure::GiveUp(progress_report(
            spec,
            state,
            DeploymentStatus::Failed,
            attempt,
            err.to_string(),
        ));
    }
    let delay = policy.retry_delay(attempt);
    let at = now + delay;
    memory.retry_at = Some(at);
    let message = format!(
        "attempt {attempt} of {} failed, retrying in {:.1} s: {err}",
        policy.max_attempts,
        delay.as_secs_f64()
    );
    AfterFailure::Retry(
        at,
        Some(progress_report(
            spec,
            state,
            DeploymentStatus::Pending,
            attempt,
            message,
        )),
    )
}

/// Helm installed, upgraded or adopted `spec` at `revision`.
pub(crate) fn after_success(
    memory: &mut Memory,
    spec: &HelmSpec,
    revision: i64,
    wall: DateTime<Utc>,
) {
    memory.observed = Observation::Owned(OwnedRelease {
        status: ReleaseStatus::Deployed,
        revision,
        updated: Some(wall),
        digest: Some(spec.digest.clone()),
        last_good: None,
        detailed: true,
    });
    memory.digest = Some(spec.digest.clone());
    memory.attempts = 0;
    memory.retry_at = None;
    memory.left_pending = false;
}

/// The entry has no state key (new, or its state was deleted to ask for a retry): the
/// attempts made so far no longer count.
pub(crate) fn without_state(memory: &mut Memory) {
    memory.digest = None;
    memory.attempts = 0;
    memory.retry_at = None;
}

/// The release was uninstalled because its entry is gone.
pub(crate) fn after_uninstall(memory: &mut Memory) {
    memory.observed = Observation::Absent;
    memory.attempts = 0;
    memory.digest = None;
    memory.left_pending = false;
}

/// A stuck release was freed.
pub(crate) fn after_recovery(memory: &mut Memory, recovery: Recovery) {
    memory.left_pending = false;
    memory.observed = match recovery {
        Recovery::Reinstall => Observation::Absent,
        Recovery::Rollback(_) => Observation::Unknown,
    };
}

/// Waiting on a release another helm holds: look at it afresh next time.
pub(crate) fn after_wait(memory: &mut Memory) {
    if matches!(&memory.observed, Observation::Owned(o) if o.status.is_pending()) {
        memory.observed = Observation::Unknown;
    }
    // A lease that lived may have ended since; a gone one stays gone.
    if memory.lease_check.is_some_and(|c| !c.gone) {
        memory.lease_check = None;
    }
}

/// What the user is told while a plan's helm step runs, and its metrics label.
pub(crate) fn apply_report(
    spec: &HelmSpec,
    state: Option<&DeploymentState>,
    kind: ApplyKind,
    attempt: u32,
    policy: &Policy,
) -> Report {
    let (status, doing) = match kind {
        ApplyKind::Install => (DeploymentStatus::Installing, "installing".to_string()),
        ApplyKind::Upgrade => (DeploymentStatus::Upgrading, "upgrading".to_string()),
        ApplyKind::Replace => (
            DeploymentStatus::Upgrading,
            format!(
                "replacing (uninstall, then install: chart {} cannot be upgraded in place)",
                spec.chart.name
            ),
        ),
        ApplyKind::Restart => (
            DeploymentStatus::Upgrading,
            "starting afresh (uninstall, then install: the state was deleted to retry, or the release was made for another deployment)".to_string(),
        ),
    };
    progress_report(
        spec,
        state,
        status,
        attempt,
        format!("{doing}, attempt {attempt} of {}", policy.max_attempts),
    )
}

/// The DEPLOYED report after a successful apply (or adoption, `kind` `None`).
pub(crate) fn deployed_report(
    spec: &HelmSpec,
    state: Option<&DeploymentState>,
    kind: Option<ApplyKind>,
    attempts: u32,
    revision: i64,
) -> Report {
    let done = match kind {
        Some(ApplyKind::Install) => "installed",
        Some(ApplyKind::Upgrade) => "upgraded",
        Some(ApplyKind::Replace) => "replaced",
        Some(ApplyKind::Restart) => "installed afresh",
        None => "deployed",
    };
    let mut report = progress_report(
        spec,
        state,
        DeploymentStatus::Deployed,
        attempts,
        format!("{done}: revision {revision}"),
    );
    report.revision = Some(revision);
    report
}

/// What the user is told while a stuck release is freed.
pub(crate) fn recovery_report(
    spec: &HelmSpec,
    state: Option<&DeploymentState>,
    stuck: &str,
    recovery: Recovery,
    attempt: u32,
) -> Report {
    let (status, message) = match recovery {
        Recovery::Reinstall => (
            DeploymentStatus::Uninstalling,
            format!("release was stuck in {stuck}: uninstalling it to install again"),
        ),
        Recovery::Rollback(rev) => (
            DeploymentStatus::Upgrading,
            format!("release was stuck in {stuck}: rolling back to revision {rev}, then upgrading"),
        ),
    };
    progress_report(spec, state, status, attempt, message)
}

#[cfg(test)]
mod tests;
