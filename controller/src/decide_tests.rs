use chrono::{DateTime, Utc};
use sdp_config::WatchEvent;
use serde_json::json;

use super::*;
use crate::fixtures::{batch_block, deploy_context, put, realtime_block, synced_view, t0};
use crate::fold::{Folded, recheck_at};
use crate::view::Part;

const FILE: &str = r#"{"repositories": [{"name": "local", "path": "sdp"}],
  "workflows": [{"type": "realtime", "id": "testdask", "repository": "local", "image": "workflow-testdask", "versions": ["0.1.0"]},
                {"type": "batch", "id": "teststate", "repository": "local", "image": "workflow-teststate", "versions": ["0.1.0"]}]}"#;

/// The time decisions are made at in these tests: the `since` of created states.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(SINCE_TEXT)
        .unwrap()
        .with_timezone(&Utc)
}

const SINCE_TEXT: &str = "2026-12-01T10:00:00Z";

fn ctx() -> DeployContext {
    deploy_context("127.0.0.1")
}

fn view() -> View {
    let mut v = synced_view(true);
    v.registry
        .set_file(sdp_config::entity::WorkflowsFile::parse(FILE).unwrap());
    v
}

fn set_state(v: &mut View, id: &str, value: serde_json::Value, rev: i64) {
    put(
        v,
        Part::States,
        &format!("/pb/{id}/state"),
        &value.to_string(),
        rev,
    );
}

fn parsed(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn a_new_block_gets_the_originals_deployment_and_a_starting_state() {
    let mut v = view();
    put(
        &mut v,
        Part::Blocks,
        "/pb/realtime-20191121-0000",
        &realtime_block("realtime-20191121-0000"),
        7,
    );
    let Action::Deploy {
        pb_rev,
        deployment: Some(d),
        adopted: None,
        state,
    } = decide(&v, "realtime-20191121-0000", &ctx(), now())
    else {
        panic!("expected a deployment")
    };
    assert_eq!(pb_rev, 7);
    assert_eq!(
        d.to_value(),
        json!({"deploy_id": "realtime-20191121-0000-workflow", "type": "helm", "args": {"chart": "workflow", "values": {
            "env.SDP_CONFIG_HOST": "127.0.0.1", "env.SDP_HELM_NAMESPACE": "sdp",
            "pb_id": "realtime-20191121-0000", "wf_image": "sdp/workflow-testdask:0.1.0"}}})
    );
    assert_eq!(
        state,
        StateWrite::Create(
            "{\n  \"resources_available\": false,\n  \"since\": \"2026-12-01T10:00:00Z\",\n  \"status\": \"STARTING\"\n}".into()
        )
    );
}

#[test]
fn a_started_block_or_one_whose_state_a_workflow_wrote_is_left_alone() {
    let mut v = view();
    put(&mut v, Part::Blocks, "/pb/a", &realtime_block("a"), 2);
    for st in [
        json!({"status": "STARTING"}),
        json!({"status": "FAILED", "reason": "workflow crashed"}),
        json!({"state": "executing"}),
    ] {
        set_state(&mut v, "a", st, 3);
        assert_eq!(decide(&v, "a", &ctx(), now()), Action::Nothing);
    }
    // Not a state at all: nobody could read-modify-write it, so it is not written over
    // and nothing is started (the view logs it, the metrics count it).
    for garbage in ["not json", "[1, 2]", "\"x\"", r#"{"status": 5}"#] {
        put(&mut v, Part::States, "/pb/a/state", garbage, 4);
        assert_eq!(decide(&v, "a", &ctx(), now()), Action::Nothing, "{garbage}");
    }
}

#[test]
fn an_existing_deployment_is_not_requested_again_but_a_missing_state_is_created() {
    let mut v = view();
    put(&mut v, Part::Blocks, "/pb/a", &realtime_block("a"), 2);
    let Action::Deploy {
        deployment: Some(d),
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!("expected a deployment")
    };
    // The same deployment, written by another tool with its own formatting.
    let text = serde_json::to_string(&d.to_value()).unwrap();
    put(&mut v, Part::Deployments, "/deploy/a-workflow", &text, 3);
    let Action::Deploy {
        deployment: None,
        adopted: Some((adopted, 3)),
        state: StateWrite::Create(_),
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!("expected only the state")
    };
    assert_eq!(adopted, "a-workflow");
}

#[test]
fn a_workflow_deployment_written_by_someone_else_is_not_adopted_and_fails_the_block() {
    let mut v = view();
    let id = "realtime-20191121-0000";
    let deploy_id = "realtime-20191121-0000-workflow";
    for (rev, hand_written) in [
        (
            3,
            r#"{"deploy_id": "realtime-20191121-0000-workflow", "type": "helm", "args": {"chart": "mine"}}"#,
        ),
        (4, "{}"),
        (5, "not json"),
    ] {
        put(
            &mut v,
            Part::Deployments,
            &format!("/deploy/{deploy_id}"),
            hand_written,
            rev,
        );
        put(
            &mut v,
            Part::Blocks,
            &format!("/pb/{id}"),
            &realtime_block(id),
            2,
        );
        let Action::SetState {
            state: StateWrite::Create(text),
            failure: Some(FailureKind::DeploymentConflict),
            reason,
            ..
        } = decide(&v, id, &ctx(), now())
        else {
            panic!("{hand_written}: expected FAILED")
        };
        assert!(
            reason.contains(&format!("deployment {deploy_id} exists")),
            "{reason}"
        );
        assert_eq!(parsed(&text)["failed_by"], "processing-controller");
        assert_eq!(parsed(&text)["status"], "FAILED");
    }
    // Deleting it lets the block start with its own.
    put(
        &mut v,
        Part::States,
        &format!("/pb/{id}/state"),
        &own_failed("x").to_json(),
        6,
    );
    v.apply(
        Part::Deployments,
        WatchEvent::Deleted {
            path: format!("/deploy/{deploy_id}"),
            revision: 7,
        },
        t0(),
    );
    let Action::Deploy {
        deployment: Some(d),
        adopted: None,
        ..
    } = decide(&v, id, &ctx(), now())
    else {
        panic!("expected the block's own deployment")
    };
    assert_eq!(d.id, deploy_id);
}

#[test]
fn an_invalid_block_is_failed_once_with_a_marked_state() {
    let mut v = view();
    put(&mut v, Part::Blocks, "/pb/a", r#"{"pb_id": "a"}"#, 2);
    let Action::SetState {
        state: StateWrite::Create(text),
        failure: Some(FailureKind::InvalidBlock),
        reason,
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!("expected FAILED")
    };
    assert!(reason.contains("missing field `workflow`"), "{reason}");
    assert_eq!(
        parsed(&text),
        json!({"status": "FAILED", "reason": reason, "failed_by": "processing-controller", "since": SINCE_TEXT})
    );
    put(&mut v, Part::States, "/pb/a/state", &text, 3);
    assert_eq!(decide(&v, "a", &ctx(), now()), Action::Nothing);
}

#[test]
fn an_unknown_workflow_fails_but_starts_once_it_is_registered() {
    let mut v = view();
    put(
        &mut v,
        Part::Blocks,
        "/pb/a",
        &realtime_block("a").replace("testdask", "nosuch"),
        2,
    );
    let Action::SetState {
        state,
        failure: Some(FailureKind::UnknownWorkflow),
        reason,
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!()
    };
    assert!(
        reason.contains("no realtime workflow \"nosuch\"")
            && reason.contains("registered realtime workflows: testdask"),
        "{reason}"
    );
    let mut failed = parsed(state.new_value());
    failed["extra"] = json!("kept");
    set_state(&mut v, "a", failed, 3);
    put(
        &mut v,
        Part::Workflows,
        "/workflow/realtime:nosuch:0.1.0",
        r#"{"image": "reg/nosuch:0.1.0"}"#,
        4,
    );
    let Action::Deploy {
        deployment: Some(d),
        state: StateWrite::Replace { rev: 3, new, .. },
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!()
    };
    assert_eq!(
        d.to_value()["args"]["values"]["wf_image"],
        "reg/nosuch:0.1.0"
    );
    assert_eq!(
        parsed(&new),
        json!({"status": "STARTING", "resources_available": false, "extra": "kept", "since": SINCE_TEXT})
    );
}

#[test]
fn nothing_is_decided_while_the_registry_file_is_loading() {
    let mut v = synced_view(true);
    put(&mut v, Part::Blocks, "/pb/a", &realtime_block("a"), 2);
    assert_eq!(decide(&v, "a", &ctx(), now()), Action::Nothing);
}

#[test]
fn an_own_failed_state_gets_the_new_reason_when_the_block_changes() {
    let mut v = view();
    put(&mut v, Part::Blocks, "/pb/a", "{", 2);
    let Action::SetState { state, .. } = decide(&v, "a", &ctx(), now()) else {
        panic!()
    };
    put(&mut v, Part::States, "/pb/a/state", state.new_value(), 3);
    put(&mut v, Part::Blocks, "/pb/a", "[]", 4);
    let Action::SetState {
        state: StateWrite::Replace { rev: 3, .. },
        failure: Some(FailureKind::InvalidBlock),
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!()
    };
}

#[test]
fn a_batch_block_waits_for_its_dependencies_then_starts() {
    let mut v = view();
    put(&mut v, Part::Blocks, "/pb/dep", &batch_block("dep", &[]), 2);
    put(
        &mut v,
        Part::Blocks,
        "/pb/b",
        &batch_block("b", &["dep", "later"]),
        3,
    );
    let Action::SetState {
        state: StateWrite::Create(text),
        failure: None,
        reason,
        ..
    } = decide(&v, "b", &ctx(), now())
    else {
        panic!()
    };
    assert_eq!(
        reason,
        "waiting for the processing blocks it depends on to finish: dep, later (does not exist yet)"
    );
    assert_eq!(
        parsed(&text),
        json!({"status": "WAITING", "resources_available": false, "reason": reason, "since": SINCE_TEXT})
    );
    put(&mut v, Part::States, "/pb/b/state", &text, 4);
    assert_eq!(decide(&v, "b", &ctx(), now()), Action::Nothing);

    put(
        &mut v,
        Part::Blocks,
        "/pb/later",
        &batch_block("later", &[]),
        5,
    );
    set_state(&mut v, "later", json!({"status": "FINISHED"}), 6);
    let Action::SetState {
        state: StateWrite::Replace { new, .. },
        ..
    } = decide(&v, "b", &ctx(), now())
    else {
        panic!()
    };
    assert!(new.contains("to finish: dep\""), "{new}");
    put(&mut v, Part::States, "/pb/b/state", &new, 7);

    set_state(&mut v, "dep", json!({"status": "FINISHED"}), 8);
    let Action::Deploy {
        deployment: Some(d),
        state: StateWrite::Replace { rev: 7, new, .. },
        ..
    } = decide(&v, "b", &ctx(), now())
    else {
        panic!()
    };
    assert_eq!(d.id, "b-workflow");
    assert_eq!(
        parsed(&new),
        json!({"status": "STARTING", "resources_available": false, "since": SINCE_TEXT})
    );
}

#[test]
fn a_block_fails_when_a_dependency_fails_or_is_cancelled() {
    for status in ["FAILED", "CANCELLED"] {
        let mut v = view();
        put(&mut v, Part::Blocks, "/pb/dep", &batch_block("dep", &[]), 2);
        put(
            &mut v,
            Part::Blocks,
            "/pb/b",
            &batch_block("b", &["dep"]),
            3,
        );
        set_state(
            &mut v,
            "b",
            json!({"status": "WAITING", "resources_available": false, "note": 1}),
            4,
        );
        set_state(
            &mut v,
            "dep",
            json!({"status": status, "reason": "out of disk"}),
            5,
        );
        let Action::SetState {
            state: StateWrite::Replace { new, .. },
            failure: Some(FailureKind::DependencyFailed),
            reason,
            ..
        } = decide(&v, "b", &ctx(), now())
        else {
            panic!()
        };
        assert!(
            reason.contains(&format!(
                "depends on processing block dep, which is {status} (its reason: out of disk)"
            )),
            "{reason}"
        );
        assert_eq!(parsed(&new)["note"], 1);
        assert_eq!(parsed(&new)["failed_by"], "processing-controller");
    }
}

#[test]
fn dependency_cycles_are_failed() {
    let mut v = view();
    put(
        &mut v,
        Part::Blocks,
        "/pb/self",
        &batch_block("self", &["self"]),
        2,
    );
    let Action::SetState {
        failure: Some(FailureKind::DependencyCycle),
        reason,
        ..
    } = decide(&v, "self", &ctx(), now())
    else {
        panic!()
    };
    assert!(reason.contains("dependency cycle: self → self"), "{reason}");
    assert!(reason.contains("depends on itself"), "{reason}");
    put(&mut v, Part::Blocks, "/pb/a", &batch_block("a", &["b"]), 3);
    put(&mut v, Part::Blocks, "/pb/b", &batch_block("b", &["c"]), 4);
    put(&mut v, Part::Blocks, "/pb/c", &batch_block("c", &["a"]), 5);
    let Action::SetState {
        failure: Some(FailureKind::DependencyCycle),
        reason,
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!()
    };
    assert!(
        reason.contains("dependency cycle: a → b → c → a"),
        "{reason}"
    );
}

/// Reconcile blocks `ids` in turn, as the controller does when a state it wrote wakes
/// the block's dependents, writing each decided state into the view; returns the
/// number of writes.
fn reconcile_round(v: &mut View, ids: &[&str], rev: &mut i64) -> usize {
    let mut writes = 0;
    for id in ids {
        if let Action::SetState { state, .. } = decide(v, id, &ctx(), now()) {
            *rev += 1;
            put(
                v,
                Part::States,
                &format!("/pb/{id}/state"),
                state.new_value(),
                *rev,
            );
            writes += 1;
        }
    }
    writes
}

#[test]
fn every_block_of_a_cycle_gets_one_stable_reason_naming_the_cycle() {
    let mut v = view();
    put(&mut v, Part::Blocks, "/pb/a", &batch_block("a", &["b"]), 2);
    put(&mut v, Part::Blocks, "/pb/b", &batch_block("b", &["a"]), 3);
    put(&mut v, Part::Blocks, "/pb/c", &batch_block("c", &["a"]), 4);
    let mut rev = 10;
    // Both orders: whichever block is decided first, the other must not nest its reason.
    for order in [["a", "b", "c"], ["b", "a", "c"]] {
        for round in 0..6 {
            let writes = reconcile_round(&mut v, &order, &mut rev);
            if round >= 1 {
                assert_eq!(writes, 0, "round {round} rewrote a state");
            }
        }
        for (id, cycle) in [("a", "a → b → a"), ("b", "b → a → b")] {
            let st = parsed(&v.states[id].raw);
            assert_eq!(st["status"], "FAILED");
            let reason = st["reason"].as_str().unwrap();
            assert!(
                reason.contains(&format!("dependency cycle: {cycle}"))
                    && !reason.contains("its reason"),
                "{id}: {reason}"
            );
        }
        // A block outside the cycle that depends on it says so once, and names the cycle.
        let c = parsed(&v.states["c"].raw);
        let reason = c["reason"].as_str().unwrap();
        assert!(
            reason.contains("depends on processing block a, which is FAILED"),
            "{reason}"
        );
        assert!(reason.contains("dependency cycle: a → b → a"), "{reason}");
        for id in ["a", "b", "c"] {
            v.apply(
                Part::States,
                WatchEvent::Deleted {
                    path: format!("/pb/{id}/state"),
                    revision: rev,
                },
                t0(),
            );
        }
    }
}

#[test]
fn a_deleted_blocks_deployments_go_and_nothing_else() {
    let mut v = view();
    for id in ["realtime-20191121-0000", "realtime-20191121-0000-x"] {
        put(
            &mut v,
            Part::Blocks,
            &format!("/pb/{id}"),
            &realtime_block(id),
            2,
        );
    }
    for d in [
        "realtime-20191121-0000-workflow",
        "realtime-20191121-0000-dask",
        "proc-realtime-20191121-0000-receive",
        "realtime-20191121-0000-x-workflow",
        "mine",
    ] {
        put(&mut v, Part::Deployments, &format!("/deploy/{d}"), "{}", 3);
    }
    // Alive, nothing is cleaned up (its hand-written `{}` workflow deployment fails it).
    assert!(matches!(
        decide(&v, "realtime-20191121-0000", &ctx(), now()),
        Action::SetState {
            failure: Some(FailureKind::DeploymentConflict),
            ..
        }
    ));
    v.apply(
        Part::Blocks,
        WatchEvent::Deleted {
            path: "/pb/realtime-20191121-0000".into(),
            revision: 4,
        },
        t0(),
    );
    let Action::Cleanup(removals) = decide(&v, "realtime-20191121-0000", &ctx(), now()) else {
        panic!()
    };
    let ids: Vec<&str> = removals.iter().map(|r| r.deploy_id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "realtime-20191121-0000-dask",
            "realtime-20191121-0000-workflow",
            "proc-realtime-20191121-0000-receive"
        ]
    );
    assert!(
        removals[0]
            .absent_blocks
            .contains(&"realtime-20191121-0000".to_string())
    );
    assert_eq!(decide(&v, "mine", &ctx(), now()), Action::Nothing);
}

#[test]
fn templates_that_do_not_render_fail_the_block_with_handlebars_message() {
    let mut v = view();
    put(
        &mut v,
        Part::Workflows,
        "/workflow/realtime:tmpl:1",
        r#"{"image": "i", "deploy": {"chart": "workflow", "values": {"mem": "{{parameters.mem}}"}}}"#,
        2,
    );
    put(
        &mut v,
        Part::Blocks,
        "/pb/a",
        &realtime_block("a")
            .replace("testdask", "tmpl")
            .replace("0.1.0", "1"),
        3,
    );
    let Action::SetState {
        failure: Some(FailureKind::TemplateError),
        reason,
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!()
    };
    assert!(
        reason.contains("deploy.values.mem") && reason.contains("parameters.mem"),
        "{reason}"
    );
}

#[test]
fn since_is_written_once_when_the_controller_creates_the_state_and_kept_after() {
    let mut v = view();
    put(
        &mut v,
        Part::Blocks,
        "/pb/a",
        &batch_block("a", &["dep"]),
        2,
    );
    let Action::SetState {
        state: StateWrite::Create(text),
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!("expected WAITING")
    };
    assert_eq!(parsed(&text)["since"], SINCE_TEXT);
    put(&mut v, Part::States, "/pb/a/state", &text, 3);
    put(&mut v, Part::Blocks, "/pb/dep", &batch_block("dep", &[]), 4);
    set_state(&mut v, "dep", json!({"status": "FINISHED"}), 5);
    let later = now() + chrono::Duration::hours(2);
    let Action::Deploy {
        state: StateWrite::Replace { new, .. },
        ..
    } = decide(&v, "a", &ctx(), later)
    else {
        panic!("expected the block to start")
    };
    assert_eq!(parsed(&new)["status"], "STARTING");
    assert_eq!(parsed(&new)["since"], SINCE_TEXT, "kept, not renewed");
}

// Folding what became of a block's deployments and workflow into its state.

const WF: &str = "realtime-20261201-0000-workflow";
const PB: &str = "realtime-20261201-0000";
const PULL: &str = "pod realtime-20261201-0000-workflow: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)";

/// A view with block `PB` (revision 2) whose state, written by its workflow, is `state`
/// (revision 10).
fn started(state: serde_json::Value) -> View {
    let mut v = view();
    put(
        &mut v,
        Part::Blocks,
        &format!("/pb/{PB}"),
        &realtime_block(PB),
        2,
    );
    put(&mut v, Part::Deployments, &format!("/deploy/{WF}"), "{}", 3);
    set_state(&mut v, PB, state, 10);
    v
}

/// Writes deployment `id`'s state as the deployer would: created at `created`, last
/// changed at `rev`.
fn deploy_state(v: &mut View, id: &str, state: serde_json::Value, created: i64, rev: i64) {
    v.apply(
        Part::DeployStates,
        WatchEvent::Put(sdp_config::Entry {
            path: format!("/deploy/{id}/state"),
            value: state.to_string(),
            mod_revision: rev,
            create_revision: created,
        }),
        t0(),
    );
}

fn workload_failed(message: &str) -> serde_json::Value {
    json!({"status": "DEPLOYED", "message": "installed: revision 1", "workload": {
        "phase": "FAILED", "message": message, "pods": [{"name": WF, "phase": "Pending",
        "ready": false, "restarts": 0, "reason": "ImagePullBackOff"}]}})
}

fn deployed(phase: &str) -> serde_json::Value {
    json!({"status": "DEPLOYED", "workload": {"phase": phase, "pods": []}})
}

/// The state a fold writes, with what it says it did; panics on anything else.
fn folded(v: &View, at: DateTime<Utc>) -> (serde_json::Value, Folded, i64) {
    match decide(v, PB, &ctx(), at) {
        Action::Fold {
            pb_rev: 2,
            state: StateWrite::Replace { rev, new, .. },
            folded,
        } => (parsed(&new), folded, rev),
        other => panic!("expected a fold, got {other:?}"),
    }
}

fn delete(v: &mut View, part: Part, path: &str, rev: i64, at: DateTime<Utc>) {
    crate::fixtures::delete_at(v, part, path, rev, at);
}

#[test]
fn a_failed_workflow_workload_fails_the_running_block_keeping_every_other_field() {
    let mut v = started(
        json!({"status": "RUNNING", "since": SINCE_TEXT, "resources_available": true, "dask": "up"}),
    );
    deploy_state(&mut v, WF, workload_failed(PULL), 5, 11);
    let (state, what, rev) = folded(&v, now());
    assert_eq!(rev, 10, "conditional on the state as read");
    let reason = format!("workflow {PULL}");
    assert_eq!(
        state,
        json!({"status": "FAILED", "reason": reason, "failed_deployment": WF,
               "since": SINCE_TEXT, "resources_available": true, "dask": "up"})
    );
    assert_eq!(what, Folded::Failed(FailureKind::DeploymentFailed, reason));
    // Once FAILED, nothing more to write.
    set_state(&mut v, PB, state, 12);
    assert_eq!(decide(&v, PB, &ctx(), now()), Action::Nothing);
}

#[test]
fn helm_giving_up_on_the_workflow_fails_a_starting_block_with_helms_message() {
    let mut v =
        started(json!({"status": "STARTING", "resources_available": false, "since": SINCE_TEXT}));
    deploy_state(
        &mut v,
        WF,
        json!({"status": "FAILED", "message": "Kubernetes cluster unreachable", "attempts": 5}),
        5,
        11,
    );
    let (state, _, _) = folded(&v, now());
    assert_eq!(state["status"], "FAILED");
    assert_eq!(
        state["reason"],
        format!("workflow deployment {WF}: Kubernetes cluster unreachable")
    );
    assert_eq!(state["failed_deployment"], WF);
    assert_eq!(state["since"], SINCE_TEXT);
}

#[test]
fn a_finished_block_is_never_touched() {
    let mut v = started(json!({"status": "FINISHED", "since": SINCE_TEXT}));
    deploy_state(&mut v, WF, workload_failed(PULL), 5, 11);
    deploy_state(
        &mut v,
        &format!("{PB}-dask"),
        json!({"status": "FAILED", "message": "no"}),
        6,
        12,
    );
    put(&mut v, Part::States, &format!("/pb/{PB}/owner"), "{}", 13);
    delete(&mut v, Part::States, &format!("/pb/{PB}/owner"), 14, t0());
    let much_later = now() + chrono::TimeDelta::days(1);
    assert_eq!(decide(&v, PB, &ctx(), much_later), Action::Nothing);
    assert_eq!(recheck_at(&v, PB, &ctx(), now()), None);
    set_state(&mut v, PB, json!({"status": "CANCELLED"}), 15);
    assert_eq!(decide(&v, PB, &ctx(), much_later), Action::Nothing);
}

#[test]
fn a_block_the_workflow_failed_keeps_its_own_reason() {
    let mut v = started(json!({"status": "FAILED", "reason": "bad data"}));
    deploy_state(&mut v, WF, workload_failed(PULL), 5, 11);
    assert_eq!(decide(&v, PB, &ctx(), now()), Action::Nothing);
    // And a deployment that is fine again does not start it: it was not ours to fail.
    deploy_state(&mut v, WF, deployed("RUNNING"), 5, 12);
    assert_eq!(decide(&v, PB, &ctx(), now()), Action::Nothing);
}

#[test]
fn other_failing_deployments_are_listed_without_changing_the_status() {
    let mut v = started(json!({"status": "RUNNING", "since": SINCE_TEXT}));
    // A block with a longer ID owns its own deployments.
    let longer = format!("{PB}-x");
    put(
        &mut v,
        Part::Blocks,
        &format!("/pb/{longer}"),
        &realtime_block(&longer),
        4,
    );
    deploy_state(
        &mut v,
        &format!("{longer}-dask"),
        workload_failed("pod y: no"),
        5,
        5,
    );
    let dask = format!("{PB}-dask");
    let receive = format!("proc-{PB}-receive");
    deploy_state(
        &mut v,
        &dask,
        workload_failed("pod d: crash loop (CrashLoopBackOff)"),
        6,
        11,
    );
    deploy_state(
        &mut v,
        &receive,
        json!({"status": "FAILED", "message": "chart not found"}),
        7,
        12,
    );
    deploy_state(&mut v, WF, deployed("RUNNING"), 8, 13);
    let (state, what, _) = folded(&v, now());
    assert_eq!(what, Folded::Deployments);
    assert_eq!(
        state,
        json!({"status": "RUNNING", "since": SINCE_TEXT, "deployments": {
            dask.clone(): "pod d: crash loop (CrashLoopBackOff)",
            receive.clone(): "chart not found"}})
    );
    set_state(&mut v, PB, state, 14);
    assert_eq!(decide(&v, PB, &ctx(), now()), Action::Nothing);
    // One stops failing: its entry goes.
    deploy_state(&mut v, &dask, deployed("RUNNING"), 6, 15);
    let (state, _, _) = folded(&v, now());
    assert_eq!(
        state["deployments"],
        json!({receive.clone(): "chart not found"})
    );
    set_state(&mut v, PB, state, 16);
    // The other's state is deleted (retried): the field goes.
    delete(
        &mut v,
        Part::DeployStates,
        &format!("/deploy/{receive}/state"),
        17,
        t0(),
    );
    let (state, _, _) = folded(&v, now());
    assert_eq!(state, json!({"status": "RUNNING", "since": SINCE_TEXT}));
}

#[test]
fn a_workflow_whose_owner_stays_gone_fails_after_the_grace_with_its_pods_exit() {
    let mut v = started(json!({"status": "RUNNING", "since": SINCE_TEXT}));
    // The workflow deployment is not failing (its pod restarts), but its last exit
    // is known.
    deploy_state(
        &mut v,
        WF,
        json!({"status": "DEPLOYED", "workload": {"phase": "PENDING",
            "pods": [{"name": "w", "phase": "Pending", "ready": false, "restarts": 1, "reason": "Error", "exit_code": 3}]}}),
        5,
        9,
    );
    put(&mut v, Part::States, &format!("/pb/{PB}/owner"), "{}", 11);
    assert_eq!(decide(&v, PB, &ctx(), now()), Action::Nothing);
    assert_eq!(recheck_at(&v, PB, &ctx(), now()), None);
    let gone = now() + chrono::TimeDelta::seconds(5);
    delete(&mut v, Part::States, &format!("/pb/{PB}/owner"), 12, gone);
    let end = gone + chrono::TimeDelta::seconds(120);
    // Within the grace: nothing yet, but come back when it ends.
    let before = end - chrono::TimeDelta::seconds(1);
    assert_eq!(decide(&v, PB, &ctx(), before), Action::Nothing);
    assert_eq!(recheck_at(&v, PB, &ctx(), before), Some(end));
    let (state, what, rev) = folded(&v, end);
    assert_eq!(rev, 10);
    let reason = "workflow exited without finishing (pod w: Error, exit code 3)";
    assert_eq!(
        state,
        json!({"status": "FAILED", "reason": reason, "failed_deployment": WF, "since": SINCE_TEXT})
    );
    assert_eq!(
        what,
        Folded::Failed(FailureKind::WorkflowExited, reason.into())
    );
    // FAILED: no more rechecks, and the unchanged deployment is no retry.
    set_state(&mut v, PB, state, 13);
    assert_eq!(recheck_at(&v, PB, &ctx(), end), None);
    assert_eq!(decide(&v, PB, &ctx(), end), Action::Nothing);
}

#[test]
fn an_owner_back_within_the_grace_changes_nothing() {
    let mut v = started(json!({"status": "RUNNING"}));
    let owner = format!("/pb/{PB}/owner");
    put(&mut v, Part::States, &owner, "{}", 11);
    delete(&mut v, Part::States, &owner, 12, now());
    put(&mut v, Part::States, &owner, "{}", 13);
    let later = now() + chrono::TimeDelta::seconds(600);
    assert_eq!(decide(&v, PB, &ctx(), later), Action::Nothing);
    assert_eq!(recheck_at(&v, PB, &ctx(), later), None);
}

#[test]
fn a_running_block_without_an_owner_at_start_up_fails_after_the_grace() {
    let mut v = View::new(true);
    v.registry
        .set_file(sdp_config::entity::WorkflowsFile::parse(FILE).unwrap());
    let listed = |entries| WatchEvent::Listed {
        revision: 20,
        entries,
    };
    let entry = sdp_testing::fixtures::entry;
    v.apply(
        Part::Blocks,
        listed(vec![
            entry(&format!("/pb/{PB}"), &realtime_block(PB), 2),
            entry("/pb/s", &realtime_block("s"), 2),
        ]),
        t0(),
    );
    v.apply(
        Part::States,
        listed(vec![
            entry(&format!("/pb/{PB}/state"), r#"{"status": "RUNNING"}"#, 10),
            entry("/pb/s/state", r#"{"status": "STARTING"}"#, 10),
        ]),
        t0(),
    );
    for part in [Part::Deployments, Part::Workflows, Part::DeployStates] {
        v.apply(part, listed(Vec::new()), t0());
    }
    let end = t0() + chrono::TimeDelta::seconds(120);
    assert_eq!(recheck_at(&v, PB, &ctx(), t0()), Some(end));
    // A STARTING block has no workflow to miss yet.
    assert_eq!(recheck_at(&v, "s", &ctx(), t0()), None);
    assert_eq!(decide(&v, "s", &ctx(), end), Action::Nothing);
    // No deployment state to retry: no failed_deployment.
    let (state, _, _) = folded(&v, end);
    assert_eq!(
        state,
        json!({"status": "FAILED", "reason": "workflow exited without finishing"})
    );
}

#[test]
fn a_block_failed_by_its_deployment_starts_again_when_the_deployment_is_retried() {
    let failed = json!({"status": "FAILED", "reason": format!("workflow {PULL}"),
        "failed_deployment": WF, "since": SINCE_TEXT, "resources_available": false, "note": "kept"});
    let again = json!({"status": "STARTING", "resources_available": false, "since": SINCE_TEXT, "note": "kept"});
    // Its state deleted (`sdpcfg retry`).
    let mut v = started(failed.clone());
    deploy_state(&mut v, WF, workload_failed(PULL), 5, 9);
    assert_eq!(decide(&v, PB, &ctx(), now()), Action::Nothing);
    delete(
        &mut v,
        Part::DeployStates,
        &format!("/deploy/{WF}/state"),
        11,
        t0(),
    );
    let (state, what, _) = folded(&v, now());
    assert_eq!(state, again);
    assert_eq!(what, Folded::Retried(WF.into()));
    // A new attempt reported in place (the entry changed, helm runs again).
    let mut v = started(failed.clone());
    deploy_state(
        &mut v,
        WF,
        json!({"status": "FAILED", "message": "x"}),
        5,
        9,
    );
    deploy_state(&mut v, WF, json!({"status": "UPGRADING"}), 5, 11);
    assert_eq!(folded(&v, now()).0, again);
    // The new attempt fails at once: FAILED with the new reason, in one write.
    let mut v = started(failed);
    deploy_state(&mut v, WF, workload_failed("pod z: gone"), 11, 11);
    let (state, what, _) = folded(&v, now());
    assert_eq!(state["status"], "FAILED");
    assert_eq!(state["reason"], "workflow pod z: gone");
    assert!(matches!(
        what,
        Folded::Failed(FailureKind::DeploymentFailed, _)
    ));
}

#[test]
fn a_block_whose_workflow_exited_starts_again_only_on_a_fresh_attempt() {
    let failed = json!({"status": "FAILED", "reason": "workflow exited without finishing",
        "failed_deployment": WF});
    let mut v = started(failed);
    let owner = format!("/pb/{PB}/owner");
    put(&mut v, Part::States, &owner, "{}", 4);
    delete(&mut v, Part::States, &owner, 5, t0());
    // The deployment never failed: that it is fine says nothing.
    deploy_state(&mut v, WF, deployed("FINISHED"), 3, 9);
    let later = now() + chrono::TimeDelta::days(1);
    assert_eq!(decide(&v, PB, &ctx(), later), Action::Nothing);
    // Deleted and written afresh by the deployer, after the block failed.
    deploy_state(
        &mut v,
        WF,
        json!({"status": "INSTALLING", "attempts": 1}),
        12,
        12,
    );
    let (state, what, _) = folded(&v, later);
    assert_eq!(
        state,
        json!({"status": "STARTING", "resources_available": false})
    );
    assert_eq!(what, Folded::Retried(WF.into()));
    // Once STARTING is recorded, the old owner's absence no longer counts.
    v.record_state(PB, &state.to_string(), 13);
    assert_eq!(recheck_at(&v, PB, &ctx(), later), None);
    assert_eq!(decide(&v, PB, &ctx(), later), Action::Nothing);
}
