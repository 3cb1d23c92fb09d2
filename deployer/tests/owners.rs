//! Issue 11: ownership of a release by entry (item 3), and the smaller findings of item 6
//! (secrets in helm's environment, values files left behind, keys with invalid paths,
//! oversized values).

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);

fn replicas(h: &Harness, release: &str) -> Option<i64> {
    h.release(release)?["values"]["worker"]["replicas"].as_i64()
}

#[tokio::test]
async fn an_entry_whose_id_is_another_entrys_release_name_never_takes_that_release_over()
-> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let result = async {
        // `Foo` is no valid release name: it maps to a hashed one.
        let release = sdp_deployer::naming::release_name("", "Foo");
        ensure!(release == "foo-1cbec737", "{release}");
        h.deploy("Foo", &dask("Foo", json!({"worker.replicas": 1})))
            .await?;
        h.wait_status("Foo", "DEPLOYED", LIMIT).await?;
        // A later entry whose ID is exactly that name.
        h.deploy(&release, &dask(&release, json!({"worker.replicas": 5})))
            .await?;
        let st = h.wait_status(&release, "FAILED", LIMIT).await?;
        let message = st.message.unwrap_or_default();
        ensure!(
            message.contains("already used by deployment \"Foo\""),
            "the reason names the owner: {message}"
        );
        // Give a wrong takeover time to happen, then check nothing changed hands.
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            replicas(&h, &release) == Some(1),
            "{:?}",
            h.release(&release)
        );
        let foo = h.state("Foo").await?.unwrap_or_default();
        ensure!(foo.status.as_deref() == Some("DEPLOYED"), "{foo:?}");
        ensure!(
            h.calls_on("upgrade", &release).len() == 1,
            "one install, no takeover: {:?}",
            h.calls_on("upgrade", &release)
        );
        // The later entry goes (`sdpcfg delete`, its state key left behind): its state
        // goes too, the release stays with Foo.
        h.delete(&format!("/deploy/{release}")).await?;
        eventually(LIMIT, "the deleted entry's state to go", || async {
            Ok(h.state(&release).await?.is_none().then_some(()))
        })
        .await?;
        h.assert_no_orphan_states().await?;
        ensure!(h.release(&release).is_some() && replicas(&h, &release) == Some(1));
        ensure!(h.calls_on("uninstall", &release).is_empty());
        // Foo goes: so does the release.
        h.delete("/deploy/Foo").await?;
        eventually(LIMIT, "the release to go with Foo", || async {
            Ok(h.release(&release).is_none().then_some(()))
        })
        .await?;
        eventually(LIMIT, "no state left", || async {
            Ok(h.keys("/deploy/", 1).await?.is_empty().then_some(()))
        })
        .await
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn helm_never_sees_the_configuration_database_credentials() -> Result<()> {
    let h = Harness::start_with(sdp_testing::EtcdOptions {
        auth: Some(("sdp".into(), "s3cret-pw".into())),
        ..Default::default()
    })
    .await?;
    ensure!(
        h.env().contains_key("SDP_CONFIG_PASSWORD"),
        "the deployer gets credentials"
    );
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy("creds", &dask("creds", json!({}))).await?;
        h.wait_status("creds", "DEPLOYED", LIMIT).await?;
        let calls = h.calls();
        ensure!(!calls.is_empty());
        for call in &calls {
            ensure!(
                call.env.iter().any(|k| k == "FAKE_HELM_DIR"),
                "the environment is recorded: {:?}",
                call.env
            );
            let leaked: Vec<&String> = call.env.iter().filter(|k| k.starts_with("SDP_")).collect();
            ensure!(leaked.is_empty(), "helm {} saw {leaked:?}", call.command());
        }
        Ok(())
    }
    .await;
    with_log(result, &d)
}

/// Every values file under `dir`, at any depth.
fn values_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn values_files_live_in_a_private_directory_and_a_killed_deployers_are_removed() -> Result<()>
{
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start().await?;
    // What a deployer killed during a helm call leaves: its directory, its (no longer
    // locked) lock file, a values file.
    let base = h.work.path().join("sdp-deployer");
    let dead = base.join("run-4242-0");
    std::fs::create_dir_all(&dead)?;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
    std::fs::write(dead.join("lock"), "")?;
    std::fs::write(dead.join("values-x1y2z3.json"), r#"{"secret": "x"}"#)?;
    let mut d = h.deployer(&[])?;
    let result = async {
        h.deploy("vals", &dask("vals", json!({"a": 1}))).await?;
        h.wait_status("vals", "DEPLOYED", LIMIT).await?;
        ensure!(
            !dead.exists(),
            "the killed deployer's values files are gone"
        );
        let call = h
            .calls_on("upgrade", "vals")
            .pop()
            .context("an upgrade call")?;
        let path = std::path::PathBuf::from(call.flag("--values").context("--values")?);
        ensure!(
            path.starts_with(&base),
            "values file {} not in {}",
            path.display(),
            base.display()
        );
        ensure!(call.values_modes == vec![0o600], "{:?}", call.values_modes);
        let mode = std::fs::metadata(&base)?.permissions().mode() & 0o777;
        ensure!(mode == 0o700, "base directory mode {mode:o}");
        let own = path.parent().context("parent")?;
        let mode = std::fs::metadata(own)?.permissions().mode() & 0o777;
        ensure!(mode == 0o700, "own directory mode {mode:o}");
        ensure!(
            values_files(h.work.path()).is_empty(),
            "no values file stays after the call: {:?}",
            values_files(h.work.path())
        );
        Ok(())
    }
    .await;
    let result = with_log(result, &d);
    d.terminate();
    d.wait_exit(Duration::from_secs(15)).await?;
    result?;
    ensure!(
        values_files(h.work.path()).is_empty(),
        "none after a normal stop either"
    );
    Ok(())
}

/// The current etcd revision, asked with etcd-client directly.
async fn revision(client: &mut etcd_client::Client) -> Result<i64> {
    let resp = client.get("0", None).await?;
    Ok(resp.header().context("header")?.revision())
}

#[tokio::test]
async fn keys_with_invalid_paths_are_reported_once_and_never_retried() -> Result<()> {
    let h = Harness::start().await?;
    let mut raw = etcd_client::Client::connect([h.etcd.endpoint()], None).await?;
    // Written by another tool, under paths no configuration path allows.
    raw.put("2/deploy/a b", dask("a b", json!({})), None)
        .await?;
    raw.put("2/deploy/\u{e4}", dask("\u{e4}", json!({})), None)
        .await?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy("fine", &dask("fine", json!({}))).await?;
        h.wait_status("fine", "DEPLOYED", LIMIT).await?;
        let before = revision(&mut raw).await?;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(7)).await;
        let after = revision(&mut raw).await?;
        ensure!(
            after == before,
            "etcd written {} times in {:?}",
            after - before,
            started.elapsed()
        );
        let log = std::fs::read_to_string(&d.log)?;
        let retries = log
            .lines()
            .filter(|l| l.contains("cannot write the deployment state"))
            .count();
        ensure!(retries == 0, "{retries} write retries");
        let reports = log
            .lines()
            .filter(|l| l.contains("not a valid configuration path"))
            .count();
        ensure!(reports == 2, "each key reported once, found {reports}");
        ensure!(d.metric("sdp_deployer_invalid_keys", "")? == 2.0);
        let releases = h.release_names();
        ensure!(releases == vec!["fine".to_string()], "{releases:?}");
        // Deleting one is noticed.
        raw.delete("2/deploy/a b", None).await?;
        eventually(LIMIT, "the metric to drop", || async {
            Ok((d.metric("sdp_deployer_invalid_keys", "")? == 1.0).then_some(()))
        })
        .await
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn values_above_the_limit_fail_without_calling_helm() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let result = async {
        let big = "x".repeat(1024 * 1024 + 1);
        h.deploy("big", &dask("big", json!({"blob": big}))).await?;
        h.deploy("small", &dask("small", json!({"blob": "x"})))
            .await?;
        let st = h.wait_status("big", "FAILED", LIMIT).await?;
        let message = st.message.unwrap_or_default();
        ensure!(
            message.contains("values too large") && message.contains("SDP_MAX_VALUES_BYTES"),
            "{message}"
        );
        h.wait_status("small", "DEPLOYED", LIMIT).await?;
        ensure!(h.calls_on("upgrade", "big").is_empty(), "helm never ran");
        ensure!(h.release("big").is_none());
        Ok(())
    }
    .await;
    with_log(result, &d)
}
