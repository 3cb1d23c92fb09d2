use chrono::{DateTime, Utc};
use sdp_config::WatchEvent;
use serde_json::json;

use super::*;
use crate::fixtures::{batch_block, deploy_context, put, realtime_block, synced_view, t0};
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
    put(&mut v, Part::States, "/pb/a/state", "not json", 4);
    assert_eq!(decide(&v, "a", &ctx(), now()), Action::Nothing);
}

#[test]
fn an_existing_deployment_is_not_requested_again_but_a_missing_state_is_created() {
    let mut v = view();
    put(&mut v, Part::Blocks, "/pb/a", &realtime_block("a"), 2);
    put(&mut v, Part::Deployments, "/deploy/a-workflow", "{}", 3);
    let Action::Deploy {
        deployment: None,
        state: StateWrite::Create(_),
        ..
    } = decide(&v, "a", &ctx(), now())
    else {
        panic!("expected only the state")
    };
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
    assert!(reason.contains("(a → b → c → a)"), "{reason}");
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
    assert!(matches!(
        decide(&v, "realtime-20191121-0000", &ctx(), now()),
        Action::Deploy { .. }
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
