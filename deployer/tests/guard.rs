//! The database-identity guard and prefix ownership (issue 11, items 1 and 4), with the
//! real deployer binary, a real etcd (wiped in place to stand for one that came back
//! empty), the stand-in helm and the real `sdpcfg`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use common::*;
use sdp_config::Config;
use sdp_config::database::GuardReport;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);
/// Resync period of these tests: "several resyncs" fit in a few seconds.
const RESYNC: &str = "0.5";
const SEVERAL_RESYNCS: Duration = Duration::from_secs(4);
const IDS: [&str; 3] = ["keep-me", "drop-me", "other"];

/// The `sdpcfg` binary next to the deployer's, built once per test process (a no-op
/// when it is up to date).
fn sdpcfg_path() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let deployer = PathBuf::from(env!("CARGO_BIN_EXE_sdp-deployer"));
            let dir = deployer.parent().map(PathBuf::from).unwrap_or_default();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-q", "-p", "sdp-config", "--bin", "sdpcfg"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            if let Some(target) = dir.parent() {
                cmd.env("CARGO_TARGET_DIR", target);
            }
            match cmd.status() {
                Ok(s) if s.success() => Ok(dir.join("sdpcfg")),
                Ok(s) => Err(format!("cargo build of sdpcfg failed: {s}")),
                Err(e) => Err(format!("cannot run cargo: {e}")),
            }
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Run `sdpcfg` against the harness's etcd; its standard output.
fn sdpcfg(h: &Harness, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(sdpcfg_path()?);
    for (k, _) in std::env::vars() {
        if k.starts_with("SDP_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.envs(h.etcd.env()).args(args).output()?;
    ensure!(
        out.status.success(),
        "sdpcfg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn uninstalls(h: &Harness) -> Vec<String> {
    h.calls()
        .into_iter()
        .filter(|c| c.command() == "uninstall")
        .filter_map(|c| c.release().map(String::from))
        .collect()
}

async fn guard_report(h: &Harness) -> Result<Option<GuardReport>> {
    Ok(match h.get("/deployer/guard").await? {
        Some(text) => Some(GuardReport::parse(&text)?),
        None => None,
    })
}

/// Three releases installed from one database; then etcd comes back empty and the
/// deployer starts again. Returns the harness (now on the empty database) and the new
/// deployer, once it has run several resyncs and nothing was uninstalled.
async fn releases_from_a_lost_database() -> Result<(Harness, Deployer)> {
    let mut h = Harness::start().await?;
    let mut first = h.deployer(&[("SDP_HELM_RESYNC", RESYNC)])?;
    let installed = async {
        for id in IDS {
            h.deploy(id, &dask(id, json!({"worker.replicas": 1})))
                .await?;
        }
        for id in IDS {
            h.wait_status(id, "DEPLOYED", LIMIT).await?;
        }
        Ok(())
    }
    .await;
    with_log(installed, &first)?;
    first.kill();
    h.etcd.wipe()?;
    h.db = Config::connect(&h.etcd.connection()).await?;
    let d = h.deployer(&[("SDP_HELM_RESYNC", RESYNC)])?;
    tokio::time::sleep(SEVERAL_RESYNCS).await;
    let checked = async {
        ensure!(
            uninstalls(&h).is_empty(),
            "uninstalled after the database was replaced: {:?}",
            uninstalls(&h)
        );
        for id in IDS {
            let rel = h.release(id).context("release gone")?;
            ensure!(rel["status"] == "deployed", "{id}: {rel}");
        }
        Ok(())
    }
    .await;
    with_log(checked, &d)?;
    Ok((h, d))
}

/// The guard says what it holds: its key, its metric, its readiness detail, `sdpcfg
/// guard`; an entry naming a held release is told so and the release is not upgraded.
async fn guard_reports_the_held_releases(h: &Harness, d: &Deployer) -> Result<()> {
    let report = eventually(LIMIT, "the guard report", || async {
        Ok(guard_report(h).await?.filter(|r| r.held.len() == 3))
    })
    .await?;
    let mut held: Vec<&str> = report.held.iter().map(|r| r.release.as_str()).collect();
    held.sort_unstable();
    assert_eq!(held, vec!["drop-me", "keep-me", "other"]);
    assert!(!report.database.is_empty());
    ensure!(
        d.metric("sdp_deployer_guard_releases", "")? == 3.0,
        "metric"
    );
    let (status, body) = d.http_get("/readyz")?;
    assert_eq!(status, 200, "{body}");
    ensure!(body.contains("guard holds 3"), "readiness: {body}");
    let shown = sdpcfg(h, &["guard"])?;
    ensure!(
        shown.contains("3 release(s)") && shown.contains("keep-me"),
        "{shown}"
    );

    // The entry comes back with other values: held, so not upgraded.
    let upgrades_before = h.calls_on("upgrade", "keep-me").len();
    h.deploy("keep-me", &dask("keep-me", json!({"worker.replicas": 2})))
        .await?;
    let state = eventually(LIMIT, "keep-me to be told it is held", || async {
        Ok(h.state("keep-me").await?.filter(|s| {
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("held by the database guard"))
        }))
    })
    .await?;
    assert_eq!(state.status.as_deref(), Some("PENDING"));
    tokio::time::sleep(SEVERAL_RESYNCS).await;
    assert_eq!(h.calls_on("upgrade", "keep-me").len(), upgrades_before);
    ensure!(uninstalls(h).is_empty(), "{:?}", uninstalls(h));
    Ok(())
}

#[tokio::test]
async fn a_replaced_database_uninstalls_nothing_and_adopt_keeps_what_has_an_entry() -> Result<()> {
    let (h, d) = releases_from_a_lost_database().await?;
    let result = async {
        guard_reports_the_held_releases(&h, &d).await?;
        let out = sdpcfg(&h, &["guard", "adopt"])?;
        ensure!(out.contains("3 release(s) adopted"), "{out}");
        // Held releases without an entry go; the one with an entry is upgraded in place
        // to what the entry says, now labelled with this database.
        for gone in ["drop-me", "other"] {
            eventually(LIMIT, &format!("{gone} uninstalled"), || async {
                Ok(h.release(gone).is_none().then_some(()))
            })
            .await?;
        }
        let state = h.wait_status("keep-me", "DEPLOYED", LIMIT).await?;
        assert_eq!(state.revision, Some(2), "upgraded, not reinstalled");
        let rel = h.release("keep-me").context("keep-me gone")?;
        assert_eq!(rel["installs"], 1, "never uninstalled: {rel}");
        assert_eq!(rel["values"]["worker"]["replicas"], 2);
        let (record, _) = h.db.database_record().await?.context("no identity")?;
        assert_eq!(rel["labels"]["sdp.skao.int/config-db"], record.id.as_str());
        eventually(LIMIT, "the guard to hold nothing", || async {
            Ok((guard_report(&h).await?.is_none()
                && d.metric("sdp_deployer_guard_releases", "")? == 0.0)
                .then_some(()))
        })
        .await?;
        // From now on the usual rules: deleting the entry uninstalls promptly.
        h.delete_tree("/deploy/keep-me").await?;
        eventually(LIMIT, "keep-me uninstalled", || async {
            Ok(uninstalls(&h).iter().any(|r| r == "keep-me").then_some(()))
        })
        .await?;
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_replaced_database_uninstalls_nothing_and_prune_removes_the_held_releases() -> Result<()>
{
    let (h, d) = releases_from_a_lost_database().await?;
    let result = async {
        guard_reports_the_held_releases(&h, &d).await?;
        let out = sdpcfg(&h, &["guard", "prune"])?;
        ensure!(out.contains("3 release(s) pruned"), "{out}");
        for id in IDS {
            eventually(LIMIT, &format!("{id} uninstalled"), || async {
                Ok(uninstalls(&h).iter().any(|r| r == id).then_some(()))
            })
            .await?;
        }
        // keep-me has an entry: installed afresh, from this database.
        let state = h.wait_status("keep-me", "DEPLOYED", LIMIT).await?;
        assert_eq!(state.revision, Some(1), "a new release: {state:?}");
        let rel = h.release("keep-me").context("keep-me gone")?;
        let (record, _) = h.db.database_record().await?.context("no identity")?;
        assert_eq!(rel["labels"]["sdp.skao.int/config-db"], record.id.as_str());
        assert_eq!(rel["values"]["worker"]["replicas"], 2);
        for gone in ["drop-me", "other"] {
            ensure!(h.release(gone).is_none(), "{gone} still there");
        }
        eventually(LIMIT, "the guard to hold nothing", || async {
            Ok(guard_report(&h).await?.is_none().then_some(()))
        })
        .await?;
        let shown = sdpcfg(&h, &["guard"])?;
        ensure!(
            shown.contains("Held by the deployer's guard: nothing"),
            "{shown}"
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn restoring_the_identity_lifts_the_guard_by_itself() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[("SDP_HELM_RESYNC", RESYNC)])?;
    let result = async {
        h.deploy("a", &dask("a", json!({}))).await?;
        h.wait_status("a", "DEPLOYED", LIMIT).await?;
        // A stand-in for a backup of the identity: taken, replaced, put back.
        let (saved, _) = h.db.database_record().await?.context("no identity")?;
        h.db.update_database_record(|r| r.id = "0".repeat(32))
            .await?;
        h.delete_tree("/deploy/a").await?;
        let report = eventually(LIMIT, "a to be held", || async {
            Ok(guard_report(&h).await?.filter(|r| r.held.len() == 1))
        })
        .await?;
        assert_eq!(report.held[0].release, "a");
        tokio::time::sleep(SEVERAL_RESYNCS).await;
        ensure!(uninstalls(&h).is_empty(), "{:?}", uninstalls(&h));
        h.db.update_database_record(|r| r.id = saved.id.clone())
            .await?;
        eventually(LIMIT, "a uninstalled once the identity is back", || async {
            Ok(uninstalls(&h).iter().any(|r| r == "a").then_some(()))
        })
        .await?;
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn deployers_of_two_prefixes_in_one_namespace_leave_each_other_alone() -> Result<()> {
    let h = Harness::start().await?;
    let a = h.deployer(&[("SDP_CONFIG_PREFIX", "/a"), ("SDP_HELM_RESYNC", RESYNC)])?;
    let b = h.deployer(&[("SDP_CONFIG_PREFIX", "/b"), ("SDP_HELM_RESYNC", RESYNC)])?;
    let db_a = Config::connect(&h.etcd.connection().with_prefix("/a")).await?;
    let db_b = Config::connect(&h.etcd.connection().with_prefix("/b")).await?;
    let result = async {
        for (db, id) in [(&db_a, "in-a"), (&db_b, "in-b")] {
            let (path, value) = (format!("/deploy/{id}"), dask(id, json!({})));
            db.transact(move |t| {
                let (path, value) = (path.clone(), value.clone());
                Box::pin(async move { t.put(&path, &value) })
            })
            .await?;
        }
        eventually(LIMIT, "both releases deployed", || async {
            Ok(["in-a", "in-b"]
                .iter()
                .all(|r| h.release(r).is_some_and(|v| v["status"] == "deployed"))
                .then_some(()))
        })
        .await?;
        tokio::time::sleep(SEVERAL_RESYNCS).await;
        ensure!(
            uninstalls(&h).is_empty(),
            "a deployer uninstalled another prefix's release: {:?}",
            uninstalls(&h)
        );
        for r in ["in-a", "in-b"] {
            let rel = h.release(r).context("release gone")?;
            ensure!(
                rel["installs"] == 1 && rel["revision"] == 1,
                "installed once, never touched again: {rel}"
            );
        }
        let a_label =
            h.release("in-a").unwrap_or_default()["labels"]["sdp.skao.int/config-prefix"].clone();
        ensure!(
            a_label.as_str().is_some_and(|l| l.starts_with("a.")),
            "prefix label: {a_label}"
        );
        // Each one still uninstalls its own at once.
        let path = "/deploy/in-a".to_string();
        db_a.transact(move |t| {
            let path = path.clone();
            Box::pin(async move { t.delete_tree(&path) })
        })
        .await?;
        eventually(LIMIT, "in-a uninstalled", || async {
            Ok(uninstalls(&h).iter().any(|r| r == "in-a").then_some(()))
        })
        .await?;
        ensure!(!uninstalls(&h).iter().any(|r| r == "in-b"));
        Ok(())
    }
    .await;
    with_log(with_log(result, &a), &b)
}
