//! The README's walkthrough as one function: `sdpcfg process realtime:testdask:0.1.0`,
//! the controller's workflow deployment, the deployer's release, `testdask <pb_id>` as
//! a local process with its owner key, state and Dask deployment, then
//! `sdpcfg delete -R /pb/<pb_id>` and everything undone. What "a release" is depends on
//! the deployer's target; [`crate::releases`] checks it.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::binaries::binary;
use crate::expected::{self, TESTDASK_IMAGE};
use crate::releases;
use crate::system::{System, status_of};

/// How long each step may take: generous, the machine may be loaded.
pub const STEP: Duration = Duration::from_secs(60);

/// What differs between targets in the walkthrough.
#[derive(Clone, Debug)]
pub struct Expect {
    /// `env.SDP_CONFIG_HOST` the controller gives workflows.
    pub config_host: String,
    /// How long `testdask` may wait for the scheduler (`SDP_DASK_TIMEOUT`).
    pub dask_timeout: Duration,
    /// `SDP_DASK_SCHEDULER` for `testdask`, if any.
    pub dask_scheduler: Option<String>,
    /// How the `dask` field of the state starts once the wait is over
    /// (`"unreachable: "` without a cluster, `"connected"` with one).
    pub dask_outcome: String,
    /// How long a release may take to be installed or removed.
    pub release_limit: Duration,
}

impl Expect {
    /// Render target and stand-in helm: nothing to connect to, so testdask gives up after
    /// 2 s and says so.
    pub fn without_cluster() -> Expect {
        Expect {
            config_host: "127.0.0.1".into(),
            dask_timeout: Duration::from_secs(2),
            dask_scheduler: None,
            dask_outcome: "unreachable: ".into(),
            release_limit: STEP,
        }
    }
}

/// Runs the walkthrough against a started system; returns the processing block ID.
///
/// # Errors
/// The first thing that differs from the walkthrough.
pub async fn run(system: &System, expect: &Expect) -> Result<String> {
    let pb_id = create_block(system)?;
    check_block(system, &pb_id).await?;
    let workflow_id = format!("{pb_id}-workflow");
    let dask_id = format!("{pb_id}-dask");

    // The controller requests the workflow deployment and marks the block STARTING,
    // in one transaction: once the deployment is there, so is the state.
    let deployment = system
        .wait_value(&format!("/deploy/{workflow_id}"), STEP, |_| true)
        .await?;
    let wanted = expected::workflow_deployment(
        &pb_id,
        &expect.config_host,
        system.etcd.port(),
        system.namespace(),
        TESTDASK_IMAGE,
    )?;
    ensure!(
        deployment == wanted,
        "/deploy/{workflow_id} is\n{deployment}\nnot\n{wanted}"
    );
    let state = system.get(&format!("/pb/{pb_id}/state")).await?;
    ensure!(
        state.as_deref().is_some_and(expected::is_starting),
        "/pb/{pb_id}/state is {state:?}, not STARTING with its since in the Python layout"
    );

    // The deployer turns it into a release.
    let deployed = wait_deployed(system, &workflow_id, expect.release_limit).await?;
    check_deployment_state(&deployed, &workflow_id, system.namespace())?;
    releases::check_workflow(system, &pb_id, &expect.config_host).await?;

    // The workflow, run the way its pod would run it.
    let mut env = vec![(
        "SDP_DASK_TIMEOUT".to_string(),
        expect.dask_timeout.as_secs().to_string(),
    )];
    if let Some(addr) = &expect.dask_scheduler {
        env.push(("SDP_DASK_SCHEDULER".into(), addr.clone()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut testdask = system.workflow("testdask", &pb_id, &env)?;
    let owner = system
        .wait_value(&format!("/pb/{pb_id}/owner"), STEP, |_| true)
        .await?;
    check_owner(&owner, &pb_id, testdask.pid())?;

    let outcome_limit = STEP + expect.dask_timeout;
    let state = system
        .wait_value(&format!("/pb/{pb_id}/state"), outcome_limit, |v| {
            dask_field(v).is_some_and(|d| !d.starts_with("waiting"))
        })
        .await?;
    check_running_state(&state, &pb_id, system.namespace(), expect)?;

    let dask = system.get(&format!("/deploy/{dask_id}")).await?;
    let wanted = expected::dask_deployment(&pb_id)?;
    ensure!(
        dask.as_deref() == Some(wanted.as_str()),
        "/deploy/{dask_id} is {dask:?}, not the seed's\n{wanted}"
    );
    let deployed = wait_deployed(system, &dask_id, expect.release_limit).await?;
    check_deployment_state(&deployed, &dask_id, system.namespace())?;
    releases::check_dask(system, &pb_id).await?;
    testdask
        .ensure_running()
        .context("testdask must idle until its block is deleted")?;

    // Delete the block: everything is undone.
    let out = system.sdpcfg(&["delete", "-R", &format!("/pb/{pb_id}")])?;
    let wanted = format!("/pb/{pb_id}\n/pb/{pb_id}/owner\n/pb/{pb_id}/state\nOK\n");
    ensure!(
        out == wanted,
        "sdpcfg delete -R printed {out:?}, not {wanted:?}"
    );
    let status = testdask.wait_exit(STEP).await?;
    ensure!(
        status.success(),
        "testdask exited with {status} after its block was deleted"
    );
    for id in [&workflow_id, &dask_id] {
        system.wait_absent(&format!("/deploy/{id}"), STEP).await?;
        system
            .wait_absent(&format!("/deploy/{id}/state"), STEP)
            .await?;
    }
    releases::wait_removed(system, &pb_id, expect.release_limit).await?;
    check_nothing_left(system).await?;
    check_history(system, &pb_id).await?;
    Ok(pb_id)
}

/// `sdpcfg process realtime:testdask:0.1.0` → `OK, pb_id = realtime-<today>-0000`; the
/// block is exactly the Python tool's.
fn create_block(system: &System) -> Result<String> {
    let before = today();
    let out = system.sdpcfg(&["process", "realtime:testdask:0.1.0"])?;
    let after = today();
    let pb_id = out
        .strip_prefix("OK, pb_id = ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .with_context(|| format!("sdpcfg process printed {out:?}"))?
        .to_string();
    ensure!(
        [&before, &after]
            .iter()
            .any(|day| pb_id == format!("realtime-{day}-0000")),
        "pb_id {pb_id} is not realtime-<today's local date>-0000 (today: {before})"
    );
    Ok(pb_id)
}

fn today() -> String {
    chrono::Local::now().format("%Y%m%d").to_string()
}

/// Checks `/pb/<pb_id>` right after `sdpcfg process`.
///
/// # Errors
/// The block is not byte for byte what the Python tool writes.
pub async fn check_block(system: &System, pb_id: &str) -> Result<()> {
    let block = system.get(&format!("/pb/{pb_id}")).await?;
    let wanted = expected::testdask_block(pb_id)?;
    ensure!(
        block.as_deref() == Some(wanted.as_str()),
        "/pb/{pb_id} is {block:?}, not\n{wanted}"
    );
    Ok(())
}

/// Waits for `/deploy/<id>/state` DEPLOYED, failing at once on FAILED.
async fn wait_deployed(system: &System, id: &str, limit: Duration) -> Result<Value> {
    let path = format!("/deploy/{id}/state");
    let text = system
        .wait_value(&path, limit, |v| {
            matches!(status_of(v).as_deref(), Some("DEPLOYED" | "FAILED"))
        })
        .await?;
    let state: Value = serde_json::from_str(&text)?;
    if state["status"] != "DEPLOYED" {
        bail!("{path} is FAILED: {text}");
    }
    Ok(state)
}

fn check_deployment_state(state: &Value, id: &str, namespace: &str) -> Result<()> {
    ensure!(
        state["release"] == id && state["namespace"] == namespace && state["revision"] == 1,
        "deployment state of {id} should name release {id}, namespace {namespace}, revision 1: {state}"
    );
    Ok(())
}

/// The Python owner shape: exactly `command` (this process's argv), `hostname`, `pid`,
/// formatted as the Python tools format it.
fn check_owner(text: &str, pb_id: &str, pid: u32) -> Result<()> {
    let owner: Value = serde_json::from_str(text)?;
    let program = binary("testdask")?.display().to_string();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let wanted = json!({"command": [program, pb_id], "hostname": hostname, "pid": pid});
    ensure!(owner == wanted, "owner is {owner}, not {wanted}");
    ensure!(
        sdp_config::json::to_python_string(&owner) == text,
        "owner is not formatted as the Python tools format it:\n{text}"
    );
    Ok(())
}

fn dask_field(state: &str) -> Option<String> {
    serde_json::from_str::<Value>(state).ok()?["dask"]
        .as_str()
        .map(String::from)
}

/// RUNNING, the seed's `resources_available`, the controller's `since` (kept by the
/// workflow), the scheduler address and the outcome of waiting for it.
fn check_running_state(text: &str, pb_id: &str, namespace: &str, expect: &Expect) -> Result<()> {
    let state: Value = serde_json::from_str(text)?;
    let scheduler = match &expect.dask_scheduler {
        Some(addr) => addr.clone(),
        None => format!("{pb_id}-dask-scheduler.{namespace}:8786"),
    };
    let dask = state["dask"].as_str().unwrap_or_default();
    ensure!(
        state["status"] == "RUNNING"
            && state["dask_scheduler"] == scheduler.as_str()
            && dask.starts_with(&expect.dask_outcome),
        "state should be RUNNING with dask_scheduler {scheduler} and dask {:?}…: {text}",
        expect.dask_outcome
    );
    let keys: Vec<&str> = state
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    ensure!(
        keys == [
            "dask",
            "dask_scheduler",
            "resources_available",
            "since",
            "status"
        ],
        "unexpected fields in the state: {text}"
    );
    ensure!(
        sdp_config::json::to_python_string(&state) == text,
        "state not formatted as the Python tools format it:\n{text}"
    );
    Ok(())
}

/// No key anywhere, by the library and by `sdpcfg ls -R /`, also a moment later (a
/// late write by a daemon would show up).
async fn check_nothing_left(system: &System) -> Result<()> {
    for _ in 0..2 {
        let keys = system.all_keys().await?;
        ensure!(
            keys.is_empty(),
            "keys left after the block was deleted: {keys:?}"
        );
        let out = system.sdpcfg(&["ls", "-R", "/"])?;
        ensure!(
            out == "Keys with / prefix: \n",
            "sdpcfg ls -R / printed {out:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    system.ensure_daemons_running()
}

/// The order of events as the watches saw them.
async fn check_history(system: &System, pb_id: &str) -> Result<()> {
    let h = &system.history;
    let limit = Duration::from_secs(10);
    let paths = [
        format!("/pb/{pb_id}"),
        format!("/pb/{pb_id}/state"),
        format!("/pb/{pb_id}/owner"),
        format!("/deploy/{pb_id}-workflow"),
        format!("/deploy/{pb_id}-workflow/state"),
        format!("/deploy/{pb_id}-dask"),
        format!("/deploy/{pb_id}-dask/state"),
    ];
    for path in &paths {
        h.wait_deleted(path, limit).await?;
    }
    let [
        block,
        state,
        owner,
        workflow,
        workflow_state,
        dask,
        dask_state,
    ] = &paths;
    let statuses = h.statuses(state);
    ensure!(
        statuses == ["STARTING", "RUNNING", "<deleted>"],
        "{state} went through {statuses:?}, not STARTING → RUNNING → deleted"
    );
    // Written once, never rewritten, deleted once.
    for path in [block, owner, workflow, dask] {
        let changes = h.of(path);
        ensure!(
            changes.len() == 2 && changes[0].value.is_some() && changes[1].value.is_none(),
            "{path} should be created once and deleted once: {changes:?}"
        );
    }
    for path in [workflow_state, dask_state] {
        let statuses = h.statuses(path);
        ensure!(
            statuses.ends_with(&["DEPLOYED".to_string(), "<deleted>".to_string()])
                && !statuses.iter().any(|s| s == "FAILED"),
            "{path} went through {statuses:?}"
        );
    }
    // The block was STARTING before its workflow ran, and its deployment existed first.
    let first = |path: &str| h.of(path).first().map(|c| c.revision);
    ensure!(
        first(workflow) <= first(state) && first(state) < first(owner),
        "the workflow deployment and STARTING must come before the workflow's claim"
    );
    Ok(())
}
