//! What became of a release in Kubernetes reaches its state: the real `sdp-deployer`
//! (stand-in helm) follows pods through the real `kube` client against the Kubernetes API
//! stand-in, and the `workload` object of `/deploy/<id>/state` says what a user needs.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use sdp_testing::kube::{KubeApi, pods};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

/// The release the seed's workflow deployment maps to.
fn release() -> String {
    sdp_deployer::naming::release_name("", WORKFLOW_ID)
}

const IMAGE: &str = "sdp/workflow-testdask:0.1.0";

/// A pod of `release` with `status`.
fn pod(name: &str, release: &str, status: Value) -> Value {
    pods::pod(name, NS, release, IMAGE, status)
}

fn running(ready: bool) -> Value {
    pods::running(IMAGE, ready)
}

fn image_pull_error() -> Value {
    pods::image_pull_error(IMAGE)
}

fn crash_loop(restarts: u32) -> Value {
    pods::crash_loop(IMAGE, restarts, 2)
}

/// The workload object of `id` once `check` accepts it.
async fn wait_workload(
    h: &Harness,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    eventually(LIMIT, what, || async {
        Ok(h.state(id)
            .await?
            .and_then(|s| s.extra.get("workload").cloned())
            .filter(|w| check(w)))
    })
    .await
}

fn phase_is(phase: &'static str) -> impl Fn(&Value) -> bool {
    move |w| w["phase"] == phase
}

struct Cluster {
    api: KubeApi,
    kubeconfig: String,
}

fn cluster(h: &Harness) -> Result<Cluster> {
    let api = KubeApi::start()?;
    let kubeconfig = api
        .write_kubeconfig(h.work.path())?
        .to_str()
        .context("kubeconfig path")?
        .to_string();
    Ok(Cluster { api, kubeconfig })
}

#[tokio::test]
async fn pod_phases_reach_the_state_and_foreign_pods_never_do() -> Result<()> {
    let h = Harness::start().await?;
    let c = cluster(&h)?;
    let d = h.deployer(&[("KUBECONFIG", &c.kubeconfig)])?;
    let result = async {
        let rel = release();
        // Pods of no release of ours, before and after: never reported.
        c.api
            .put_object(pod("stranger-1", "someone-else", running(true)))?;
        c.api.put_object(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "unlabelled", "namespace": NS}, "status": {"phase": "Failed"}}))?;
        h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
        h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        let w = wait_workload(&h, WORKFLOW_ID, "PENDING, no pods", phase_is("PENDING")).await?;
        assert_eq!(w["message"], "no pods yet");
        c.api.put_object(pod(&rel, &rel, running(false)))?;
        let w = wait_workload(&h, WORKFLOW_ID, "pod not ready", |w| {
            w["pods"].as_array().is_some_and(|p| p.len() == 1)
        })
        .await?;
        assert_eq!(w["phase"], "PENDING");
        assert_eq!(w["message"], format!("pod {rel}: not ready yet"));
        c.api.put_object(pod(&rel, &rel, running(true)))?;
        let w = wait_workload(&h, WORKFLOW_ID, "RUNNING", phase_is("RUNNING")).await?;
        assert_eq!(
            w["pods"],
            json!([{"name": rel, "phase": "Running", "ready": true, "restarts": 0}])
        );
        c.api
            .put_object(pod("stranger-2", "someone-else", image_pull_error()))?;
        c.api.put_object(pod(&rel, &rel, pods::succeeded()))?;
        let w = wait_workload(&h, WORKFLOW_ID, "FINISHED", phase_is("FINISHED")).await?;
        assert_eq!(w["pods"].as_array().map(Vec::len), Some(1), "{w}");
        ensure!(
            w["updated"].as_str().is_some_and(|u| u.ends_with('Z')),
            "{w}"
        );
        // The release fields are as the helm work left them.
        let st = h.state(WORKFLOW_ID).await?.context("state")?;
        assert_eq!(st.status.as_deref(), Some("DEPLOYED"));
        assert_eq!(st.revision, Some(1));
        // Deleting the pod: no pods again.
        c.api.delete_object("Pod", NS, &rel);
        wait_workload(
            &h,
            WORKFLOW_ID,
            "PENDING after deletion",
            phase_is("PENDING"),
        )
        .await?;
        ensure!(
            c.api.requests("watch", "Pod") >= 1,
            "the deployer watched pods: {:?}",
            c.api.request_counts()
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn image_pull_errors_crash_loops_and_unschedulable_pods_fail_with_their_cause() -> Result<()>
{
    let h = Harness::start().await?;
    let c = cluster(&h)?;
    let d = h.deployer(&[
        ("KUBECONFIG", &c.kubeconfig),
        ("SDP_WORKLOAD_MAX_RESTARTS", "3"),
        ("SDP_WORKLOAD_UNSCHEDULABLE", "2"),
    ])?;
    let result = async {
        let rel = release();
        h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
        h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        c.api.put_object(pod(&rel, &rel, image_pull_error()))?;
        let w = wait_workload(&h, WORKFLOW_ID, "image pull FAILED", phase_is("FAILED")).await?;
        assert_eq!(
            w["message"],
            format!("pod {rel}: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)")
        );
        assert_eq!(w["pods"][0]["reason"], "ImagePullBackOff");
        assert_eq!(
            w["pods"][0]["message"],
            "Back-off pulling image \"sdp/workflow-testdask:0.1.0\""
        );

        // A crash loop is PENDING below the restart limit, FAILED at it.
        c.api.put_object(pod(&rel, &rel, crash_loop(2)))?;
        let w = wait_workload(&h, WORKFLOW_ID, "crash loop below the limit", phase_is("PENDING")).await?;
        ensure!(w["message"].as_str().is_some_and(|m| m.contains("keeps crashing")), "{w}");
        c.api.put_object(pod(&rel, &rel, crash_loop(3)))?;
        let w = wait_workload(&h, WORKFLOW_ID, "crash loop FAILED", phase_is("FAILED")).await?;
        assert_eq!(
            w["message"],
            format!("pod {rel}: container workflow keeps crashing (CrashLoopBackOff, 3 restarts, last exit code 2)")
        );
        assert_eq!(w["pods"][0]["exit_code"], 2);

        // Unschedulable: PENDING with the scheduler's words, FAILED once past the limit
        // with nothing else happening (the deployer looks again on its own).
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        c.api.put_object(pod(&rel, &rel, json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.", "lastTransitionTime": now}]})))?;
        let w = wait_workload(&h, WORKFLOW_ID, "unschedulable, not yet failed", |w| {
            w["message"].as_str().is_some_and(|m| m.contains("cannot be scheduled yet"))
        })
        .await?;
        assert_eq!(w["phase"], "PENDING");
        assert_eq!(w["pods"][0]["reason"], "Unschedulable");
        let w = wait_workload(&h, WORKFLOW_ID, "unschedulable FAILED", |w| {
            w["message"].as_str().is_some_and(|m| m.contains("cannot be scheduled for"))
        })
        .await?;
        assert_eq!(w["phase"], "FAILED");
        ensure!(
            w["message"].as_str().is_some_and(|m| m
                .ends_with("(Unschedulable): 0/3 nodes are available: 3 Insufficient cpu.")),
            "{w}"
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_dropped_or_expired_watch_misses_no_change_and_bursts_are_coalesced() -> Result<()> {
    let h = Harness::start().await?;
    let c = cluster(&h)?;
    let d = h.deployer(&[("KUBECONFIG", &c.kubeconfig)])?;
    let result = async {
        let rel = release();
        h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
        h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        c.api.put_object(pod(&rel, &rel, running(true)))?;
        wait_workload(&h, WORKFLOW_ID, "RUNNING", phase_is("RUNNING")).await?;

        // The watch is cut, the pod changes meanwhile and the history is compacted: the
        // deployer's next watch gets 410 Gone and must list again.
        c.api.drop_watches();
        c.api.put_object(pod(&rel, &rel, pods::succeeded()))?;
        c.api.compact();
        wait_workload(
            &h,
            WORKFLOW_ID,
            "FINISHED after a lost watch",
            phase_is("FINISHED"),
        )
        .await?;
        ensure!(
            c.api.requests("list", "Pod") >= 2,
            "listed again: {:?}",
            c.api.request_counts()
        );

        // A burst of 50 changes to 5 pods: far fewer state writes than events.
        let writes_before = d.metric("sdp_deployer_workload_writes_total", "")?;
        let events_before = d.metric("sdp_deployer_pod_events_total", "")?;
        for round in 0..10 {
            for i in 0..5 {
                let status = if round == 9 {
                    running(true)
                } else {
                    running(round % 2 == 0)
                };
                c.api.put_object(pod(&format!("{rel}-{i}"), &rel, status))?;
            }
        }
        c.api.delete_object("Pod", NS, &rel);
        let w = wait_workload(&h, WORKFLOW_ID, "five running pods", |w| {
            w["phase"] == "RUNNING" && w["pods"].as_array().is_some_and(|p| p.len() == 5)
        })
        .await?;
        assert_eq!(w["pods"][4]["name"], format!("{rel}-4"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = d.metric("sdp_deployer_pod_events_total", "")? - events_before;
        let writes = d.metric("sdp_deployer_workload_writes_total", "")? - writes_before;
        ensure!(
            events >= 40.0,
            "the burst reached the deployer: {events} pod events"
        );
        ensure!(
            writes >= 1.0 && writes <= events / 2.0,
            "{writes} writes for {events} pod events"
        );
        // Nothing changes: nothing is written.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = d.metric("sdp_deployer_workload_writes_total", "")? - writes_before;
        assert_eq!(again, writes);
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn deleting_the_state_retries_from_attempt_one_by_installing_afresh() -> Result<()> {
    let h = Harness::start().await?;
    let c = cluster(&h)?;
    let d = h.deployer(&[("KUBECONFIG", &c.kubeconfig)])?;
    let result = async {
        let rel = release();
        h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
        h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        c.api.put_object(pod(&rel, &rel, image_pull_error()))?;
        wait_workload(&h, WORKFLOW_ID, "FAILED", phase_is("FAILED")).await?;
        let installs = h.calls_on("upgrade", &rel).len();
        h.delete(&format!("/deploy/{WORKFLOW_ID}/state")).await?;
        let st = eventually(LIMIT, "installed afresh", || async {
            Ok(h.state(WORKFLOW_ID).await?.filter(|s| {
                s.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("installed afresh"))
            }))
        })
        .await?;
        assert_eq!(st.status.as_deref(), Some("DEPLOYED"));
        assert_eq!(st.attempts, Some(1));
        assert_eq!(h.calls_on("uninstall", &rel).len(), 1, "uninstalled once");
        assert_eq!(
            h.calls_on("upgrade", &rel).len(),
            installs + 1,
            "installed once more"
        );
        // The old pod is still there (the stand-in runs no controllers): it is reported
        // again in the fresh state.
        wait_workload(&h, WORKFLOW_ID, "workload after retry", phase_is("FAILED")).await?;
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn the_render_target_says_nothing_runs() -> Result<()> {
    let h = Harness::start().await?;
    let out = h.work.path().join("out");
    let d = h.deployer(&[
        ("SDP_HELM_TARGET", "render"),
        ("SDP_RENDER_DIR", out.to_str().unwrap_or("")),
        ("SDP_HELM", tools_bin().join("helm").to_str().unwrap_or("")),
        ("HOME", h.work.path().to_str().unwrap_or("")),
    ])?;
    let result = async {
        h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
        h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        let w = wait_workload(&h, WORKFLOW_ID, "NONE", phase_is("NONE")).await?;
        ensure!(
            w["message"]
                .as_str()
                .is_some_and(|m| m.contains("nothing runs")),
            "{w}"
        );
        assert_eq!(w["pods"], json!([]));
        Ok(())
    }
    .await;
    with_log(result, &d)
}
