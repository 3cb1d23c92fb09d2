//! The controller against a real etcd: deployments, bad input, dependencies, cleanup,
//! the registry. The controller runs in-process through `sdp_controller::run`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use sdp_config::json::to_python_string;
use sdp_testing::fixtures::{batch_block, is_starting};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_written_like_python_sdpcfg_gets_the_original_deployment_byte_for_byte()
-> TestResult {
    let env = Env::start().await;
    // The system of the seed: etcd on the default port as far as workflows know. (This
    // test's etcd listens on a free port, which the controller would otherwise hand on.)
    let mut settings = env.settings();
    settings.workflow_config_port = Some(2379);
    let _c = InProcess::start(settings);
    let id = "realtime-20191121-0000";
    env.put(
        &format!("/pb/{id}"),
        &sdpcfg_block(id, "realtime", "testdask"),
    )
    .await;

    let deployment = env.wait_value(&format!("/deploy/{id}-workflow")).await;
    let expected = to_python_string(&json!({
        "deploy_id": "realtime-20191121-0000-workflow",
        "type": "helm",
        "args": {"chart": "workflow", "values": {
            "env.SDP_CONFIG_HOST": "127.0.0.1",
            "env.SDP_HELM_NAMESPACE": "sdp",
            "pb_id": "realtime-20191121-0000",
            "wf_image": "nexus.engageska-portugal.pt/sdp-prototype/workflow-testdask:0.1.0"}}
    }));
    assert_eq!(deployment, expected);
    // The wire-format example, as CPython wrote it.
    assert_eq!(
        deployment,
        include_str!("../../config/tests/fixtures/seed_workflow_deployment.json")
    );
    let state = env.wait_value(&format!("/pb/{id}/state")).await;
    assert!(is_starting(&state), "{state}");
    Ok(())
}

/// (key ID, value, substring of the reason).
fn corpus() -> Vec<(String, String, String)> {
    let long = "x".repeat(65);
    let huge = format!(
        r#"{{"pb_id": "bad-huge", "sbi_id": null, "workflow": {{"type": "realtime", "id": "testdask", "version": "0.1.0"}}, "parameters": {{"data": "{}"}}}}"#,
        "a".repeat(1_100_000)
    );
    let wf = r#"{"type": "realtime", "id": "testdask", "version": "0.1.0"}"#;
    let block = |id: &str, rest: &str| format!(r#"{{"pb_id": "{id}", "sbi_id": null, {rest}}}"#);
    vec![
        ("bad-json".into(), "{\"pb_id\": \"bad-json\",".into(), "is not valid JSON".into()),
        ("bad-empty".into(), String::new(), "is not valid JSON".into()),
        ("bad-list".into(), "[1, 2]".into(), "must be a JSON object, found a list".into()),
        ("bad-string".into(), "\"realtime:testdask:0.1.0\"".into(), "must be a JSON object, found a string".into()),
        ("bad-null".into(), "null".into(), "must be a JSON object, found null".into()),
        ("bad-noid".into(), format!(r#"{{"workflow": {wf}}}"#), "missing field `pb_id`".into()),
        ("bad-idtype".into(), format!(r#"{{"pb_id": 42, "workflow": {wf}}}"#), "field `pb_id` must be a string, found a number".into()),
        ("bad-nowf".into(), block("bad-nowf", r#""parameters": {}"#), "missing field `workflow`".into()),
        ("bad-wftype".into(), block("bad-wftype", r#""workflow": "realtime:testdask:0.1.0""#), "field `workflow` must be an object, found a string".into()),
        ("bad-noversion".into(), block("bad-noversion", r#""workflow": {"type": "realtime", "id": "testdask"}"#), "missing field `workflow.version`".into()),
        ("bad-kind".into(), block("bad-kind", r#""workflow": {"type": "stream", "id": "testdask", "version": "0.1.0"}"#), "field `workflow.type` must be one of realtime, batch, found \"stream\"".into()),
        ("bad-wfextra".into(), block("bad-wfextra", r#""workflow": {"type": "realtime", "id": "testdask", "version": "0.1.0", "image": "x"}"#), "must have exactly type, id and version".into()),
        ("bad-unknownwf".into(), block("bad-unknownwf", r#""workflow": {"type": "realtime", "id": "nosuch", "version": "0.1.0"}"#), "no realtime workflow \"nosuch\" is registered".into()),
        ("bad-unknownversion".into(), block("bad-unknownversion", r#""workflow": {"type": "realtime", "id": "testdask", "version": "9.9.9"}"#), "unknown version \"9.9.9\" of realtime workflow \"testdask\"; registered versions: 0.1.0".into()),
        ("bad-wrongkind".into(), block("bad-wrongkind", r#""workflow": {"type": "batch", "id": "testdask", "version": "0.1.0"}"#), "registered batch workflows: teststate".into()),
        ("bad-params".into(), block("bad-params", &format!(r#""workflow": {wf}, "parameters": [1]"#)), "field `parameters` must be an object, found a list".into()),
        ("bad-sbi".into(), format!(r#"{{"pb_id": "bad-sbi", "sbi_id": 7, "workflow": {wf}}}"#), "field `sbi_id` must be a string or null, found a number".into()),
        ("bad-deps".into(), format!(r#"{{"id": "bad-deps", "workflow": {wf}, "dependencies": {{"pb_id": "x"}}}}"#), "field `dependencies` must be a list".into()),
        ("bad-mismatch".into(), block("other-block", &format!(r#""workflow": {wf}"#)), "its `pb_id` must be \"bad-mismatch\", or store it at /pb/other-block".into()),
        ("bad-nonascii".into(), block("bad-nonäscii", &format!(r#""workflow": {wf}"#)), "invalid processing block ID \"bad-nonäscii\"".into()),
        ("bad_underscore".into(), block("bad_underscore", &format!(r#""workflow": {wf}"#)), "invalid processing block ID \"bad_underscore\": must match ^[A-Za-z0-9\\-]{1,64}$".into()),
        (long.clone(), block(&long, &format!(r#""workflow": {wf}"#)), "at most 64 characters".into()),
        ("bad-huge".into(), huge, "more than the 1048576 bytes".into()),
        ("bad-template".into(), block("bad-template", r#""workflow": {"type": "realtime", "id": "tmpl", "version": "1.0"}, "parameters": {"cpu": 2}"#), "deploy.values.resources.limits.memory".into()),
        ("bad-selfdep".into(), format!(r#"{{"id": "bad-selfdep", "workflow": {wf}, "dependencies": [{{"pb_id": "bad-selfdep"}}]}}"#), "depends on itself".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blocks_get_a_failed_state_with_a_specific_reason_and_valid_ones_still_deploy()
-> TestResult {
    let env = Env::start().await;
    env.put(
        "/workflow/realtime:tmpl:1.0",
        r#"{"image": "reg/tmpl:1.0", "deploy": {"chart": "workflow", "values": {"resources.limits.memory": "{{parameters.memory}}"}}}"#,
    )
    .await;
    let controller = env.controller();
    let cases = corpus();
    assert!(cases.len() >= 15);
    let mut valid = Vec::new();
    for (i, (id, value, _)) in cases.iter().enumerate() {
        env.put(&format!("/pb/{id}"), value).await;
        let good = format!("realtime-20200101-{i:04}");
        env.put(
            &format!("/pb/{good}"),
            &sdpcfg_block(&good, "realtime", "testdask"),
        )
        .await;
        valid.push(good);
    }
    // A key the library itself refuses as a path (non-ASCII): no state can be written
    // for it, but the controller must survive it.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            format!("--endpoints={}", env.etcd.endpoint()),
            "put".into(),
            "2/pb/bäd-key".into(),
            "{}".into(),
        ])
        .output()?;
    assert!(out.status.success(), "{out:?}");
    env.put(
        "/pb/realtime-20200101-9000",
        &sdpcfg_block("realtime-20200101-9000", "realtime", "testdask"),
    )
    .await;
    valid.push("realtime-20200101-9000".into());

    for (id, _, want) in &cases {
        let state = env.wait_value(&format!("/pb/{id}/state")).await;
        let v: serde_json::Value = serde_json::from_str(&state)?;
        assert_eq!(v["status"], "FAILED", "{id}: {state}");
        let reason = v["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(want.as_str()),
            "{id}: reason {reason:?} lacks {want:?}"
        );
        assert_eq!(v["failed_by"], "processing-controller");
        assert!(
            env.get(&format!("/deploy/{id}-workflow")).await.is_none(),
            "{id} deployed"
        );
    }
    for id in &valid {
        env.wait_value(&format!("/deploy/{id}-workflow")).await;
        let (status, _) = status_of(&env.wait_value(&format!("/pb/{id}/state")).await);
        assert_eq!(status, "STARTING");
    }
    assert!(controller.is_running(), "the controller exited");
    assert_eq!(
        controller.http_get("/healthz").await.map(|r| r.0),
        Some(200)
    );
    let (code, body) = wait_for("/readyz", || async {
        controller.http_get("/readyz").await.filter(|r| r.0 == 200)
    })
    .await;
    assert_eq!((code, body.as_str()), (200, "ready (leader)\n"));
    let (_, metrics) = controller.http_get("/metrics").await.unwrap();
    for want in [
        "sdp_controller_failures_total{reason=\"invalid_json\"} 2",
        "sdp_controller_failures_total{reason=\"id_mismatch\"} 1",
        "sdp_controller_failures_total{reason=\"too_large\"} 1",
        "sdp_controller_failures_total{reason=\"template_error\"} 1",
        "sdp_controller_is_leader 1",
        "sdp_controller_blocks{status=\"FAILED\"}",
        "sdp_controller_reconcile_duration_seconds_bucket",
        "sdp_controller_etcd_watch_reconnects_total",
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }
    let started = format!("sdp_controller_deployments_created_total {}", valid.len());
    assert!(
        metrics.contains(&started),
        "{started} missing from\n{metrics}"
    );

    // The user fixes a block: the controller replaces its own FAILED state and starts it.
    env.put(
        "/pb/bad-nowf",
        &sdpcfg_block("bad-nowf", "realtime", "testdask"),
    )
    .await;
    env.wait_value("/deploy/bad-nowf-workflow").await;
    let state = env.get("/pb/bad-nowf/state").await.unwrap();
    assert!(is_starting(&state), "{state}");
    controller.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_block_starts_when_its_workflow_is_registered_and_the_database_entry_wins()
-> TestResult {
    let env = Env::start().await;
    let _c = env.controller();
    let id = "realtime-20200202-0000";
    let block = sdpcfg_block(id, "realtime", "later");
    env.put(&format!("/pb/{id}"), &block).await;
    let (status, reason) = status_of(&env.wait_value(&format!("/pb/{id}/state")).await);
    assert_eq!(status, "FAILED");
    assert!(
        reason.contains("no realtime workflow \"later\""),
        "{reason}"
    );

    // The file gains the workflow: the controller replaces its own FAILED state.
    std::fs::write(
        &env.registry,
        registry_json(NEXUS, &[("realtime", "later")]),
    )?;
    let deployment = env.wait_value(&format!("/deploy/{id}-workflow")).await;
    assert!(
        deployment.contains(&format!("\"wf_image\": \"{NEXUS}/workflow-later:0.1.0\"")),
        "{deployment}"
    );
    let state = env.get(&format!("/pb/{id}/state")).await.unwrap();
    assert!(is_starting(&state), "{state}");

    // A database definition overrides the file's.
    env.put(
        "/workflow/realtime:testdask:0.1.0",
        r#"{"image": "db.example/testdask:0.1.0"}"#,
    )
    .await;
    let id2 = "realtime-20200202-0001";
    env.put(
        &format!("/pb/{id2}"),
        &sdpcfg_block(id2, "realtime", "testdask"),
    )
    .await;
    let deployment = env.wait_value(&format!("/deploy/{id2}-workflow")).await;
    assert!(
        deployment.contains("\"wf_image\": \"db.example/testdask:0.1.0\""),
        "{deployment}"
    );

    // An invalid registry file keeps the last good one.
    std::fs::write(&env.registry, "{\"workflows\": 5}")?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id3 = "realtime-20200202-0002";
    env.put(
        &format!("/pb/{id3}"),
        &sdpcfg_block(id3, "realtime", "later"),
    )
    .await;
    env.wait_value(&format!("/deploy/{id3}-workflow")).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_blocks_wait_for_dependencies_start_when_they_finish_and_fail_when_they_fail()
-> TestResult {
    let env = Env::start().await;
    let _c = env.controller();
    // The dependency runs (its workflow reports RUNNING).
    env.put(
        "/pb/pb-test-20200425-00000",
        &batch_block("pb-test-20200425-00000", &[]),
    )
    .await;
    env.wait_value("/deploy/pb-test-20200425-00000-workflow")
        .await;
    env.put(
        "/pb/pb-test-20200425-00000/state",
        r#"{"status": "RUNNING", "resources_available": true}"#,
    )
    .await;
    env.put(
        "/pb/pb-test-20200425-00001",
        &batch_block("pb-test-20200425-00001", &["pb-test-20200425-00000"]),
    )
    .await;
    env.put(
        "/pb/pb-test-20200425-00002",
        &batch_block("pb-test-20200425-00002", &["pb-test-20200425-00000"]),
    )
    .await;

    for id in ["pb-test-20200425-00001", "pb-test-20200425-00002"] {
        let state = env.wait_value(&format!("/pb/{id}/state")).await;
        let v: serde_json::Value = serde_json::from_str(&state)?;
        assert_eq!(v["status"], "WAITING", "{state}");
        assert_eq!(v["resources_available"], false);
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains("pb-test-20200425-00000"),
            "{state}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        env.get("/deploy/pb-test-20200425-00001-workflow")
            .await
            .is_none(),
        "started while waiting"
    );

    // The dependency finishes: both start, keeping fields others added to the state.
    env.put(
        "/pb/pb-test-20200425-00001/state",
        &env.get("/pb/pb-test-20200425-00001/state")
            .await
            .unwrap()
            .replacen('{', "{\"note\": \"kept\", ", 1),
    )
    .await;
    env.put(
        "/pb/pb-test-20200425-00000/state",
        r#"{"status": "FINISHED", "resources_available": true}"#,
    )
    .await;
    env.wait_value("/deploy/pb-test-20200425-00001-workflow")
        .await;
    let state = wait_for("STARTING", || async {
        env.get("/pb/pb-test-20200425-00001/state")
            .await
            .filter(|s| s.contains("STARTING"))
    })
    .await;
    let mut state = serde_json::from_str::<serde_json::Value>(&state)?;
    let since = state["since"].take();
    assert!(
        since.is_string(),
        "the WAITING state's since is kept: {state}"
    );
    state.as_object_mut().map(|m| m.remove("since"));
    assert_eq!(
        state,
        json!({"status": "STARTING", "resources_available": false, "note": "kept"})
    );

    // A block waiting on a dependency that fails fails too, naming it.
    env.put(
        "/pb/pb-test-20200425-00003",
        &batch_block("pb-test-20200425-00003", &[]),
    )
    .await;
    env.wait_value("/deploy/pb-test-20200425-00003-workflow")
        .await;
    env.put(
        "/pb/pb-test-20200425-00004",
        &batch_block("pb-test-20200425-00004", &["pb-test-20200425-00003"]),
    )
    .await;
    wait_for("WAITING", || async {
        env.get("/pb/pb-test-20200425-00004/state")
            .await
            .filter(|s| s.contains("WAITING"))
    })
    .await;
    env.put(
        "/pb/pb-test-20200425-00003/state",
        r#"{"status": "FAILED", "reason": "ran out of memory"}"#,
    )
    .await;
    let state = wait_for("FAILED", || async {
        env.get("/pb/pb-test-20200425-00004/state")
            .await
            .filter(|s| s.contains("FAILED"))
    })
    .await;
    let (_, reason) = status_of(&state);
    assert!(reason.contains("depends on processing block pb-test-20200425-00003, which is FAILED (its reason: ran out of memory)"), "{reason}");
    assert!(
        env.get("/deploy/pb-test-20200425-00004-workflow")
            .await
            .is_none()
    );
    // The failed dependency's own state (written by its workflow) is untouched.
    assert_eq!(
        env.get("/pb/pb-test-20200425-00003/state").await.unwrap(),
        r#"{"status": "FAILED", "reason": "ran out of memory"}"#
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_block_removes_its_deployments_and_nothing_else() -> TestResult {
    let env = Env::start().await;
    let _c = env.controller();
    let id = "realtime-20191121-0000";
    let sibling = "realtime-20191121-0000-x"; // shares the prefix
    for b in [id, sibling] {
        env.put(
            &format!("/pb/{b}"),
            &sdpcfg_block(b, "realtime", "testdask"),
        )
        .await;
        env.wait_value(&format!("/deploy/{b}-workflow")).await;
    }
    // What the workflow and the deployer add.
    env.put(
        &format!("/deploy/{id}-dask"),
        r#"{"deploy_id": "x", "type": "helm", "args": {"chart": "dask"}}"#,
    )
    .await;
    env.put(
        &format!("/deploy/{id}-dask/state"),
        r#"{"status": "DEPLOYED"}"#,
    )
    .await;
    env.put(&format!("/deploy/proc-{id}-receive"), "{}").await;
    env.put(
        &format!("/deploy/{id}-workflow/state"),
        r#"{"status": "DEPLOYED"}"#,
    )
    .await;
    env.put(&format!("/deploy/{sibling}-dask"), "{}").await;
    env.put(
        "/deploy/mine",
        r#"{"deploy_id": "mine", "type": "helm", "args": {"chart": "x"}}"#,
    )
    .await;
    env.put("/deploy/mine/state", "{}").await;
    env.put("/deploy/realtime-x", "{}").await;

    env.delete_tree(&format!("/pb/{id}")).await;
    let left = wait_for("cleanup", || async {
        let keys = env.keys("/deploy/").await;
        (!keys.iter().any(|k| {
            k.starts_with(&format!("/deploy/{id}-workflow"))
                || k.contains("-receive")
                || k.ends_with(&format!("{id}-dask"))
        }))
        .then_some(keys)
    })
    .await;
    let mut expected = vec![
        "/deploy/mine".to_string(),
        "/deploy/mine/state".into(),
        "/deploy/realtime-x".into(),
        format!("/deploy/{sibling}-dask"),
        format!("/deploy/{sibling}-workflow"),
    ];
    expected.sort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut now = env.keys("/deploy/").await;
    now.sort();
    assert_eq!(now, expected, "after deletion: {left:?}");
    assert!(env.get(&format!("/pb/{sibling}/state")).await.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_changed_while_the_controller_was_down_is_handled_at_start() -> TestResult {
    let env = Env::start().await;
    // Deployments of blocks deleted while no controller ran, and blocks waiting.
    env.put("/deploy/realtime-20190101-0000-workflow", "{}")
        .await;
    env.put("/deploy/realtime-20190101-0000-workflow/state", "{}")
        .await;
    env.put("/deploy/proc-pb-mvp01-20200425-00009-workflow", "{}")
        .await;
    env.put("/deploy/handmade-thing", "{}").await;
    env.put(
        "/pb/realtime-20190101-0001",
        &sdpcfg_block("realtime-20190101-0001", "realtime", "testdask"),
    )
    .await;
    env.put(
        "/pb/realtime-20190101-0002",
        &sdpcfg_block("realtime-20190101-0002", "realtime", "testdask"),
    )
    .await;
    // A block started long ago whose workflow wrote its own state: left alone.
    env.put(
        "/pb/realtime-20190101-0002/state",
        r#"{"state": "executing", "subarray": "x"}"#,
    )
    .await;
    let _c = env.controller();
    env.wait_value("/deploy/realtime-20190101-0001-workflow")
        .await;
    let keys = wait_for("orphans removed", || async {
        let keys = env.keys("/deploy/").await;
        (!keys
            .iter()
            .any(|k| k.contains("20190101-0000") || k.contains("00009")))
        .then_some(keys)
    })
    .await;
    assert_eq!(
        keys,
        vec![
            "/deploy/handmade-thing",
            "/deploy/realtime-20190101-0001-workflow"
        ]
    );
    assert_eq!(
        env.get("/pb/realtime-20190101-0002/state").await.unwrap(),
        r#"{"state": "executing", "subarray": "x"}"#
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_template_in_the_database_renders_the_deployment() -> TestResult {
    let env = Env::start().await;
    env.put(
        "/workflow/batch:big:2.0",
        r#"{"image": "reg/big:2.0", "deploy": {"chart": "big-{{workflow.version}}", "values": {
            "image": "{{image}}", "env.PB": "{{pb_id}}", "resources.limits.memory": "{{parameters.memory}}",
            "sbi": "{{sbi_id}}", "ns": "{{namespace}}", "replicas": 2}}}"#,
    )
    .await;
    let _c = env.controller();
    env.put(
        "/pb/pb-big-20200101-00000",
        r#"{"id": "pb-big-20200101-00000", "sbi_id": "sbi-1", "workflow": {"type": "batch", "id": "big", "version": "2.0"}, "parameters": {"memory": "4Gi"}}"#,
    )
    .await;
    let deployment = env
        .wait_value("/deploy/pb-big-20200101-00000-workflow")
        .await;
    assert_eq!(
        deployment,
        to_python_string(
            &json!({"deploy_id": "pb-big-20200101-00000-workflow", "type": "helm", "args": {"chart": "big-2.0", "values": {
            "image": "reg/big:2.0", "env.PB": "pb-big-20200101-00000", "resources.limits.memory": "4Gi",
            "sbi": "sbi-1", "ns": "sdp", "replicas": 2}}})
        )
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_can_be_downloaded_over_http() -> TestResult {
    let env = Env::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = registry_json("web.example/sdp", &[]);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    let mut settings = env.settings();
    settings.workflows_url = format!("http://{addr}/workflows.json");
    let _c = InProcess::start(settings);
    env.put(
        "/pb/realtime-20200303-0000",
        &sdpcfg_block("realtime-20200303-0000", "realtime", "testdask"),
    )
    .await;
    let deployment = env
        .wait_value("/deploy/realtime-20200303-0000-workflow")
        .await;
    assert!(
        deployment.contains("\"wf_image\": \"web.example/sdp/workflow-testdask:0.1.0\""),
        "{deployment}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_whose_state_is_not_a_state_is_left_alone_counted_and_starts_once_it_is_deleted()
-> TestResult {
    let env = Env::start().await;
    let garbage = [
        ("realtime-20261207-0000", "not json at all"),
        ("realtime-20261207-0001", "[1, 2]"),
        ("realtime-20261207-0002", r#"{"status": 5}"#),
    ];
    for (id, text) in garbage {
        env.put(&format!("/pb/{id}/state"), text).await;
    }
    let c = env.controller();
    let ok = "realtime-20261207-0009";
    for (id, _) in garbage.iter().chain([&(ok, "")]) {
        env.put(
            &format!("/pb/{id}"),
            &sdpcfg_block(id, "realtime", "testdask"),
        )
        .await;
    }
    env.wait_value(&format!("/deploy/{ok}-workflow")).await;
    // What an operator sees: the metric (and a warning in the log).
    wait_for("the unreadable states counted", || async {
        c.http_get("/metrics").await.and_then(|(_, body)| {
            body.lines()
                .any(|l| l == "sdp_controller_blocks{status=\"UNREADABLE\"} 3")
                .then_some(())
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, text) in garbage {
        assert_eq!(
            env.get(&format!("/pb/{id}/state")).await.as_deref(),
            Some(text),
            "what was written is kept"
        );
        assert!(env.get(&format!("/deploy/{id}-workflow")).await.is_none());
    }
    // The documented way out: delete the state, and the block starts.
    let (id, _) = garbage[0];
    env.delete_tree(&format!("/pb/{id}/state")).await;
    env.wait_value(&format!("/deploy/{id}-workflow")).await;
    let state = env.wait_value(&format!("/pb/{id}/state")).await;
    assert!(is_starting(&state), "{state}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_workflow_deployment_is_adopted_only_when_it_is_the_blocks_own() -> TestResult
{
    let env = Env::start().await;
    let mine = "realtime-20261207-0100";
    let same = "realtime-20261207-0101";
    let hand_written = r#"{"deploy_id": "realtime-20261207-0100-workflow", "type": "helm", "args": {"chart": "mine", "values": {"x": 1}}}"#;
    env.put(&format!("/deploy/{mine}-workflow"), hand_written)
        .await;
    // Exactly what the controller would write, formatted by another tool.
    let own = json!({
        "deploy_id": format!("{same}-workflow"),
        "type": "helm",
        "args": {"chart": "workflow", "values": {
            "env.SDP_CONFIG_HOST": "127.0.0.1",
            "env.SDP_CONFIG_PORT": env.etcd.port().to_string(),
            "env.SDP_HELM_NAMESPACE": "sdp",
            "pb_id": same,
            "wf_image": format!("{NEXUS}/workflow-testdask:0.1.0")}}
    })
    .to_string();
    env.put(&format!("/deploy/{same}-workflow"), &own).await;
    let _c = env.controller();
    for id in [mine, same] {
        env.put(
            &format!("/pb/{id}"),
            &sdpcfg_block(id, "realtime", "testdask"),
        )
        .await;
    }
    let state = env.wait_value(&format!("/pb/{mine}/state")).await;
    let (status, reason) = status_of(&state);
    assert_eq!(status, "FAILED", "{state}");
    assert!(
        reason.contains(&format!("deployment {mine}-workflow exists")),
        "{state}"
    );
    let state = env.wait_value(&format!("/pb/{same}/state")).await;
    assert!(is_starting(&state), "{state}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.get(&format!("/deploy/{mine}-workflow"))
            .await
            .as_deref(),
        Some(hand_written),
        "the hand-written entry is left as it is"
    );
    assert_eq!(
        env.get(&format!("/deploy/{same}-workflow"))
            .await
            .as_deref(),
        Some(own.as_str()),
        "the adopted entry is left as it is"
    );
    // Deleting the hand-written entry lets the block start with its own.
    env.delete_tree(&format!("/deploy/{mine}-workflow")).await;
    let state = wait_for("the block to start", || async {
        env.get(&format!("/pb/{mine}/state"))
            .await
            .filter(|s| is_starting(s))
    })
    .await;
    assert!(!state.contains("reason"), "{state}");
    let deployment = env.wait_value(&format!("/deploy/{mine}-workflow")).await;
    assert!(
        deployment.contains("\"chart\": \"workflow\""),
        "{deployment}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_in_a_dependency_cycle_fail_once_with_a_reason_naming_the_cycle() -> TestResult {
    let env = Env::start().await;
    let _c = env.controller();
    // The blocks of the cycle appear one by one, so that each one's state wakes the other.
    env.put("/pb/cyc-a", &batch_block("cyc-a", &["cyc-b"]))
        .await;
    env.put("/pb/cyc-c", &batch_block("cyc-c", &["cyc-a"]))
        .await;
    env.wait_value("/pb/cyc-a/state").await;
    env.put("/pb/cyc-b", &batch_block("cyc-b", &["cyc-a"]))
        .await;
    let failed = |id: &'static str| {
        let env = &env;
        async move {
            env.get(&format!("/pb/{id}/state"))
                .await
                .filter(|s| status_of(s).0 == "FAILED")
        }
    };
    for id in ["cyc-a", "cyc-b"] {
        wait_for("the cycle to fail", || failed(id)).await;
    }
    // Let every wake settle, then nothing may change any more.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut seen = Vec::new();
    for (id, cycle) in [
        ("cyc-a", "cyc-a → cyc-b → cyc-a"),
        ("cyc-b", "cyc-b → cyc-a → cyc-b"),
    ] {
        let state = env.get(&format!("/pb/{id}/state")).await.unwrap();
        let (status, reason) = status_of(&state);
        assert_eq!(status, "FAILED", "{state}");
        assert!(
            reason.contains(&format!("dependency cycle: {cycle}"))
                && !reason.contains("its reason"),
            "{state}"
        );
        seen.push(state);
    }
    let c = wait_for("the dependent to fail", || failed("cyc-c")).await;
    assert!(
        status_of(&c)
            .1
            .contains("dependency cycle: cyc-a → cyc-b → cyc-a"),
        "{c}"
    );
    seen.push(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (id, before) in ["cyc-a", "cyc-b", "cyc-c"].iter().zip(seen) {
        assert_eq!(
            env.get(&format!("/pb/{id}/state")).await.unwrap(),
            before,
            "{id} rewritten"
        );
    }
    Ok(())
}

/// Issue 11, item 9: a workflow of a system with a prefix, a non-default port, TLS and
/// authentication must be told all of it, credentials and CA only as a Secret's name.
/// Before, its deployment carried the host and the namespace only, so the workflow
/// would look for its block at 127.0.0.1:2379 outside /tenant1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_of_a_prefixed_tls_and_auth_system_is_told_everything_but_the_secrets()
-> TestResult {
    let password = "pw-never-in-etcd";
    let etcd = sdp_testing::EtcdServer::start_with(sdp_testing::EtcdOptions {
        tls: true,
        auth: Some(("sdp".into(), password.into())),
        ..Default::default()
    })?;
    let db = sdp_config::Config::connect(&etcd.connection().with_prefix("/tenant1")).await?;
    let dir = tempfile::tempdir()?;
    let registry = dir.path().join("workflows.json");
    std::fs::write(&registry, registry_json(NEXUS, &[]))?;
    // The real binary, configured through the environment as the system chart does.
    let controller = Binary::start(
        &etcd,
        &registry,
        dir.path().join("controller.log"),
        &[
            ("SDP_CONFIG_PREFIX", "/tenant1"),
            ("SDP_WORKFLOW_CONFIG_SECRET", "sdp-etcd-client"),
            ("SDP_WORKFLOW_CONFIG_HOST", "sdp-etcd.sdp"),
        ],
    );
    let id = "realtime-20261208-0000";
    put(
        &db,
        &format!("/pb/{id}"),
        &sdpcfg_block(id, "realtime", "testdask"),
    )
    .await;
    let path = format!("/deploy/{id}-workflow");
    let deployment = wait_for(&path, || get(&db, &path)).await;
    let expected = to_python_string(&json!({
        "deploy_id": format!("{id}-workflow"),
        "type": "helm",
        "args": {"chart": "workflow", "values": {
            "config_secret": "sdp-etcd-client",
            "env.SDP_CONFIG_HOST": "sdp-etcd.sdp",
            "env.SDP_CONFIG_PORT": etcd.port().to_string(),
            "env.SDP_CONFIG_PREFIX": "/tenant1",
            "env.SDP_CONFIG_PROTOCOL": "https",
            "env.SDP_HELM_NAMESPACE": "sdp",
            "pb_id": id,
            "wf_image": format!("{NEXUS}/workflow-testdask:0.1.0")}}
    }));
    assert_eq!(deployment, expected, "{}", controller.log_text());
    // Nothing of the controller's own credentials or CA file anywhere under the prefix.
    let all = [keys(&db, "/pb").await, keys(&db, "/deploy").await].concat();
    assert!(all.contains(&path), "{all:?}");
    for key in all {
        let value = get(&db, &key).await.unwrap_or_default();
        for secret in [
            password,
            "SDP_CONFIG_PASSWORD",
            "SDP_CONFIG_USERNAME",
            "SDP_CONFIG_CERT",
        ] {
            assert!(!value.contains(secret), "{key} holds {secret}: {value}");
        }
    }
    // And nothing outside it: the unprefixed tree is another system's.
    let plain = sdp_config::Config::connect(&etcd.connection()).await?;
    assert_eq!(keys(&plain, "/deploy").await, Vec::<String>::new());
    assert!(
        !controller.log_text().contains(password),
        "{}",
        controller.log_text()
    );
    Ok(())
}

/// The same controller without a Secret to hand on warns that workflows get no
/// credentials, instead of copying its own into their deployments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_credentials_but_no_workflow_secret_warns_and_copies_nothing()
-> TestResult {
    let password = "pw-never-in-etcd";
    let etcd = sdp_testing::EtcdServer::start_with(sdp_testing::EtcdOptions {
        auth: Some(("sdp".into(), password.into())),
        ..Default::default()
    })?;
    let db = sdp_config::Config::connect(&etcd.connection()).await?;
    let dir = tempfile::tempdir()?;
    let registry = dir.path().join("workflows.json");
    std::fs::write(&registry, registry_json(NEXUS, &[]))?;
    let controller = Binary::start(&etcd, &registry, dir.path().join("controller.log"), &[]);
    let id = "realtime-20261208-0001";
    put(
        &db,
        &format!("/pb/{id}"),
        &sdpcfg_block(id, "realtime", "testdask"),
    )
    .await;
    let path = format!("/deploy/{id}-workflow");
    let deployment = wait_for(&path, || get(&db, &path)).await;
    let values: serde_json::Value = serde_json::from_str(&deployment)?;
    let keys: Vec<&String> = values["args"]["values"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        keys,
        [
            "env.SDP_CONFIG_HOST",
            "env.SDP_CONFIG_PORT",
            "env.SDP_HELM_NAMESPACE",
            "pb_id",
            "wf_image"
        ]
    );
    assert!(!deployment.contains(password), "{deployment}");
    assert!(
        controller
            .log_text()
            .contains("SDP_WORKFLOW_CONFIG_SECRET is not set"),
        "{}",
        controller.log_text()
    );
    Ok(())
}
