//! The workflow SDK against a real etcd: claims, state, deployments, events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, eventually};
use sdp_config::entity::{Deployment, Owner, PbStatus, ProcessingBlock};
use sdp_workflows::{Ended, Error, Event, Workflow};
use serde_json::{Map, Value, json};

const PB: &str = "realtime-20191121-0000";
const WF: &str = "realtime:testdask:0.1.0";

async fn claimed(env: &Env) -> Workflow {
    env.create_block(PB, WF, json!({"x": 1})).await;
    Workflow::start_with(&env.settings, PB, env.options())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_claim_is_exclusive_and_the_owner_has_the_python_shape() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    assert_eq!(wf.pb_id(), PB);
    assert_eq!(wf.parameters()["x"], 1);
    assert_eq!(wf.namespace(), "test-sdp");

    let owner = env
        .get_json(&ProcessingBlock::owner_path(PB))
        .await
        .expect("owner key");
    let fields: Vec<&String> = owner.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["command", "hostname", "pid"]);
    assert!(
        owner["command"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );
    assert!(owner["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(owner["pid"], std::process::id());
    // Written in the Python tools' format.
    let text = env.get(&ProcessingBlock::owner_path(PB)).await.unwrap();
    assert_eq!(text, Owner::this_process().to_json());

    let err = Workflow::start_with(&env.settings, PB, env.options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyClaimed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("processing block {PB} is already claimed by {{")),
        "{message}"
    );
    assert!(
        message.contains(&format!("\"pid\":{}", std::process::id())),
        "{message}"
    );
    // The failed claim changed nothing.
    assert_eq!(
        env.get(&ProcessingBlock::owner_path(PB)).await.unwrap(),
        text
    );
    wf.finish().await.unwrap();
}

#[tokio::test]
async fn missing_and_invalid_blocks_cannot_be_claimed() {
    let env = Env::start().await;
    let err = Workflow::start_with(&env.settings, "nope-1", env.options())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "processing block nope-1 does not exist");
    env.create(&ProcessingBlock::path("bad-1"), r#"{"pb_id": "bad-1"}"#)
        .await;
    let err = Workflow::start_with(&env.settings, "bad-1", env.options())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("processing block bad-1 is invalid: missing field `workflow`"),
        "{err}"
    );
    let err = Workflow::start_with(&env.settings, "no/such", env.options())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPbId(_)), "{err:?}");
    assert!(
        env.get(&ProcessingBlock::owner_path("bad-1"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn connecting_gives_up_after_the_limit_with_the_endpoint() {
    let settings = sdp_config::ConnectionSettings {
        port: sdp_testing::free_port(),
        timeout_secs: 1.0,
        ..Default::default()
    };
    let options = sdp_workflows::Options::default().with_connect_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = Workflow::start_with(&settings, PB, options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConnectFailed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", settings.port)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_dropped_claim_vanishes_within_the_ttl() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    let owner = ProcessingBlock::owner_path(PB);
    drop(wf); // as if the process died: no revoke
    let dropped = Instant::now();
    assert!(
        env.get(&owner).await.is_some(),
        "the owner key must outlive the process for up to the TTL"
    );
    eventually("the owner key to expire", || async {
        env.get(&owner).await.is_none().then_some(())
    })
    .await;
    // TTL 2 s; etcd checks expiry about every 500 ms. Generous for a loaded machine.
    assert!(
        dropped.elapsed() < Duration::from_secs(10),
        "took {:?}",
        dropped.elapsed()
    );
    // The block can be claimed again.
    Workflow::start_with(&env.settings, PB, env.options())
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
}

#[tokio::test]
async fn finish_removes_the_owner_key_at_once() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    wf.finish().await.unwrap();
    assert_eq!(env.get(&ProcessingBlock::owner_path(PB)).await, None);
}

#[tokio::test]
async fn state_updates_keep_foreign_fields_and_create_when_absent() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    let state_path = ProcessingBlock::state_path(PB);

    // Absent: created.
    wf.set_status(PbStatus::Running, None).await.unwrap();
    assert_eq!(
        env.get(&state_path).await.unwrap(),
        "{\n  \"status\": \"RUNNING\"\n}"
    );

    // An older workflow's shape plus the controller's fields: all kept.
    let foreign = json!({"state": "executing", "subarray": "1", "obsState": "SCANNING",
        "receiveAddresses": {"scan": [1, 2]}, "resources_available": false, "status": "STARTING"});
    env.put(&state_path, &foreign.to_string()).await;
    let written = wf
        .set_status(PbStatus::Failed, Some("disk full"))
        .await
        .unwrap();
    assert_eq!(written.reason.as_deref(), Some("disk full"));
    let mut want = foreign.as_object().unwrap().clone();
    want.insert("status".into(), json!("FAILED"));
    want.insert("reason".into(), json!("disk full"));
    assert_eq!(
        env.get_json(&state_path).await.unwrap(),
        Value::Object(want.clone())
    );

    wf.update_state(|s| {
        s.extra.insert("progress".into(), json!(0.5));
    })
    .await
    .unwrap();
    want.insert("progress".into(), json!(0.5));
    let text = env.get(&state_path).await.unwrap();
    assert_eq!(
        text,
        sdp_config::json::to_python_string(&Value::Object(want)),
        "python-formatted"
    );

    // A state that cannot be updated without losing data is left alone.
    env.put(&state_path, "[1, 2]").await;
    let err = wf.set_status(PbStatus::Running, None).await.unwrap_err();
    assert!(matches!(err, Error::StateUnreadable { .. }), "{err:?}");
    assert_eq!(env.get(&state_path).await.unwrap(), "[1, 2]");
    wf.finish().await.unwrap();
}

#[tokio::test]
async fn state_updates_are_conditional_on_ownership() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    wf.set_status(PbStatus::Running, None).await.unwrap();
    let owner = ProcessingBlock::owner_path(PB);
    let state = ProcessingBlock::state_path(PB);
    // Someone else takes the block over (owner deleted and re-created).
    env.delete(&owner).await;
    env.create(
        &owner,
        r#"{"command": ["other"], "hostname": "elsewhere", "pid": 1}"#,
    )
    .await;
    let err = wf.set_status(PbStatus::Finished, None).await.unwrap_err();
    assert!(matches!(err, Error::NotOwner { .. }), "{err:?}");
    assert!(err.ends_workflow());
    assert_eq!(
        env.state(PB).await.unwrap().status.as_deref(),
        Some("RUNNING")
    );

    // Owner key simply gone: refused too.
    env.delete(&owner).await;
    let err = wf
        .update_state(|s| s.status = Some("FINISHED".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no longer the owner"), "{err}");
    assert_eq!(
        env.state(PB).await.unwrap().status.as_deref(),
        Some("RUNNING")
    );
    assert!(env.get(&state).await.is_some());
}

#[tokio::test]
async fn state_updates_fail_once_the_block_is_deleted() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    env.delete(&ProcessingBlock::path(PB)).await;
    // Even before the watch reports it, the transaction's own read refuses.
    let err = wf.set_status(PbStatus::Running, None).await.unwrap_err();
    assert!(matches!(err, Error::BlockDeleted { .. }), "{err:?}");
    assert!(
        env.state(PB).await.is_none(),
        "no state written for a deleted block"
    );
}

#[tokio::test]
async fn ended_resolves_when_the_block_is_deleted() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    let mut events = wf.events();
    // Like `sdpcfg delete -R`: block, owner and state in one change.
    env.delete_tree(&ProcessingBlock::path(PB)).await;
    let ended = tokio::time::timeout(common::DEADLINE, wf.ended())
        .await
        .expect("ended in time");
    assert_eq!(ended, Ended::BlockDeleted);
    assert_eq!(events.next().await, Some(Event::BlockDeleted));
    assert_eq!(events.next().await, None);
    assert_eq!(wf.wait_for_change().await, Event::BlockDeleted);
    assert_eq!(wf.has_ended(), Some(Ended::BlockDeleted));
    wf.finish().await.unwrap();
}

#[tokio::test]
async fn ended_resolves_when_ownership_is_lost() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    env.delete(&ProcessingBlock::owner_path(PB)).await;
    let ended = tokio::time::timeout(common::DEADLINE, wf.ended())
        .await
        .expect("ended in time");
    assert_eq!(
        ended,
        Ended::OwnershipLost {
            reason: "the owner key was deleted".into()
        }
    );
    match wf.wait_for_change().await {
        Event::OwnershipLost { reason } => assert!(reason.contains("deleted"), "{reason}"),
        other => panic!("expected ownership lost, got {other:?}"),
    }
    // And writes are refused at once.
    let err = wf.set_status(PbStatus::Running, None).await.unwrap_err();
    assert!(err.ends_workflow(), "{err:?}");
}

#[tokio::test]
async fn ended_resolves_when_the_lease_cannot_be_kept_alive() {
    let mut env = Env::start().await;
    let wf = claimed(&env).await;
    env.etcd.kill();
    let ended = tokio::time::timeout(common::DEADLINE, wf.ended())
        .await
        .expect("ended in time");
    match ended {
        Ended::OwnershipLost { reason } => assert!(reason.contains("lease"), "{reason}"),
        other => panic!("expected ownership lost, got {other:?}"),
    }
}

#[tokio::test]
async fn block_changes_arrive_as_events() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    env.set_parameters(PB, json!({"x": 2})).await;
    match tokio::time::timeout(common::DEADLINE, wf.wait_for_change())
        .await
        .unwrap()
    {
        Event::BlockChanged(block) => assert_eq!(block.parameters["x"], 2),
        other => panic!("expected a change, got {other:?}"),
    }
    assert_eq!(wf.latest_block().unwrap().parameters["x"], 2);
    assert_eq!(wf.parameters()["x"], 1, "block() is the block as claimed");

    let valid = env.get(&ProcessingBlock::path(PB)).await.unwrap();
    env.put(
        &ProcessingBlock::path(PB),
        r#"{"pb_id": "realtime-20191121-0000"}"#,
    )
    .await;
    match tokio::time::timeout(common::DEADLINE, wf.wait_for_change())
        .await
        .unwrap()
    {
        Event::BlockInvalid { reason } => assert!(reason.contains("workflow"), "{reason}"),
        other => panic!("expected an invalid block, got {other:?}"),
    }
    // Still the owner: state can be written.
    wf.set_status(PbStatus::Running, None).await.unwrap();
    let mut block = ProcessingBlock::parse(&valid, Some(PB)).unwrap();
    block.parameters.insert("x".into(), json!(3));
    env.put(&ProcessingBlock::path(PB), &block.to_json()).await;
    match tokio::time::timeout(common::DEADLINE, wf.wait_for_change())
        .await
        .unwrap()
    {
        Event::BlockChanged(block) => assert_eq!(block.parameters["x"], 3),
        other => panic!("expected a change, got {other:?}"),
    }
    wf.finish().await.unwrap();
}

fn helm(id: &str, replicas: i64) -> Deployment {
    let mut values = Map::new();
    values.insert("worker.replicas".into(), json!(replicas));
    Deployment::helm(id, "dask", values)
}

#[tokio::test]
async fn deployments_are_requested_updated_listed_and_removed() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    let id = wf.deploy_id("dask");
    assert_eq!(id, format!("{PB}-dask"));

    wf.request_deployment(&helm(&id, 2)).await.unwrap();
    assert_eq!(
        env.get(&Deployment::path(&id)).await.unwrap(),
        helm(&id, 2).to_json()
    );
    let err = wf.request_deployment(&helm(&id, 2)).await.unwrap_err();
    assert!(matches!(err, Error::DeploymentExists { .. }), "{err:?}");

    assert!(
        !wf.update_deployment(&helm(&id, 2)).await.unwrap(),
        "unchanged: nothing written"
    );
    assert!(wf.update_deployment(&helm(&id, 3)).await.unwrap());
    assert_eq!(
        env.get(&Deployment::path(&id)).await.unwrap(),
        helm(&id, 3).to_json()
    );
    let err = wf
        .update_deployment(&helm(&wf.deploy_id("none"), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeploymentNotFound { .. }), "{err:?}");

    // Not this workflow's to manage: other blocks' and the controller's.
    for foreign in ["other-dask", PB, &format!("{PB}-workflow")] {
        let err = wf.request_deployment(&helm(foreign, 1)).await.unwrap_err();
        assert!(
            matches!(err, Error::ForeignDeployment { .. }),
            "{foreign}: {err:?}"
        );
    }

    // Listing: mine only, not the workflow's own, not those of block `<PB>-x`.
    env.create(
        &Deployment::path(&format!("{PB}-workflow")),
        &helm(&format!("{PB}-workflow"), 1).to_json(),
    )
    .await;
    env.create_block(&format!("{PB}-x"), WF, json!({})).await;
    env.create(
        &Deployment::path(&format!("{PB}-x-dask")),
        &helm(&format!("{PB}-x-dask"), 1).to_json(),
    )
    .await;
    env.create(&Deployment::path(&format!("{PB}-junk")), "not json")
        .await;
    let mine = wf.deployments().await.unwrap();
    let ids: Vec<&String> = mine.keys().collect();
    assert_eq!(ids, [&id, &format!("{PB}-junk")]);
    assert_eq!(mine[&id].as_ref().unwrap(), &helm(&id, 3));
    assert!(mine[&format!("{PB}-junk")].is_err());

    // Removal takes the deployer's state key with it.
    env.create(&Deployment::state_path(&id), r#"{"status": "DEPLOYED"}"#)
        .await;
    assert!(wf.remove_deployment(&id).await.unwrap());
    assert!(!wf.remove_deployment(&id).await.unwrap());
    assert_eq!(env.get(&Deployment::path(&id)).await, None);
    assert_eq!(env.get(&Deployment::state_path(&id)).await, None);
    assert!(
        env.get(&Deployment::path(&format!("{PB}-workflow")))
            .await
            .is_some()
    );
    wf.finish().await.unwrap();
}

#[tokio::test]
async fn deployments_need_ownership_but_clean_up_after_deletion_is_allowed() {
    let env = Env::start().await;
    let wf = claimed(&env).await;
    let id = wf.deploy_id("dask");
    wf.request_deployment(&helm(&id, 2)).await.unwrap();

    // Block deleted: no new deployments, but removing ours is fine.
    env.delete(&ProcessingBlock::path(PB)).await;
    let err = wf
        .request_deployment(&helm(&wf.deploy_id("more"), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BlockDeleted { .. }), "{err:?}");
    assert_eq!(
        env.get(&Deployment::path(&wf.deploy_id("more"))).await,
        None
    );
    assert!(wf.remove_deployment(&id).await.unwrap());
    wf.finish().await.unwrap();

    // Someone else owns the block: its deployments are not ours to remove.
    env.create_block("pb-2", WF, json!({})).await;
    let wf = Workflow::start_with(&env.settings, "pb-2", env.options())
        .await
        .unwrap();
    wf.request_deployment(&helm("pb-2-dask", 1)).await.unwrap();
    let owner = ProcessingBlock::owner_path("pb-2");
    env.delete(&owner).await;
    env.create(
        &owner,
        r#"{"command": ["other"], "hostname": "h", "pid": 7}"#,
    )
    .await;
    let err = wf.remove_deployment("pb-2-dask").await.unwrap_err();
    assert!(matches!(err, Error::NotOwner { .. }), "{err:?}");
    assert!(env.get(&Deployment::path("pb-2-dask")).await.is_some());
    let err = wf
        .update_deployment(&helm("pb-2-dask", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOwner { .. }), "{err:?}");
}
