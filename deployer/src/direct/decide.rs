//! Every decision about a `kubernetes-direct` entry, pure: whether to apply (and which
//! attempt it is), wait, or leave it; what an apply's result means for the memory and the
//! state. The retry policy is the helm deployments' (`SDP_HELM_RETRIES`, backoff).

use std::time::Instant;

use sdp_config::entity::{DeploymentState, DeploymentStatus};

use super::cluster::DirectError;
use super::manifest::{DirectSpec, ObjectRef};
use crate::decide::{Memory, Policy, Report};

/// What this process applied for a release (lost on restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The deployment it was applied for.
    pub deploy_id: String,
    /// The object.
    pub object: ObjectRef,
    /// The spec digest applied.
    pub digest: String,
    /// Failed attempts to delete it since its entry stopped asking for it.
    pub delete_failures: u32,
    /// What the state said when it was applied.
    pub message: String,
}

/// The next step for a `kubernetes-direct` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Applied and reported.
    Nothing,
    /// Backing off after a failure: look again then.
    Wait(Instant),
    /// Apply (attempt number).
    Apply(u32),
    /// Only report (the attempts were used up before a restart).
    Report(Report),
}

/// Whether the state reports on exactly this spec.
fn state_is_about(state: Option<&DeploymentState>, spec: &DirectSpec) -> bool {
    state.is_some_and(|s| s.digest.as_deref() == Some(spec.digest.as_str()))
}

/// Failed attempts so far for `spec`: remembered, or from the state after a restart. A
/// deleted state (the operator's way to ask for a retry) starts again from attempt 1.
pub(crate) fn attempts_so_far(
    spec: &DirectSpec,
    state: Option<&DeploymentState>,
    memory: &Memory,
) -> u32 {
    if state.is_none() {
        0
    } else if memory.digest.as_deref() == Some(spec.digest.as_str()) {
        memory.attempts
    } else if state_is_about(state, spec)
        && state.and_then(DeploymentState::known_status) != Some(DeploymentStatus::Deployed)
    {
        // The attempts of a DEPLOYED state are the one that succeeded, not failures.
        state
            .and_then(|s| s.attempts)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0)
    } else {
        0
    }
}

/// Decide the next step for `spec`.
pub(crate) fn next(
    spec: &DirectSpec,
    state: Option<&DeploymentState>,
    memory: &Memory,
    policy: &Policy,
    now: Instant,
) -> Step {
    let about = state_is_about(state, spec);
    let status = state.and_then(DeploymentState::known_status);
    let applied_here = memory
        .direct
        .as_ref()
        .is_some_and(|a| a.digest == spec.digest && a.object == spec.object);
    if about && status == Some(DeploymentStatus::Deployed) && applied_here {
        return Step::Nothing;
    }
    // A deleted state asks to try a failed spec again; one applied by this process is
    // only reported again. Applying it again would also race a deletion of the whole
    // deployment (`sdpcfg delete -R`), whose state deletion may be seen first.
    if state.is_none()
        && let Some(applied) = memory.direct.as_ref().filter(|_| applied_here)
    {
        return Step::Report(report(
            spec,
            DeploymentStatus::Deployed,
            1,
            applied.message.clone(),
        ));
    }
    // FAILED is final for this spec: it changes with the entry, or the state is deleted.
    if about && status == Some(DeploymentStatus::Failed) {
        return Step::Nothing;
    }
    let attempts = attempts_so_far(spec, state, memory);
    if state.is_some()
        && memory.digest.as_deref() == Some(spec.digest.as_str())
        && let Some(at) = memory.retry_at.filter(|at| *at > now)
    {
        return Step::Wait(at);
    }
    if policy.exhausted(attempts) {
        return Step::Report(report(
            spec,
            DeploymentStatus::Failed,
            attempts,
            format!(
                "giving up after {attempts} failed attempts; change the deployment to try again"
            ),
        ));
    }
    // Also after a restart when the state says DEPLOYED: applying the same manifest
    // again changes nothing, tells the cluster's current answer, and is the only way
    // this process learns which object to delete when the entry goes.
    Step::Apply(attempts + 1)
}

fn report(spec: &DirectSpec, status: DeploymentStatus, attempts: u32, message: String) -> Report {
    Report {
        status,
        helm_lease: None,
        release: None,
        revision: None,
        digest: Some(spec.digest.clone()),
        attempts: Some(i64::from(attempts)),
        message,
    }
}

/// After attempt `attempt` to apply `spec` ended with `result` (what was done, or why
/// not): update `memory` and say what to report (`None`: nothing, the call was
/// stopped) and when to look again (`None`: only on change).
pub(crate) fn after_apply(
    memory: &mut Memory,
    spec: &DirectSpec,
    attempt: u32,
    result: Result<String, DirectError>,
    policy: &Policy,
    now: Instant,
) -> (Option<Report>, Option<Instant>) {
    memory.digest = Some(spec.digest.clone());
    memory.retry_at = None;
    let message = match result {
        Ok(done) => {
            memory.attempts = 0;
            memory.direct = Some(Applied {
                deploy_id: spec.deploy_id.clone(),
                object: spec.object.clone(),
                digest: spec.digest.clone(),
                delete_failures: 0,
                message: done.clone(),
            });
            return (
                Some(report(spec, DeploymentStatus::Deployed, attempt, done)),
                None,
            );
        }
        Err(DirectError::Cancelled) => return (None, Some(now)),
        Err(DirectError::Refused(why)) => {
            memory.attempts = attempt;
            return (
                Some(report(spec, DeploymentStatus::Failed, attempt, why)),
                None,
            );
        }
        Err(DirectError::Failed(why)) => why,
    };
    memory.attempts = attempt;
    if policy.exhausted(attempt) {
        return (
            Some(report(spec, DeploymentStatus::Failed, attempt, message)),
            None,
        );
    }
    let delay = policy.retry_delay(attempt);
    let at = now + delay;
    memory.retry_at = Some(at);
    let message = format!(
        "attempt {attempt} of {} failed, retrying in {:.1} s: {message}",
        policy.max_attempts,
        delay.as_secs_f64()
    );
    (
        Some(report(spec, DeploymentStatus::Pending, attempt, message)),
        Some(at),
    )
}

/// The object this process applied for the release, when what the entry asks for now
/// (`wanted`: the object of a `kubernetes-direct` spec, or `None`) is not it: to delete.
pub(crate) fn to_delete<'m>(memory: &'m Memory, wanted: Option<&ObjectRef>) -> Option<&'m Applied> {
    memory
        .direct
        .as_ref()
        .filter(|a| !wanted.is_some_and(|w| w.same_object(&a.object)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::direct::manifest::{Kinds, Rules, check};
    use crate::fixtures::POLICY;

    fn spec(data: &str) -> DirectSpec {
        let kinds = Kinds::parse("ConfigMap").unwrap();
        let args = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": data}});
        let rules = Rules {
            kinds: &kinds,
            namespace: "sdp",
            prefix: "",
            config_prefix: "",
            release: "d",
        };
        check("d", args.as_object().unwrap(), rules).unwrap()
    }

    fn state_of(r: &Report) -> DeploymentState {
        crate::decide::render_state(None, r, "sdp", chrono::Utc::now())
    }

    #[test]
    fn a_new_spec_is_applied_and_then_left_alone() {
        let s = spec("a");
        let mut memory = Memory::default();
        let now = Instant::now();
        assert_eq!(next(&s, None, &memory, &POLICY, now), Step::Apply(1));
        let (report, again) = after_apply(&mut memory, &s, 1, Ok("applied".into()), &POLICY, now);
        let report = report.unwrap();
        assert_eq!(report.status, DeploymentStatus::Deployed);
        assert_eq!(again, None);
        let st = state_of(&report);
        assert_eq!(next(&s, Some(&st), &memory, &POLICY, now), Step::Nothing);
        // A changed entry is applied again.
        assert_eq!(
            next(&spec("b"), Some(&st), &memory, &POLICY, now),
            Step::Apply(1)
        );
        // After a restart the same manifest is applied once more, to learn the object.
        assert_eq!(
            next(&s, Some(&st), &Memory::default(), &POLICY, now),
            Step::Apply(1)
        );
    }

    #[test]
    fn failures_back_off_then_fail_and_refusals_fail_at_once() {
        let s = spec("a");
        let mut memory = Memory::default();
        let now = Instant::now();
        let (r, at) = after_apply(
            &mut memory,
            &s,
            1,
            Err(DirectError::Failed("connection refused".into())),
            &POLICY,
            now,
        );
        let r = r.unwrap();
        assert_eq!(r.status, DeploymentStatus::Pending);
        assert!(
            r.message.starts_with("attempt 1 of 3 failed, retrying in ")
                && r.message.ends_with(" s: connection refused"),
            "{}",
            r.message
        );
        let at = at.unwrap();
        assert!(
            at > now && at <= now + Duration::from_secs(2),
            "backoff with jitter"
        );
        let st = state_of(&r);
        assert_eq!(next(&s, Some(&st), &memory, &POLICY, now), Step::Wait(at));
        let later = now + Duration::from_secs(3);
        assert_eq!(next(&s, Some(&st), &memory, &POLICY, later), Step::Apply(2));
        let (r, at) = after_apply(
            &mut memory,
            &s,
            3,
            Err(DirectError::Failed("down".into())),
            &POLICY,
            later,
        );
        let r = r.unwrap();
        assert_eq!((r.status, at), (DeploymentStatus::Failed, None));
        let st = state_of(&r);
        assert_eq!(next(&s, Some(&st), &memory, &POLICY, later), Step::Nothing);
        // Deleting the state asks for a retry from attempt 1.
        assert_eq!(next(&s, None, &memory, &POLICY, later), Step::Apply(1));
        // Deleting the state of an applied spec only reports it again.
        after_apply(&mut memory, &s, 1, Ok("applied".into()), &POLICY, later);
        let Step::Report(r) = next(&s, None, &memory, &POLICY, later) else {
            panic!("a report")
        };
        assert_eq!(
            (r.status, r.message.as_str()),
            (DeploymentStatus::Deployed, "applied")
        );

        let mut memory = Memory::default();
        let (r, at) = after_apply(
            &mut memory,
            &s,
            1,
            Err(DirectError::Refused("cluster-scoped".into())),
            &POLICY,
            now,
        );
        let r = r.unwrap();
        assert_eq!(
            (r.status, r.message.as_str(), at),
            (DeploymentStatus::Failed, "cluster-scoped", None)
        );
        assert_eq!(
            next(&s, Some(&state_of(&r)), &memory, &POLICY, now),
            Step::Nothing
        );
        // A stopped call reports nothing and looks again.
        let (r, at) = after_apply(
            &mut memory,
            &s,
            1,
            Err(DirectError::Cancelled),
            &POLICY,
            now,
        );
        assert_eq!((r, at), (None, Some(now)));
    }

    #[test]
    fn an_object_no_longer_asked_for_is_deleted() {
        let s = spec("a");
        let mut memory = Memory::default();
        assert!(to_delete(&memory, None).is_none());
        after_apply(
            &mut memory,
            &s,
            1,
            Ok("applied".into()),
            &POLICY,
            Instant::now(),
        );
        assert!(to_delete(&memory, Some(&s.object)).is_none());
        assert_eq!(to_delete(&memory, None).map(|a| &a.object), Some(&s.object));
        let mut other = s.object.clone();
        other.name = "other".into();
        assert!(to_delete(&memory, Some(&other)).is_some());
    }
}
