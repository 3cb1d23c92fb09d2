use std::time::{Duration, Instant};

use chrono::Utc;
use sdp_config::entity::{DeploymentState, DeploymentStatus};
use serde_json::json;

use super::*;
use crate::helm::HelmError;
use crate::spec::Desired;
use crate::view::Item;

use crate::fixtures::{POLICY, helm_spec as spec, owned_release, state};

/// Revision 3 of an owned release, updated now, revision 2 its last good one.
fn owned(status: ReleaseStatus, digest: Option<&str>, detailed: bool) -> Observation {
    Observation::Owned(OwnedRelease {
        revision: 3,
        updated: Some(Utc::now()),
        digest: digest.map(String::from),
        last_good: Some(2),
        detailed,
        ..owned_release(status)
    })
}

fn mem(observed: Observation) -> Memory {
    Memory {
        observed,
        ..Default::default()
    }
}

/// The lease of the current term in these tests.
const LEASE: i64 = 0x7a;

fn plan(desired: Option<&Desired>, st: Option<&DeploymentState>, memory: &Memory) -> Plan {
    plan_in_term(desired, st, memory, Duration::from_secs(3600))
}

fn plan_in_term(
    desired: Option<&Desired>,
    st: Option<&DeploymentState>,
    memory: &Memory,
    term_age: Duration,
) -> Plan {
    decide(&Situation {
        desired,
        state: st,
        orphan_states: false,
        memory,
        policy: &POLICY,
        now: Instant::now(),
        wall: Utc::now(),
        term: TermInfo {
            lease: LEASE,
            age: term_age,
        },
    })
}

#[test]
fn an_unchanged_deployed_spec_needs_no_helm_call_even_after_a_restart() {
    let d = spec("a", false);
    let st = state(DeploymentStatus::Deployed, "a", 1);
    for observed in [
        Observation::Unknown,
        owned(ReleaseStatus::Deployed, None, false),
    ] {
        assert_eq!(plan(Some(&d), Some(&st), &mem(observed)), Plan::Nothing);
    }
}

#[test]
fn a_new_entry_is_probed_then_installed() {
    let d = spec("a", false);
    assert_eq!(
        plan(Some(&d), None, &mem(Observation::Unknown)),
        Plan::Probe
    );
    assert_eq!(
        plan(Some(&d), None, &mem(Observation::Absent)),
        Plan::Apply(ApplyKind::Install, 1)
    );
}

#[test]
fn a_changed_spec_upgrades_or_replaces_a_known_release_without_probing() {
    let st = state(DeploymentStatus::Deployed, "old", 1);
    let m = mem(owned(ReleaseStatus::Deployed, Some("old"), true));
    assert_eq!(
        plan(Some(&spec("new", false)), Some(&st), &m),
        Plan::Apply(ApplyKind::Upgrade, 1)
    );
    assert_eq!(
        plan(Some(&spec("new", true)), Some(&st), &m),
        Plan::Apply(ApplyKind::Replace, 1)
    );
    // Known only from a listing: look at its history first.
    let listed = mem(owned(ReleaseStatus::Deployed, None, false));
    assert_eq!(
        plan(Some(&spec("new", false)), Some(&st), &listed),
        Plan::Probe
    );
}

#[test]
fn an_operation_interrupted_by_a_crash_is_adopted_when_helm_finished_it() {
    let d = spec("a", false);
    let st = state(DeploymentStatus::Installing, "a", 1);
    assert_eq!(
        plan(Some(&d), Some(&st), &mem(Observation::Unknown)),
        Plan::Probe
    );
    let m = mem(owned(ReleaseStatus::Deployed, Some("a"), true));
    assert_eq!(plan(Some(&d), Some(&st), &m), Plan::Adopt(3));
    // Finished with another spec: upgrade, counting the interrupted attempt.
    let m = mem(owned(ReleaseStatus::Deployed, Some("other"), true));
    assert_eq!(
        plan(Some(&d), Some(&st), &m),
        Plan::Apply(ApplyKind::Upgrade, 2)
    );
}

#[test]
fn failures_count_up_to_the_limit_then_stay_failed_until_the_spec_changes() {
    let d = spec("a", false);
    let mut m = mem(Observation::Absent);
    m.digest = Some("a".into());
    m.attempts = 2;
    assert_eq!(plan(Some(&d), None, &m), Plan::Apply(ApplyKind::Install, 3));
    m.attempts = 3;
    let Plan::Report(r) = plan(Some(&d), None, &m) else {
        panic!()
    };
    assert_eq!((r.status, r.attempts), (DeploymentStatus::Failed, Some(3)));
    // Once FAILED is written (also after a restart: attempts come from the state)…
    let failed = state(DeploymentStatus::Failed, "a", 3);
    assert_eq!(
        plan(Some(&d), Some(&failed), &mem(Observation::Unknown)),
        Plan::Nothing
    );
    // …until the spec changes: the count starts again.
    assert_eq!(
        plan(
            Some(&spec("b", false)),
            Some(&failed),
            &mem(Observation::Absent)
        ),
        Plan::Apply(ApplyKind::Install, 1)
    );
}

#[test]
fn a_retry_waits_for_its_backoff_but_a_changed_spec_does_not() {
    let mut m = mem(Observation::Absent);
    m.digest = Some("a".into());
    m.attempts = 1;
    let at = Instant::now() + Duration::from_secs(30);
    m.retry_at = Some(at);
    assert_eq!(
        plan(Some(&spec("a", false)), None, &m),
        Plan::Wait(at, None)
    );
    assert_eq!(
        plan(Some(&spec("b", false)), None, &m),
        Plan::Apply(ApplyKind::Install, 1)
    );
}

#[test]
fn a_pending_release_left_by_us_is_recovered_at_once() {
    let d = spec("a", false);
    let st = state(DeploymentStatus::Pending, "a", 1);
    let mut m = mem(owned(ReleaseStatus::PendingInstall, None, true));
    m.left_pending = true;
    assert_eq!(
        plan(Some(&d), Some(&st), &m),
        Plan::Recover(Recovery::Reinstall, 2)
    );
    m.observed = owned(ReleaseStatus::PendingUpgrade, None, true);
    assert_eq!(
        plan(Some(&d), Some(&st), &m),
        Plan::Recover(Recovery::Rollback(2), 2)
    );
    m.observed = Observation::Owned(OwnedRelease {
        last_good: None,
        ..match owned(ReleaseStatus::PendingRollback, None, true) {
            Observation::Owned(o) => o,
            _ => unreachable!(),
        }
    });
    assert_eq!(
        plan(Some(&d), Some(&st), &m),
        Plan::Recover(Recovery::Reinstall, 2)
    );
}

#[test]
fn a_pending_release_of_another_helm_is_waited_for_until_it_is_stale() {
    let d = spec("a", false);
    let m = mem(owned(ReleaseStatus::PendingUpgrade, None, true));
    let Plan::Wait(_, Some(note)) = plan(Some(&d), None, &m) else {
        panic!()
    };
    assert_eq!(note.status, DeploymentStatus::Pending);
    assert!(note.message.contains("pending-upgrade"), "{}", note.message);
    let old = Observation::Owned(OwnedRelease {
        updated: Some(Utc::now() - chrono::Duration::seconds(120)),
        ..match owned(ReleaseStatus::PendingUpgrade, None, true) {
            Observation::Owned(o) => o,
            _ => unreachable!(),
        }
    });
    assert_eq!(
        plan(Some(&d), None, &mem(old)),
        Plan::Recover(Recovery::Rollback(2), 1)
    );
    // Pending, but only known from a listing: get its history first.
    assert_eq!(
        plan(
            Some(&d),
            None,
            &mem(owned(ReleaseStatus::PendingInstall, None, false))
        ),
        Plan::Probe
    );
}

#[test]
fn a_pending_release_left_by_an_ended_term_is_recovered_once_no_helm_of_it_can_run() {
    // Regression (issue 11, item 5): after a restart such a release waited 335 s.
    let d = spec("a", false);
    let mut st = state(DeploymentStatus::Installing, "a", 1);
    st.extra.insert(HELM_LEASE.into(), "1f".into());
    assert_eq!(recorded_lease(Some(&st)), Some(0x1f));
    let mut m = mem(owned(ReleaseStatus::PendingInstall, None, true));
    let young = Duration::from_secs(2);
    // First: is that term's lease still there?
    assert_eq!(
        plan_in_term(Some(&d), Some(&st), &m, young),
        Plan::CheckLease(0x1f)
    );
    // Alive: someone may still run helm; wait as for any other helm.
    m.lease_check = Some(LeaseCheck {
        lease: 0x1f,
        gone: false,
    });
    let Plan::Wait(_, Some(note)) = plan_in_term(Some(&d), Some(&st), &m, young) else {
        panic!()
    };
    assert!(note.message.contains("another helm"), "{}", note.message);
    after_wait(&mut m);
    assert_eq!(m.lease_check, None, "asked again next time");
    // Gone: wait only until this term is old enough, then recover.
    m.observed = owned(ReleaseStatus::PendingInstall, None, true);
    m.lease_check = Some(LeaseCheck {
        lease: 0x1f,
        gone: true,
    });
    let now = Instant::now();
    let Plan::Wait(until, Some(note)) = plan_in_term(Some(&d), Some(&st), &m, young) else {
        panic!()
    };
    assert!(until <= now + POLICY.busy_poll + Duration::from_secs(1));
    assert!(note.message.contains("has ended"), "{}", note.message);
    assert_eq!(
        plan_in_term(Some(&d), Some(&st), &m, POLICY.dead_term_wait),
        Plan::Recover(Recovery::Reinstall, 2)
    );
    // Recorded by this very term: nothing of ours runs on it now.
    st.extra
        .insert(HELM_LEASE.into(), format!("{LEASE:x}").into());
    m.lease_check = None;
    assert_eq!(
        plan_in_term(Some(&d), Some(&st), &m, young),
        Plan::Recover(Recovery::Reinstall, 2)
    );
}

#[test]
fn the_state_records_the_lease_of_a_helm_call_and_keeps_it_otherwise() {
    let Desired::Helm(h) = spec("a", false) else {
        unreachable!()
    };
    let mut report = apply_report(&h, None, ApplyKind::Install, 1, &POLICY);
    report.helm_lease = Some(-2);
    let st = render_state(None, &report, "sdp", Utc::now());
    assert_eq!(st.extra[HELM_LEASE], "fffffffffffffffe");
    assert_eq!(recorded_lease(Some(&st)), Some(-2));
    let deployed = deployed_report(&h, Some(&st), Some(ApplyKind::Install), 1, 1);
    let after = render_state(Some(&st), &deployed, "sdp", Utc::now());
    assert_eq!(recorded_lease(Some(&after)), Some(-2));
}

#[test]
fn a_foreign_release_is_never_touched() {
    let d = spec("a", false);
    let Plan::Report(r) = plan(Some(&d), None, &mem(Observation::Foreign)) else {
        panic!()
    };
    assert_eq!(r.status, DeploymentStatus::Failed);
    assert!(
        r.message.contains("not installed by sdp-deployer"),
        "{}",
        r.message
    );
    // Reported once.
    let mut st = render_state(None, &r, "sdp", Utc::now());
    st.updated = None;
    assert_eq!(
        plan(Some(&d), Some(&st), &mem(Observation::Foreign)),
        Plan::Nothing
    );
    // Gone entries never uninstall what is not ours.
    assert_eq!(plan(None, None, &mem(Observation::Foreign)), Plan::Nothing);
}

#[test]
fn a_vanished_release_is_reinstalled_after_a_listing_shows_it_missing() {
    let d = spec("a", false);
    let st = state(DeploymentStatus::Deployed, "a", 1);
    assert_eq!(
        plan(Some(&d), Some(&st), &mem(Observation::NotListed)),
        Plan::Probe
    );
    assert_eq!(
        plan(Some(&d), Some(&st), &mem(Observation::Absent)),
        Plan::Apply(ApplyKind::Install, 1)
    );
}

#[test]
fn a_deleted_entry_uninstalls_its_release_then_forgets_its_state() {
    assert_eq!(
        plan(
            None,
            None,
            &mem(owned(ReleaseStatus::Deployed, None, false))
        ),
        Plan::Uninstall
    );
    assert_eq!(plan(None, None, &mem(Observation::Unknown)), Plan::Probe);
    let s = Situation {
        desired: None,
        state: None,
        orphan_states: true,
        memory: &mem(Observation::Absent),
        policy: &POLICY,
        now: Instant::now(),
        wall: Utc::now(),
        term: TermInfo {
            lease: LEASE,
            age: Duration::ZERO,
        },
    };
    assert_eq!(decide(&s), Plan::Forget);
    assert_eq!(plan(None, None, &mem(Observation::Absent)), Plan::Nothing);
}

#[test]
fn refused_and_unhandled_entries_are_reported_once_and_leave_the_release_alone() {
    let refused = Desired::Refused("chart \"../../etc\" is not allowed".into());
    let prev = state(DeploymentStatus::Deployed, "a", 1);
    let Plan::Report(r) = plan(
        Some(&refused),
        Some(&prev),
        &mem(owned(ReleaseStatus::Deployed, None, false)),
    ) else {
        panic!()
    };
    assert_eq!(
        (r.status, r.release.as_deref(), r.revision),
        (DeploymentStatus::Failed, Some("d"), Some(1))
    );
    let mut st = render_state(Some(&prev), &r, "sdp", Utc::now());
    st.updated = None;
    assert_eq!(
        plan(Some(&refused), Some(&st), &mem(Observation::Unknown)),
        Plan::Nothing
    );

    let other = Desired::NotHandled("process-direct");
    let Plan::Report(r) = plan(Some(&other), None, &mem(Observation::Unknown)) else {
        panic!()
    };
    assert_eq!(r.status, DeploymentStatus::Failed);
    assert!(
        r.message
            .contains("process-direct are not run by sdp-deployer"),
        "{}",
        r.message
    );
}

#[test]
fn rendered_states_keep_unknown_fields_and_use_rfc3339() {
    let mut prev = state(DeploymentStatus::Deployed, "a", 1);
    prev.extra.insert("pods_ready".into(), json!(2));
    let r = Report {
        helm_lease: None,
        status: DeploymentStatus::Upgrading,
        release: Some("d".into()),
        revision: Some(1),
        digest: Some("b".into()),
        attempts: Some(1),
        message: "upgrading".into(),
    };
    let st = render_state(Some(&prev), &r, "sdp", Utc::now());
    assert_eq!(st.extra["pods_ready"], 2);
    assert!(chrono::DateTime::parse_from_rfc3339(st.updated.as_deref().unwrap()).is_ok());
    assert!(already_reported(Some(&st), &r));
}

#[test]
fn retries_wait_the_projects_backoff_from_the_initial_delay_to_the_cap() {
    let (i, m) = (POLICY.backoff, POLICY.backoff_max);
    for attempt in 1..=12 {
        let d = POLICY.retry_delay(attempt);
        let full = (i * 2u32.pow(attempt - 1)).min(m);
        assert!(
            d >= full / 2 && d <= full,
            "attempt {attempt}: {d:?} vs {full:?}"
        );
    }
    assert!(POLICY.retry_delay(100) <= m);
}

fn item(value: &str) -> Item {
    Item {
        value: value.into(),
        mod_revision: 1,
    }
}

#[test]
fn the_entry_whose_id_is_the_release_name_owns_it_and_the_others_are_told_once() {
    let entries = vec![
        ("Foo".to_string(), item("a")),
        ("foo".to_string(), item("b")),
    ];
    let (owner, others) = release_owner(&entries, "foo", "", |_| None);
    assert_eq!(owner.map(|(id, _)| id.as_str()), Some("foo"));
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].0.0, "Foo");
    assert_eq!(others[0].1.status, DeploymentStatus::Failed);
    assert!(
        others[0]
            .1
            .message
            .contains("already used by deployment \"foo\"")
    );
    // Already reported: nothing more to write.
    let told = others[0].1.clone();
    let (_, others) = release_owner(&entries, "foo", "", |id| {
        (id == "Foo").then(|| DeploymentState {
            status: Some("FAILED".into()),
            message: Some(told.message.clone()),
            ..Default::default()
        })
    });
    assert!(others.is_empty());
}

#[test]
fn an_entry_holding_a_release_keeps_it_against_one_whose_id_is_the_release_name() {
    // Regression (issue 11, item 3): `Foo` maps to `foo-1cbec737`; an entry named
    // `foo-1cbec737` came later and took the release over.
    let entries = vec![
        ("Foo".to_string(), item("a")),
        ("foo-1cbec737".to_string(), item("b")),
    ];
    let holds = |id: &str| {
        (id == "Foo").then(|| DeploymentState {
            status: Some("DEPLOYED".into()),
            release: Some("foo-1cbec737".into()),
            ..Default::default()
        })
    };
    let (owner, others) = release_owner(&entries, "foo-1cbec737", "", holds);
    assert_eq!(owner.map(|(id, _)| id.as_str()), Some("Foo"));
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].0.0, "foo-1cbec737");
    assert!(
        others[0]
            .1
            .message
            .contains("already used by deployment \"Foo\""),
        "{}",
        others[0].1.message
    );
    // Once the holder's entry is gone, the other one may have the name.
    let rest = &entries[1..];
    let (owner, others) = release_owner(rest, "foo-1cbec737", "", |_| None);
    assert_eq!(owner.map(|(id, _)| id.as_str()), Some("foo-1cbec737"));
    assert!(others.is_empty());
}

#[test]
fn a_release_made_for_another_entry_is_started_afresh_not_upgraded() {
    let d = spec("new", false);
    // The state of a conflict report: no release named.
    let st = DeploymentState {
        status: Some("FAILED".into()),
        ..Default::default()
    };
    let m = mem(owned(ReleaseStatus::Deployed, Some("other"), true));
    assert_eq!(
        plan(Some(&d), Some(&st), &m),
        Plan::Apply(ApplyKind::Restart, 1)
    );
}

#[test]
fn a_plan_for_helm_waits_with_a_pending_report_only_while_workers_are_busy() {
    let Desired::Helm(s) = spec("d1", false) else {
        unreachable!()
    };
    let memory = Memory::default();
    assert_eq!(queue_for_helm(Some((&s, None)), &memory, false), None);
    let report = queue_for_helm(Some((&s, None)), &memory, true);
    assert_eq!(
        report.as_ref().map(|r| (r.status, r.message.as_str())),
        Some((DeploymentStatus::Pending, "waiting for a helm worker"))
    );
    // The state already reports on this spec: nothing new to say.
    let st = state(DeploymentStatus::Installing, "d1", 0);
    assert_eq!(queue_for_helm(Some((&s, Some(&st))), &memory, true), None);
}

#[test]
fn a_failed_helm_call_retries_with_backoff_then_gives_up_in_helms_words() {
    let Desired::Helm(s) = spec("d1", false) else {
        unreachable!()
    };
    let now = Instant::now();
    let err = HelmError::Failed {
        operation: "install",
        message: "Error: boom".into(),
    };
    let mut memory = Memory::default();
    match after_helm_failure(&mut memory, Some((&s, None)), 1, &err, &POLICY, now) {
        AfterFailure::Retry(at, Some(report)) => {
            assert!(at > now && at <= now + POLICY.backoff);
            assert_eq!(report.status, DeploymentStatus::Pending);
            assert!(
                report
                    .message
                    .starts_with("attempt 1 of 3 failed, retrying in")
            );
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(memory.attempts, 1);
    assert!(memory.left_pending);
    match after_helm_failure(&mut memory, Some((&s, None)), 3, &err, &POLICY, now) {
        AfterFailure::GiveUp(report) => {
            assert_eq!(report.status, DeploymentStatus::Failed);
            assert_eq!(report.attempts, Some(3));
            assert!(report.message.contains("boom"), "{}", report.message);
        }
        other => panic!("expected giving up, got {other:?}"),
    }
    assert_eq!(memory.retry_at, None);
    let cancelled = HelmError::Cancelled {
        operation: "install",
    };
    assert_eq!(
        after_helm_failure(&mut memory, Some((&s, None)), 1, &cancelled, &POLICY, now),
        AfterFailure::Stopped
    );
}

#[test]
fn a_deleted_state_restarts_the_release_afresh_from_attempt_one() {
    let d = spec("a", false);
    // Given up after six attempts, or deployed with a workload that failed: the state is
    // deleted to retry.
    let mut m = mem(owned(ReleaseStatus::Failed, Some("a"), true));
    m.digest = Some("a".into());
    m.attempts = POLICY.max_attempts;
    m.retry_at = Some(Instant::now() + Duration::from_secs(60));
    without_state(&mut m);
    assert_eq!(plan(Some(&d), None, &m), Plan::Apply(ApplyKind::Restart, 1));
    let m = mem(owned(ReleaseStatus::Deployed, Some("a"), true));
    assert_eq!(plan(Some(&d), None, &m), Plan::Apply(ApplyKind::Restart, 1));
    // The release went meanwhile: a plain install.
    let m = mem(owned(ReleaseStatus::Uninstalled, Some("a"), true));
    assert_eq!(plan(Some(&d), None, &m), Plan::Apply(ApplyKind::Install, 1));
    // With a state the same release is left alone.
    let st = state(DeploymentStatus::Deployed, "a", 1);
    let m = mem(owned(ReleaseStatus::Deployed, Some("a"), true));
    assert_eq!(plan(Some(&d), Some(&st), &m), Plan::Nothing);
    let Desired::Helm(h) = &d else {
        panic!("a helm spec")
    };
    let report = apply_report(h, None, ApplyKind::Restart, 1, &POLICY);
    assert!(report.message.contains("afresh"), "{}", report.message);
}
