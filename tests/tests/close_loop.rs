//! The loop closed, end to end: the processing controller and the Helm deployer as real
//! processes (stand-in helm), the deployer watching pods through the real `kube` client
//! against the Kubernetes API stand-in, which the tests drive as the kubelet would. Each
//! scenario asserts the final keys a user reads: `/pb/<id>/state` and
//! `/deploy/<id>/state`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use sdp_e2e::system::{Options, System, Target};
use sdp_testing::kube::{KubeApi, pods};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);
const IMAGE: &str = "sdp/workflow-testdask:0.1.0";

struct Loop {
    api: KubeApi,
    system: System,
    _dir: tempfile::TempDir,
}

async fn start(owner_grace: &str) -> Result<Loop> {
    let api = KubeApi::start()?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = api.write_kubeconfig(dir.path())?;
    let mut opts = Options::new(Target::StandIn { kubeconfig });
    opts.controller_env = vec![("SDP_OWNER_GRACE".into(), owner_grace.into())];
    opts.deployer_env = vec![("SDP_WORKLOAD_MAX_RESTARTS".into(), "3".into())];
    let system = System::start(opts).await?;
    Ok(Loop {
        api,
        system,
        _dir: dir,
    })
}

impl Loop {
    /// `sdpcfg process realtime:testdask:0.1.0`, deployed: the block's ID.
    async fn block(&self) -> Result<String> {
        let out = self
            .system
            .sdpcfg(&["process", "realtime:testdask:0.1.0"])?;
        let pb_id = out
            .trim()
            .strip_prefix("OK, pb_id = ")
            .with_context(|| format!("sdpcfg process printed {out:?}"))?
            .to_string();
        self.system
            .wait_status(
                &format!("/deploy/{pb_id}-workflow/state"),
                "DEPLOYED",
                LIMIT,
            )
            .await?;
        Ok(pb_id)
    }

    /// The workflow pod of `pb_id`, as the kubelet reports it.
    fn workflow_pod(&self, pb_id: &str, status: Value) -> Result<()> {
        let release = format!("{pb_id}-workflow");
        self.api.put_object(pods::pod(
            &release,
            self.system.namespace(),
            &release,
            IMAGE,
            status,
        ))?;
        Ok(())
    }

    async fn json(&self, path: &str) -> Result<Option<Value>> {
        Ok(match self.system.get(path).await? {
            Some(text) => Some(serde_json::from_str(&text)?),
            None => None,
        })
    }

    /// The value at `path` once `check` accepts it.
    async fn wait(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
        let start = std::time::Instant::now();
        loop {
            if let Some(v) = self.json(path).await?
                && check(&v)
            {
                return Ok(v);
            }
            ensure!(
                start.elapsed() < LIMIT,
                "timed out waiting for {what} at {path}: {:?}",
                self.json(path).await?
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn running() -> Value {
    pods::running(IMAGE, true)
}

fn image_pull_error() -> Value {
    pods::image_pull_error(IMAGE)
}

fn restarting() -> Value {
    pods::restarting(IMAGE, 137)
}

fn killed() -> Value {
    pods::failed(IMAGE, 137)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_block_and_a_retry_starts_it_again() -> Result<()>
{
    let l = start("120").await?;
    let result = async {
        let pb_id = l.block().await?;
        let deploy_id = format!("{pb_id}-workflow");
        let state_path = format!("/pb/{pb_id}/state");
        l.workflow_pod(&pb_id, image_pull_error())?;
        let st = l
            .wait(&state_path, "block FAILED", |v| v["status"] == "FAILED")
            .await?;
        assert_eq!(
            st["reason"],
            format!(
                "workflow pod {deploy_id}: image \"{IMAGE}\" cannot be pulled (ImagePullBackOff)"
            )
        );
        assert_eq!(st["failed_deployment"], deploy_id.as_str());
        ensure!(st["since"].is_string(), "the block keeps its since: {st}");
        let dst = l
            .json(&format!("/deploy/{deploy_id}/state"))
            .await?
            .context("deploy state")?;
        assert_eq!(dst["status"], "DEPLOYED");
        assert_eq!(dst["workload"]["phase"], "FAILED");
        eprintln!(
            "an image that cannot be pulled, /pb/{pb_id}/state:\n{}\n/deploy/{deploy_id}/state:\n{}",
            serde_json::to_string_pretty(&st)?,
            serde_json::to_string_pretty(&dst)?
        );

        // The operator fixes the image (here: the kubelet will pull it) and retries. In a
        // cluster the retry's `helm uninstall` deletes the failing pod; the stand-ins do
        // not connect helm to pods, so the test deletes it, before the retry (after it,
        // the deployer could report the old pod's failure again first).
        let release = deploy_id.clone();
        l.api.delete_object("Pod", l.system.namespace(), &release);
        let out = l.system.sdpcfg(&["retry", &deploy_id])?;
        ensure!(out.contains(&deploy_id), "sdpcfg retry said {out:?}");
        let st = l
            .wait(&state_path, "block STARTING again", |v| {
                v["status"] == "STARTING"
            })
            .await?;
        ensure!(st.get("failed_deployment").is_none(), "{st}");
        ensure!(st.get("reason").is_none_or(Value::is_null), "{st}");
        l.wait(
            &format!("/deploy/{deploy_id}/state"),
            "installed afresh",
            |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("installed afresh"))
            },
        )
        .await?;
        l.workflow_pod(&pb_id, running())?;
        l.wait(
            &format!("/deploy/{deploy_id}/state"),
            "workload RUNNING",
            |v| v["workload"]["phase"] == "RUNNING",
        )
        .await?;
        let st = l.json(&state_path).await?.context("block state")?;
        assert_eq!(st["status"], "STARTING", "{st}");
        Ok(())
    }
    .await;
    l.system.report(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workflow_fails_its_block_after_the_grace_period() -> Result<()> {
    let l = start("1").await?;
    let result = async {
        let pb_id = l.block().await?;
        let state_path = format!("/pb/{pb_id}/state");
        l.workflow_pod(&pb_id, running())?;
        let mut workflow = l.system.workflow("testdask", &pb_id, &[])?;
        l.wait(&state_path, "RUNNING", |v| v["status"] == "RUNNING")
            .await?;
        l.wait(&format!("/pb/{pb_id}/owner"), "owner", |_| true)
            .await?;
        // kill -9: the owner key goes when its lease runs out; the kubelet restarts the
        // container (restartPolicy OnFailure) and reports how it ended, but the workflow
        // never claims the block again.
        workflow.signal(Signal::SIGKILL);
        workflow.wait_exit(Duration::from_secs(10)).await?;
        l.workflow_pod(&pb_id, restarting())?;
        let st = l
            .wait(&state_path, "FAILED", |v| v["status"] == "FAILED")
            .await?;
        assert_eq!(
            st["reason"],
            format!(
                "workflow exited without finishing (pod {pb_id}-workflow: Error, exit code 137)"
            ),
            "{st}"
        );
        ensure!(
            l.system.get(&format!("/pb/{pb_id}/owner")).await?.is_none(),
            "the owner key is gone"
        );
        eprintln!(
            "a killed workflow, /pb/{pb_id}/state:\n{}",
            serde_json::to_string_pretty(&st)?
        );

        // A pod the kubelet reports failed fails the block at once, without the grace.
        let pb_id = l.block().await?;
        l.workflow_pod(&pb_id, killed())?;
        let st = l
            .wait(&format!("/pb/{pb_id}/state"), "FAILED", |v| {
                v["status"] == "FAILED"
            })
            .await?;
        assert_eq!(
            st["reason"],
            format!(
                "workflow pod {pb_id}-workflow: container workflow exited with code 137 (Error)"
            )
        );
        Ok(())
    }
    .await;
    l.system.report(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_block_is_never_changed_and_a_succeeded_pod_finishes_its_deployment()
-> Result<()> {
    let l = start("1").await?;
    let result = async {
        let pb_id = l.block().await?;
        let deploy_id = format!("{pb_id}-workflow");
        let state_path = format!("/pb/{pb_id}/state");
        l.workflow_pod(&pb_id, running())?;
        let mut workflow = l.system.workflow("teststate", &pb_id, &[])?;
        let status = workflow.wait_exit(LIMIT).await?;
        ensure!(status.success(), "teststate exited with {status}");
        let finished = l
            .wait(&state_path, "FINISHED", |v| v["status"] == "FINISHED")
            .await?;
        l.workflow_pod(&pb_id, pods::succeeded())?;
        l.wait(
            &format!("/deploy/{deploy_id}/state"),
            "workload FINISHED",
            |v| v["workload"]["phase"] == "FINISHED",
        )
        .await?;
        // Then the pod is reported failed (evicted after the end, say): the block stays.
        l.workflow_pod(&pb_id, killed())?;
        l.wait(
            &format!("/deploy/{deploy_id}/state"),
            "workload FAILED",
            |v| v["workload"]["phase"] == "FAILED",
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let st = l.json(&state_path).await?.context("block state")?;
        assert_eq!(st, finished, "a FINISHED block is never changed");
        Ok(())
    }
    .await;
    l.system.report(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_fails_the_block_with_the_last_exit_code() -> Result<()> {
    let l = start("120").await?;
    let result = async {
        let pb_id = l.block().await?;
        let deploy_id = format!("{pb_id}-workflow");
        l.workflow_pod(&pb_id, pods::crash_loop(IMAGE, 3, 1))?;
        let st = l
            .wait(&format!("/pb/{pb_id}/state"), "FAILED", |v| {
                v["status"] == "FAILED"
            })
            .await?;
        assert_eq!(
            st["reason"],
            format!("workflow pod {deploy_id}: container workflow keeps crashing (CrashLoopBackOff, 3 restarts, last exit code 1)")
        );
        Ok(())
    }
    .await;
    l.system.report(result)
}
