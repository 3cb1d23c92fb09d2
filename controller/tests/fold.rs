//! What becomes of a block's deployments and workflow reaches the block's state: the
//! controller against a real etcd, the test writing deployment states and owner keys
//! by hand as the deployer and the workflow would (`docs/states.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const PULL: &str = "image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)";

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

async fn state(env: &Env, id: &str) -> Value {
    parse(&env.wait_value(&format!("/pb/{id}/state")).await)
}

/// Create block `id` and wait until the controller has started it.
async fn started(env: &Env, id: &str) -> Value {
    env.put(
        &format!("/pb/{id}"),
        &sdpcfg_block(id, "realtime", "testdask"),
    )
    .await;
    env.wait_value(&format!("/deploy/{id}-workflow")).await;
    wait_state(env, id, "STARTING", |s| s["status"] == "STARTING").await
}

/// Wait until block `id`'s state satisfies `ok`.
async fn wait_state(env: &Env, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/pb/{id}/state");
    wait_for(&format!("{id}: {what}"), || async {
        env.get(&path).await.map(|t| parse(&t)).filter(|s| ok(s))
    })
    .await
}

/// The workflow changes its block's state as it does: read, change, write back.
async fn workflow_writes(env: &Env, id: &str, change: impl FnOnce(&mut Value)) {
    let mut s = state(env, id).await;
    change(&mut s);
    env.put(&format!("/pb/{id}/state"), &s.to_string()).await;
}

/// The deployer reports on deployment `deploy_id`.
async fn deployer_reports(env: &Env, deploy_id: &str, report: Value) {
    env.put(&format!("/deploy/{deploy_id}/state"), &report.to_string())
        .await;
}

fn pod(name: &str, extra: Value) -> Value {
    let mut p = json!({"name": name, "phase": "Running", "ready": false, "restarts": 0});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

fn workload(phase: &str, message: &str, pods: Vec<Value>) -> Value {
    json!({"status": "DEPLOYED", "message": "installed: revision 1", "release": "r",
           "workload": {"phase": phase, "message": message, "pods": pods,
                        "updated": "2026-12-01T10:00:07Z"}})
}

fn running(s: &mut Value) {
    s["status"] = json!("RUNNING");
    s["resources_available"] = json!(true);
    s["dask"] = json!("waiting up to 600 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_workflow_workload_fails_the_block_and_a_retry_starts_it_again() -> TestResult {
    let env = Env::start().await;
    let _c = env.controller();
    let id = "realtime-20261201-0000";
    let wf = format!("{id}-workflow");
    let since = started(&env, id).await["since"].clone();
    workflow_writes(&env, id, running).await;
    deployer_reports(
        &env,
        &wf,
        workload(
            "FAILED",
            &format!("pod {wf}: {PULL}"),
            vec![pod(
                &wf,
                json!({"phase": "Pending", "reason": "ImagePullBackOff"}),
            )],
        ),
    )
    .await;

    let failed = wait_state(&env, id, "FAILED", |s| s["status"] == "FAILED").await;
    assert_eq!(
        failed,
        json!({"status": "FAILED", "reason": format!("workflow pod {wf}: {PULL}"),
               "failed_deployment": wf, "since": since, "resources_available": true,
               "dask": "waiting up to 600 s"})
    );

    // `sdpcfg retry`: the deployment's state is deleted, the deployer starts afresh.
    env.delete_tree(&format!("/deploy/{wf}/state")).await;
    let again = wait_state(&env, id, "STARTING again", |s| s["status"] == "STARTING").await;
    assert_eq!(
        again,
        json!({"status": "STARTING", "resources_available": false, "since": since,
               "dask": "waiting up to 600 s"})
    );
    // A new attempt that fails is reported like the first.
    deployer_reports(
        &env,
        &wf,
        json!({"status": "FAILED", "message": "Kubernetes cluster unreachable", "attempts": 1}),
    )
    .await;
    let failed = wait_state(&env, id, "FAILED by helm", |s| s["status"] == "FAILED").await;
    assert_eq!(
        failed["reason"],
        format!("workflow deployment {wf}: Kubernetes cluster unreachable")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_block_is_never_changed() -> TestResult {
    let env = Env::start().await;
    let mut settings = env.settings();
    settings.owner_grace = Duration::from_millis(500);
    let _c = InProcess::start(settings);
    let done = "realtime-20261201-0001";
    let witness = "realtime-20261201-0002";
    started(&env, done).await;
    started(&env, witness).await;
    env.put(&format!("/pb/{done}/owner"), "{}").await;
    workflow_writes(&env, done, |s| s["status"] = json!("FINISHED")).await;
    let finished = env.get(&format!("/pb/{done}/state")).await.unwrap();

    // Everything that would fail a running block happens to the finished one.
    env.delete_tree(&format!("/pb/{done}/owner")).await;
    let failing = workload("FAILED", "pod x: crashed", Vec::new());
    deployer_reports(&env, &format!("{done}-workflow"), failing.clone()).await;
    env.put(&format!("/deploy/{done}-dask"), "{}").await;
    deployer_reports(&env, &format!("{done}-dask"), failing.clone()).await;
    // Then to the witness: once it has FAILED, the controller has seen all of the
    // above, and the owner's grace is over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    deployer_reports(&env, &format!("{witness}-workflow"), failing).await;
    wait_state(&env, witness, "FAILED", |s| s["status"] == "FAILED").await;

    assert_eq!(
        env.get(&format!("/pb/{done}/state")).await.unwrap(),
        finished
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_failing_deployments_are_listed_without_changing_the_status() -> TestResult {
    let env = Env::start().await;
    let _c = env.controller();
    let id = "realtime-20261201-0003";
    let dask = format!("{id}-dask");
    started(&env, id).await;
    workflow_writes(&env, id, running).await;
    env.put(&format!("/deploy/{dask}"), "{}").await;
    let crash = format!("pod {dask}-worker-0: crash loop, last exit code 1 (CrashLoopBackOff)");
    deployer_reports(&env, &dask, workload("FAILED", &crash, Vec::new())).await;

    let listed = wait_state(&env, id, "dask listed", |s| !s["deployments"].is_null()).await;
    assert_eq!(listed["status"], "RUNNING");
    assert_eq!(listed["deployments"], json!({dask.clone(): crash}));
    assert_eq!(listed["dask"], "waiting up to 600 s");

    deployer_reports(&env, &dask, workload("RUNNING", "", Vec::new())).await;
    let cleared = wait_state(&env, id, "dask cleared", |s| s.get("deployments").is_none()).await;
    assert_eq!(cleared["status"], "RUNNING");
    assert_eq!(cleared["resources_available"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_whose_owner_goes_fails_after_the_grace_and_a_retry_starts_it_again()
-> TestResult {
    let env = Env::start().await;
    let mut settings = env.settings();
    settings.owner_grace = Duration::from_secs(1);
    let _c = InProcess::start(settings);
    let id = "realtime-20261201-0004";
    let back = "realtime-20261201-0005";
    let wf = format!("{id}-workflow");
    for b in [id, back] {
        started(&env, b).await;
        env.put(&format!("/pb/{b}/owner"), "{\"pid\": 1}").await;
        workflow_writes(&env, b, running).await;
    }
    deployer_reports(
        &env,
        &wf,
        workload(
            "PENDING",
            "",
            vec![pod(
                &format!("{wf}-x7k2p"),
                json!({"restarts": 1, "reason": "Error", "exit_code": 1}),
            )],
        ),
    )
    .await;

    // The workflow is killed; the other one's pod restarts and claims its block again.
    env.delete_tree(&format!("/pb/{id}/owner")).await;
    env.delete_tree(&format!("/pb/{back}/owner")).await;
    let gone = Instant::now();
    env.put(&format!("/pb/{back}/owner"), "{\"pid\": 2}").await;

    let failed = wait_state(&env, id, "FAILED", |s| s["status"] == "FAILED").await;
    assert!(
        gone.elapsed() >= Duration::from_secs(1),
        "failed within the grace"
    );
    assert_eq!(
        failed["reason"],
        format!("workflow exited without finishing (pod {wf}-x7k2p: Error, exit code 1)")
    );
    assert_eq!(failed["failed_deployment"], wf);
    assert_eq!(failed["dask"], "waiting up to 600 s");
    assert_eq!(state(&env, back).await["status"], "RUNNING");

    // Retried: the deployer's state is deleted; the block starts again, and stays
    // STARTING past the grace (no workflow has claimed it yet, none has gone).
    env.delete_tree(&format!("/deploy/{wf}/state")).await;
    let again = wait_state(&env, id, "STARTING again", |s| s["status"] == "STARTING").await;
    assert!(again.get("failed_deployment").is_none(), "{again}");
    assert!(again.get("reason").is_none(), "{again}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(state(&env, id).await["status"], "STARTING");
    assert_eq!(state(&env, back).await["status"], "RUNNING");
    Ok(())
}
