//! The example workflows as real processes against a real etcd, started the way the
//! workflow pod starts them: `<binary> <pb_id>` with `SDP_CONFIG_*` and
//! `SDP_HELM_NAMESPACE` in the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, Proc, eventually};
use sdp_config::entity::{Deployment, Owner, ProcessingBlock};
use serde_json::{Value, json};

const TESTSTATE: &str = env!("CARGO_BIN_EXE_teststate");
const TESTDASK: &str = env!("CARGO_BIN_EXE_testdask");
const TESTDEPLOY: &str = env!("CARGO_BIN_EXE_testdeploy");

/// The wire format's example deployment, byte for byte.
const SEED_DASK: &str = "{\n  \"args\": {\n    \"chart\": \"stable/dask\",\n    \"values\": {\n      \"jupyter.enabled\": \"false\",\n      \"scheduler.serviceType\": \"ClusterIP\",\n      \"worker.replicas\": 2\n    }\n  },\n  \"deploy_id\": \"realtime-20191121-0000-dask\",\n  \"type\": \"helm\"\n}";

async fn status(env: &Env, pb_id: &str) -> Option<String> {
    env.state(pb_id).await.and_then(|s| s.status)
}

#[tokio::test]
async fn teststate_walks_through_running_to_finished_holding_the_claim_meanwhile() {
    let env = Env::start().await;
    let pb = "batch-20191121-0000";
    env.create_block(pb, "batch:teststate:0.1.0", json!({"duration": 3}))
        .await;
    // The controller's initial state: kept where the workflow does not change it.
    env.create(
        &ProcessingBlock::state_path(pb),
        r#"{"resources_available": false, "status": "STARTING"}"#,
    )
    .await;
    let mut proc = Proc::spawn(TESTSTATE, pb, &env.etcd, &[]);

    eventually("RUNNING", || async {
        (status(&env, pb).await.as_deref() == Some("RUNNING")).then_some(())
    })
    .await;
    let owner = env
        .get(&ProcessingBlock::owner_path(pb))
        .await
        .expect("owner key while running");
    let owner = Owner::parse(&owner).unwrap();
    assert_eq!(owner.value["pid"], proc.pid());
    assert_eq!(owner.value["command"], json!([TESTSTATE, pb]));
    assert!(proc.running());

    eventually("FINISHED", || async {
        (status(&env, pb).await.as_deref() == Some("FINISHED")).then_some(())
    })
    .await;
    let exit = proc.exit().await;
    assert!(exit.success(), "{exit}; log:\n{}", proc.log());
    assert_eq!(
        env.get(&ProcessingBlock::owner_path(pb)).await,
        None,
        "claim released"
    );
    let state = env
        .get_json(&ProcessingBlock::state_path(pb))
        .await
        .unwrap();
    assert_eq!(
        state,
        json!({"resources_available": false, "status": "FINISHED"})
    );
}

#[tokio::test]
async fn teststate_fails_on_request_with_the_given_or_a_default_reason() {
    let env = Env::start().await;
    env.create_block(
        "pb-a",
        "batch:teststate:0.1.0",
        json!({"fail": true, "duration": 0}),
    )
    .await;
    env.create_block(
        "pb-b",
        "batch:teststate:0.1.0",
        json!({"fail": true, "reason": "no data", "duration": 0.1}),
    )
    .await;
    env.create_block("pb-c", "batch:teststate:0.1.0", json!({"duration": "soon"}))
        .await;
    let mut procs: Vec<Proc> = ["pb-a", "pb-b", "pb-c"]
        .iter()
        .map(|pb| Proc::spawn(TESTSTATE, pb, &env.etcd, &[]))
        .collect();
    for p in &mut procs {
        let exit = p.exit().await;
        assert!(exit.success(), "{exit}; log:\n{}", p.log());
    }
    let a = env.state("pb-a").await.unwrap();
    assert_eq!(a.status.as_deref(), Some("FAILED"));
    assert!(a.reason.unwrap().contains("fail: true"));
    let b = env.state("pb-b").await.unwrap();
    assert_eq!(
        (b.status.as_deref(), b.reason.as_deref()),
        (Some("FAILED"), Some("no data"))
    );
    let c = env.state("pb-c").await.unwrap();
    assert_eq!(c.status.as_deref(), Some("FAILED"));
    assert!(
        c.reason
            .unwrap()
            .contains("`duration` must be a non-negative number")
    );
    for pb in ["pb-a", "pb-b", "pb-c"] {
        assert_eq!(env.get(&ProcessingBlock::owner_path(pb)).await, None);
    }
}

#[tokio::test]
async fn a_workflow_for_a_missing_block_exits_non_zero_saying_why() {
    let env = Env::start().await;
    let mut proc = Proc::spawn(TESTSTATE, "batch-20191121-0009", &env.etcd, &[]);
    let exit = proc.exit().await;
    assert_eq!(exit.code(), Some(1));
    assert!(
        proc.log()
            .contains("processing block batch-20191121-0009 does not exist"),
        "{}",
        proc.log()
    );
    let mut proc = Proc::spawn(TESTDASK, "", &env.etcd, &[]);
    assert_eq!(proc.exit().await.code(), Some(1), "{}", proc.log());
}

#[tokio::test]
async fn testdask_without_a_scheduler_says_so_and_cleans_up_when_the_block_is_deleted() {
    let env = Env::start().await;
    let pb = "realtime-20191121-0000";
    env.create_block(pb, "realtime:testdask:0.1.0", json!({}))
        .await;
    let mut proc = Proc::spawn(TESTDASK, pb, &env.etcd, &[("SDP_DASK_TIMEOUT", "2")]);
    let dask = Deployment::path("realtime-20191121-0000-dask");

    let value = eventually("the dask deployment", || env.get(&dask)).await;
    assert_eq!(value, SEED_DASK);
    let state = eventually("the outcome in the state", || async {
        env.get_json(&ProcessingBlock::state_path(pb))
            .await
            .filter(|s| {
                s["dask"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("unreachable"))
            })
    })
    .await;
    assert_eq!(state["status"], "RUNNING");
    assert_eq!(
        state["dask_scheduler"],
        "realtime-20191121-0000-dask-scheduler.test-sdp:8786"
    );
    let why = state["dask"].as_str().unwrap();
    assert!(
        why.contains("within 2 s") && why.contains("render target"),
        "{why}"
    );
    assert!(
        proc.running(),
        "idles after recording the outcome; log:\n{}",
        proc.log()
    );

    env.delete(&ProcessingBlock::path(pb)).await;
    let exit = proc.exit().await;
    assert!(exit.success(), "{exit}; log:\n{}", proc.log());
    assert_eq!(env.get(&dask).await, None, "deployment removed");
    assert_eq!(
        env.get(&ProcessingBlock::owner_path(pb)).await,
        None,
        "claim released"
    );
}

#[tokio::test]
async fn testdask_connects_to_a_listening_scheduler_and_stops_on_sigterm() {
    let env = Env::start().await;
    let pb = "realtime-20191121-0001";
    env.create_block(pb, "realtime:testdask:0.1.0", json!({}))
        .await;
    // Connections complete in the kernel's backlog: no need to accept them.
    let scheduler = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = scheduler.local_addr().unwrap().to_string();
    let mut proc = Proc::spawn(
        TESTDASK,
        pb,
        &env.etcd,
        &[("SDP_DASK_SCHEDULER", &addr), ("SDP_DASK_TIMEOUT", "20")],
    );

    let state = eventually("connected", || async {
        env.get_json(&ProcessingBlock::state_path(pb))
            .await
            .filter(|s| s["dask"] == "connected")
    })
    .await;
    assert_eq!(state["dask_scheduler"], Value::String(addr));
    assert_eq!(state["status"], "RUNNING");
    assert!(
        env.get(&Deployment::path(&format!("{pb}-dask")))
            .await
            .is_some()
    );

    proc.terminate();
    let exit = proc.exit().await;
    assert!(exit.success(), "{exit}; log:\n{}", proc.log());
    assert_eq!(
        env.get(&Deployment::path(&format!("{pb}-dask"))).await,
        None
    );
    assert_eq!(env.get(&ProcessingBlock::owner_path(pb)).await, None);
    assert!(
        env.get(&ProcessingBlock::path(pb)).await.is_some(),
        "the block is the controller's business"
    );
}

#[tokio::test]
async fn testdeploy_keeps_deployments_in_step_with_the_parameters() {
    let env = Env::start().await;
    let pb = "realtime-20191121-0002";
    let a1 = json!({"chart": "dask", "values": {"worker.replicas": 1}});
    let b = json!({"type": "helm", "args": {"chart": "workflow", "values": {"wf_image": "x"}}});
    env.create_block(pb, "realtime:testdeploy:0.1.0", json!({"a": a1, "b": b}))
        .await;
    let mut proc = Proc::spawn(TESTDEPLOY, pb, &env.etcd, &[]);
    let path = |k: &str| Deployment::path(&format!("{pb}-{k}"));
    let deployment = |k: &str, v: &Value| -> String {
        let mut full = if v.get("type").is_some() {
            v.clone()
        } else {
            json!({"type": "helm", "args": v})
        };
        full["deploy_id"] = json!(format!("{pb}-{k}"));
        sdp_config::json::to_python_string(&full)
    };

    eventually("two deployments", || async {
        (env.keys("/deploy/").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(env.get(&path("a")).await.unwrap(), deployment("a", &a1));
    assert_eq!(env.get(&path("b")).await.unwrap(), deployment("b", &b));
    let state = eventually("deployments in the state", || async {
        env.get_json(&ProcessingBlock::state_path(pb))
            .await
            .filter(|s| s["deployments"].as_array().is_some_and(|d| d.len() == 2))
    })
    .await;
    assert_eq!(state["status"], "RUNNING");

    // Drop b, change a, add an invalid entry.
    let a2 = json!({"chart": "dask", "values": {"worker.replicas": 3}});
    env.set_parameters(pb, json!({"a": a2, "bad": 7})).await;
    eventually("b removed and a changed", || async {
        let a_now = env.get(&path("a")).await;
        (env.get(&path("b")).await.is_none()
            && a_now.as_deref() == Some(deployment("a", &a2).as_str()))
        .then_some(())
    })
    .await;
    let state = eventually("the invalid entry in the state", || async {
        env.get_json(&ProcessingBlock::state_path(pb))
            .await
            .filter(|s| s.get("deployment_errors").is_some())
    })
    .await;
    assert!(
        state["deployment_errors"]["bad"]
            .as_str()
            .unwrap()
            .contains("must be an object"),
        "{state}"
    );
    assert_eq!(state["deployments"], json!([format!("{pb}-a")]));

    // The controller's deployment of the workflow itself is never touched.
    let own = format!("{pb}-workflow");
    env.create(
        &Deployment::path(&own),
        &Deployment::helm(&own, "workflow", Default::default()).to_json(),
    )
    .await;

    env.delete(&ProcessingBlock::path(pb)).await;
    let exit = proc.exit().await;
    assert!(exit.success(), "{exit}; log:\n{}", proc.log());
    assert_eq!(
        env.keys("/deploy/").await,
        [Deployment::path(&own)],
        "all its deployments removed"
    );
    assert_eq!(env.get(&ProcessingBlock::owner_path(pb)).await, None);
}
