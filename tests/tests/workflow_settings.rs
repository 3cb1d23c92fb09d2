//! Issue 11, item 9: a workflow reaches the configuration database it was started from.
//! A system under `SDP_CONFIG_PREFIX=/tenant1` (etcd on a port other than 2379): the
//! controller writes the workflow deployment, the deployer renders it with the real
//! workflow chart, and `teststate` started with nothing but the rendered pod's
//! environment and arguments finds its block under the prefix and finishes it.
//!
//! Before, the deployment carried only the host and the namespace: the workflow looked
//! for its block at 127.0.0.1:2379 outside the prefix and never found it.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sdp_e2e::binaries::binary;
use sdp_e2e::manifest::{documents, env_pairs, object};
use sdp_e2e::process::{Proc, Spec};
use sdp_e2e::system::{Options, System, Target, status_of};
use serde_json::Value;

const STEP: Duration = Duration::from_secs(60);
const PREFIX: &str = "/tenant1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_run_with_its_pods_environment_finds_its_block_under_the_prefix() -> Result<()> {
    let prefix = [("SDP_CONFIG_PREFIX".to_string(), PREFIX.to_string())];
    let system = System::start(Options {
        controller_env: prefix.to_vec(),
        deployer_env: prefix.to_vec(),
        ..Options::new(Target::Render)
    })
    .await?;
    let result = run(&system).await;
    system.report(result)
}

async fn run(system: &System) -> Result<()> {
    let out = system.sdpcfg(&["--prefix", PREFIX, "process", "batch:teststate:0.1.0"])?;
    let pb_id = out
        .strip_prefix("OK, pb_id = ")
        .and_then(|s| s.strip_suffix('\n'))
        .with_context(|| format!("sdpcfg process printed {out:?}"))?
        .to_string();
    let release = format!("{pb_id}-workflow");
    let deployment = system
        .wait_value(&format!("{PREFIX}/deploy/{release}"), STEP, |_| true)
        .await?;
    let values: Value = serde_json::from_str(&deployment)?;
    let values = &values["args"]["values"];
    let port = system.etcd.port().to_string();
    ensure!(
        values["env.SDP_CONFIG_PREFIX"] == PREFIX && values["env.SDP_CONFIG_PORT"] == port,
        "the workflow deployment does not tell the prefix and the port: {deployment}"
    );
    system
        .wait_status(
            &format!("{PREFIX}/deploy/{release}/state"),
            "DEPLOYED",
            STEP,
        )
        .await?;

    // The pod as the chart renders it: its environment and arguments, nothing else.
    let path = system.rendered(&release);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no rendered manifest {}", path.display()))?;
    let docs = documents(&text)?;
    let container = &object(&docs, "Pod", &release)?["spec"]["containers"][0];
    let env = env_pairs(container);
    ensure!(
        env.iter().all(|(name, _)| !name.contains("PASSWORD")),
        "{env:?}"
    );
    let args: Vec<String> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    ensure!(args == [pb_id.clone()], "the pod's arguments are {args:?}");
    let mut spec = Spec::new("teststate", binary("teststate")?).envs(env);
    for arg in &args {
        spec = spec.arg(arg.as_str());
    }
    let mut teststate = Proc::spawn(&spec, &system.new_log("teststate-pod-env"))?;

    let state = system
        .wait_value(&format!("{PREFIX}/pb/{pb_id}/state"), STEP, |v| {
            status_of(v).as_deref() == Some("FINISHED")
        })
        .await
        .with_context(|| format!("teststate's log:\n{}", log(&teststate)))?;
    ensure!(status_of(&state).as_deref() == Some("FINISHED"), "{state}");
    let status = teststate.wait_exit(STEP).await?;
    ensure!(status.success(), "teststate exited with {status}");
    // Nothing was written outside the prefix.
    let outside: Vec<String> = system
        .all_keys()
        .await?
        .into_iter()
        .filter(|k| !k.starts_with(&format!("{PREFIX}/")))
        .collect();
    ensure!(outside.is_empty(), "keys outside {PREFIX}: {outside:?}");
    system.shutdown().await
}

fn log(proc: &Proc) -> String {
    std::fs::read_to_string(proc.log()).unwrap_or_default()
}
