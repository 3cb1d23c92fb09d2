//! Batch processing blocks and dependencies, with the controller and `teststate` as
//! real processes: a block waits while the block it depends on runs, starts when that
//! one FINISHED, and fails (saying why) when that one FAILED.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sdp_e2e::expected;
use sdp_e2e::system::{Options, System, Target, status_of};
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(60);
const TESTSTATE_IMAGE: &str = "sdp/workflow-teststate:0.1.0";

/// Only the controller: dependencies are its business, no release is needed.
async fn controller_only() -> Result<System> {
    System::start(Options {
        deployer: false,
        ..Options::new(Target::Render)
    })
    .await
}

/// `sdpcfg process batch:teststate:0.1.0 <parameters>`; the new block's ID.
fn process_teststate(system: &System, parameters: &str) -> Result<String> {
    let out = system.sdpcfg(&["process", "batch:teststate:0.1.0", parameters])?;
    let id = out
        .strip_prefix("OK, pb_id = ")
        .and_then(|s| s.strip_suffix('\n'))
        .with_context(|| format!("sdpcfg process printed {out:?}"))?;
    ensure!(id.starts_with("batch-"), "unexpected pb_id {id}");
    Ok(id.to_string())
}

/// `sdpcfg create /pb/<id> …` of a block in the 2021 shape (`id`, no
/// `scan_parameters`) depending on `on`.
fn create_dependent(system: &System, id: &str, on: &str) -> Result<()> {
    let block = json!({
        "id": id,
        "sbi_id": null,
        "workflow": {"type": "batch", "id": "teststate", "version": "0.1.0"},
        "parameters": {"duration": 0},
        "dependencies": [{"pb_id": on, "type": ["x"]}],
    });
    let out = system.sdpcfg(&["create", &format!("/pb/{id}"), &block.to_string()])?;
    ensure!(out == "OK\n", "sdpcfg create printed {out:?}");
    Ok(())
}

fn state_json(text: &str) -> Result<Value> {
    Ok(serde_json::from_str(text)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_waits_for_its_dependency_and_starts_when_it_finished() -> Result<()> {
    let system = controller_only().await?;
    let result = async {
        let a = process_teststate(&system, r#"{"duration": 1}"#)?;
        system
            .wait_status(&format!("/pb/{a}/state"), "STARTING", STEP)
            .await?;
        let b = "pb-e2e-20260101-00001";
        create_dependent(&system, b, &a)?;
        let waiting = system
            .wait_status(&format!("/pb/{b}/state"), "WAITING", STEP)
            .await?;
        let reason = state_json(&waiting)?["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ensure!(
            reason.contains(&a),
            "the WAITING reason should name {a}: {waiting}"
        );

        let mut teststate = system.workflow("teststate", &a, &[])?;
        system
            .wait_status(&format!("/pb/{a}/state"), "RUNNING", STEP)
            .await?;
        let b_state = system.get(&format!("/pb/{b}/state")).await?;
        ensure!(
            b_state.as_deref().and_then(status_of).as_deref() == Some("WAITING"),
            "{b} must wait while {a} runs: {b_state:?}"
        );
        ensure!(
            system
                .get(&format!("/deploy/{b}-workflow"))
                .await?
                .is_none(),
            "{b} deployed while {a} runs"
        );

        system
            .wait_status(&format!("/pb/{a}/state"), "FINISHED", STEP)
            .await?;
        let status = teststate.wait_exit(STEP).await?;
        ensure!(status.success(), "teststate {a} exited with {status}");

        let starting = system
            .wait_status(&format!("/pb/{b}/state"), "STARTING", STEP)
            .await?;
        ensure!(
            expected::is_starting(&starting),
            "{b}'s state is {starting}, not STARTING with its since in the Python layout"
        );
        let deployment = system
            .wait_value(&format!("/deploy/{b}-workflow"), STEP, |_| true)
            .await?;
        let wanted = expected::workflow_deployment(
            b,
            "127.0.0.1",
            system.etcd.port(),
            system.namespace(),
            TESTSTATE_IMAGE,
        )?;
        ensure!(
            deployment == wanted,
            "/deploy/{b}-workflow is\n{deployment}\nnot\n{wanted}"
        );

        // The order, as the watches saw it.
        let h = &system.history;
        let a_statuses = h.statuses(&format!("/pb/{a}/state"));
        ensure!(
            a_statuses == ["STARTING", "RUNNING", "FINISHED"],
            "{a} went through {a_statuses:?}"
        );
        let b_statuses = h.statuses(&format!("/pb/{b}/state"));
        ensure!(
            b_statuses == ["WAITING", "STARTING"],
            "{b} went through {b_statuses:?}"
        );
        let revision = |path: String, status: &str| {
            h.of(&path)
                .into_iter()
                .find(|c| c.value.as_deref().and_then(status_of).as_deref() == Some(status))
                .map(|c| c.revision)
        };
        ensure!(
            revision(format!("/pb/{a}/state"), "FINISHED")
                < revision(format!("/pb/{b}/state"), "STARTING"),
            "{b} started before {a} finished"
        );
        system.ensure_daemons_running()
    }
    .await;
    system.report(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_fails_when_its_dependency_failed_and_names_it() -> Result<()> {
    let system = controller_only().await?;
    let result = async {
        let a = process_teststate(&system, r#"{"fail": true}"#)?;
        system
            .wait_status(&format!("/pb/{a}/state"), "STARTING", STEP)
            .await?;
        let b = "pb-e2e-20260101-00002";
        create_dependent(&system, b, &a)?;
        system
            .wait_status(&format!("/pb/{b}/state"), "WAITING", STEP)
            .await?;

        let mut teststate = system.workflow("teststate", &a, &[])?;
        let failed = system
            .wait_status(&format!("/pb/{a}/state"), "FAILED", STEP)
            .await?;
        let status = teststate.wait_exit(STEP).await?;
        ensure!(status.success(), "teststate {a} exited with {status}");
        ensure!(
            state_json(&failed)?["reason"]
                .as_str()
                .is_some_and(|r| r.contains("fail")),
            "{a}'s FAILED state should give the reason: {failed}"
        );

        let text = system
            .wait_status(&format!("/pb/{b}/state"), "FAILED", STEP)
            .await?;
        let reason = state_json(&text)?["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ensure!(
            reason.contains(&a) && reason.contains("FAILED"),
            "{b}'s reason should name {a} and that it FAILED: {text}"
        );
        let h = &system.history;
        ensure!(
            h.of(&format!("/deploy/{b}-workflow")).is_empty(),
            "{b} must never be deployed"
        );
        let b_statuses = h.statuses(&format!("/pb/{b}/state"));
        ensure!(
            b_statuses == ["WAITING", "FAILED"],
            "{b} went through {b_statuses:?}"
        );
        let a_statuses = h.statuses(&format!("/pb/{a}/state"));
        ensure!(
            a_statuses == ["STARTING", "RUNNING", "FAILED"],
            "{a} went through {a_statuses:?}"
        );
        system.ensure_daemons_running()
    }
    .await;
    system.report(result)
}
