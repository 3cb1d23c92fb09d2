//! The render target with the real helm: the seed's entries become manifests that pass
//! `kubernetes-validate --strict`, changes re-render, deletions remove the files.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

fn validate(file: &std::path::Path) -> Result<()> {
    let out = std::process::Command::new(tools_bin().join("kubernetes-validate"))
        .args(["-k", "1.30.0", "--strict"])
        .arg(file)
        .output()
        .context("run kubernetes-validate (scripts/setup.sh installs it)")?;
    ensure!(
        out.status.success(),
        "kubernetes-validate failed for {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn the_seed_renders_into_valid_manifests_and_deletions_remove_them() -> Result<()> {
    let h = Harness::start().await?;
    let out: PathBuf = h.work.path().join("out");
    let helm = tools_bin().join("helm");
    let d = h.deployer(&[
        ("SDP_HELM_TARGET", "render"),
        ("SDP_RENDER_DIR", out.to_str().unwrap_or("")),
        ("SDP_HELM", helm.to_str().unwrap_or("")),
        ("HOME", h.work.path().to_str().unwrap_or("")),
    ])?;
    let result = async {
        // A file the deployer did not write is never replaced or removed.
        std::fs::create_dir_all(out.join(NS))?;
        std::fs::write(out.join(NS).join("hand-made.yaml"), "# mine\n")?;
        h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
        h.deploy(DASK_ID, &seed_dask()).await?;
        let wf = h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        let dk = h.wait_status(DASK_ID, "DEPLOYED", LIMIT).await?;
        assert_eq!((wf.revision, dk.revision), (Some(1), Some(1)));
        let wf_file = out.join(NS).join(format!("{WORKFLOW_ID}.yaml"));
        let dask_file = out.join(NS).join(format!("{DASK_ID}.yaml"));
        for file in [&wf_file, &dask_file] {
            validate(file)?;
        }
        let manifest = std::fs::read_to_string(&wf_file)?;
        for want in ["kind: Pod", "sdp/workflow-testdask:0.1.0", "realtime-20191121-0000", "SDP_CONFIG_HOST"] {
            ensure!(manifest.contains(want), "workflow manifest lacks {want}:\n{manifest}");
        }
        let manifest = std::fs::read_to_string(&dask_file)?;
        ensure!(manifest.contains("replicas: 2"), "two dask workers:\n{manifest}");
        ensure!(!manifest.contains("jupyter"), "no notebook with jupyter.enabled=false");

        // A change re-renders with the next revision.
        h.deploy(DASK_ID, &dask(DASK_ID, json!({"worker.replicas": 3, "jupyter.enabled": "true"}))).await?;
        let again = h.wait_deployed_other_than(DASK_ID, dk.digest.as_deref(), LIMIT).await?;
        assert_eq!(again.revision, Some(2));
        let manifest = std::fs::read_to_string(&dask_file)?;
        ensure!(manifest.contains("replicas: 3") && manifest.contains("jupyter"), "{manifest}");
        validate(&dask_file)?;

        // A chart error is reported in helm's words.
        h.deploy("no-image", &json!({"deploy_id": "no-image", "type": "helm", "args": {"chart": "workflow", "values": {"pb_id": "x"}}}).to_string()).await?;
        let failed = h.wait_status("no-image", "FAILED", LIMIT).await?;
        ensure!(failed.message.unwrap_or_default().contains("wf_image is required"), "helm's message");

        h.delete_tree(&format!("/deploy/{WORKFLOW_ID}")).await?;
        h.delete(&format!("/deploy/{DASK_ID}")).await?;
        h.delete("/deploy/no-image").await?;
        eventually(LIMIT, "rendered files removed", || async { Ok((!wf_file.exists() && !dask_file.exists()).then_some(())) }).await?;
        eventually(LIMIT, "no state keys left", || async { Ok(h.keys("/deploy/", 1).await?.is_empty().then_some(())) }).await?;
        ensure!(out.join(NS).join("hand-made.yaml").exists());
        Ok(())
    }
    .await;
    with_log(result, &d)
}
