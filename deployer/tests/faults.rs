//! Faults: the deployer killed (SIGKILL) during installs and restarted, etcd restarted,
//! two deployers at once, and a graceful stop. Every entry ends DEPLOYED with its release
//! installed exactly once, no orphan release, no state key without an entry.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use common::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

/// Every ID DEPLOYED, its release created once (never uninstalled and installed again, nor
/// upgraded), and no release or state beyond the entries. Releases in `recovered` were
/// left `pending-install` by a killed deployer (its helm died with it): freeing them
/// takes one uninstall, after which they are installed once.
async fn check_exactly_once(
    h: &Harness,
    ids: &[String],
    recovered: &BTreeSet<String>,
) -> Result<()> {
    for id in ids {
        let st = h.wait_status(id, "DEPLOYED", LIMIT).await?;
        let rel = h.release(id).unwrap_or_default();
        ensure!(rel["status"] == "deployed", "{id}: {rel}");
        ensure!(
            rel["installs"] == 1,
            "{id} installed {} times",
            rel["installs"]
        );
        // Not even upgraded again: an install finished by a killed deployer's helm is adopted.
        ensure!(
            rel["revision"] == 1,
            "{id} has revision {}",
            rel["revision"]
        );
        let uninstalls = h.calls_on("uninstall", id).len();
        let allowed = usize::from(recovered.contains(id));
        ensure!(
            uninstalls <= allowed,
            "{id} was uninstalled {uninstalls} times on the way"
        );
        ensure!(
            st.revision == rel["revision"].as_i64(),
            "{id}: state {:?} vs release {}",
            st.revision,
            rel["revision"]
        );
    }
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    let releases: BTreeSet<String> = h.release_names().into_iter().collect();
    ensure!(
        releases == expected,
        "orphan or missing releases: {:?}",
        releases.symmetric_difference(&expected).collect::<Vec<_>>()
    );
    h.assert_no_orphan_states().await
}

#[tokio::test]
async fn a_deployer_killed_during_installs_and_restarted_deploys_everything_exactly_once()
-> Result<()> {
    let h = Harness::start().await?;
    let mut d = h.deployer(&[("FAKE_HELM_DELAY_MS", "1000")])?;
    let all = ids("kill", 16);
    for id in &all {
        h.deploy(id, &dask(id, json!({}))).await?;
    }
    // Kill it while installs run (the stand-in marks releases pending-install first).
    with_log(
        eventually(LIMIT, "installs running", || async {
            Ok(
                (h.release_names().len() >= 4 && h.keys("/deploy/", 1).await?.len() > all.len())
                    .then_some(()),
            )
        })
        .await,
        &d,
    )?;
    d.kill();
    let killed_at = Instant::now();
    // The helm calls die with the deployer, leaving their releases pending-install.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recovered = pending_releases(&h);
    let d = h.deployer(&[("FAKE_HELM_DELAY_MS", "1000")])?;
    let result = async {
        check_exactly_once(&h, &all, &recovered).await?;
        // A few more after the restart, and a deletion.
        h.delete("/deploy/kill-00").await?;
        eventually(LIMIT, "kill-00 uninstalled", || async {
            Ok(h.release("kill-00").is_none().then_some(()))
        })
        .await?;
        eprintln!("all deployed {:?} after the kill", killed_at.elapsed());
        check_exactly_once(&h, &all[1..], &recovered).await
    }
    .await;
    with_log(result, &d)
}

/// Releases whose status is `pending-*` now.
fn pending_releases(h: &Harness) -> BTreeSet<String> {
    h.release_names()
        .into_iter()
        .filter(|n| {
            h.release(n).is_some_and(|r| {
                r["status"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("pending-"))
            })
        })
        .collect()
}

/// Whether process `pid` is still alive (and not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[tokio::test]
async fn a_release_left_pending_by_a_killed_deployer_is_recovered_within_seconds_of_a_restart()
-> Result<()> {
    // Regression (issue 11, item 5): the restarted deployer took the release for one
    // another helm was still installing and waited the helm timeout + 35 s (here 50 s,
    // by default 335 s) before freeing it.
    let h = Harness::start().await?;
    h.faults(json!([{"kind": "delay", "release": "slow", "ms": 30000, "count": 1}]))?;
    let mut d = h.deployer(&[])?;
    with_log(
        async {
            h.deploy("slow", &dask("slow", json!({}))).await?;
            h.wait_status("slow", "INSTALLING", LIMIT).await?;
            eventually(LIMIT, "the install to be running", || async {
                Ok(pending_releases(&h).contains("slow").then_some(()))
            })
            .await
        }
        .await,
        &d,
    )?;
    let helm_pid = h
        .calls_on("upgrade", "slow")
        .first()
        .map(|c| c.pid)
        .unwrap_or_default();
    ensure!(alive(helm_pid), "helm {helm_pid} runs the install");
    d.kill();
    let killed = Instant::now();
    // No helm outlives its deployer.
    eventually(
        Duration::from_secs(2),
        "helm to die with its deployer",
        || async { Ok((!alive(helm_pid)).then_some(())) },
    )
    .await?;
    ensure!(
        pending_releases(&h).contains("slow"),
        "left pending-install"
    );
    let d = h.deployer(&[])?;
    let result = async {
        h.wait_status("slow", "DEPLOYED", LIMIT).await?;
        let took = killed.elapsed();
        eprintln!("recovered {took:?} after the kill");
        ensure!(took < Duration::from_secs(15), "recovery took {took:?}");
        let rel = h.release("slow").unwrap_or_default();
        ensure!(rel["status"] == "deployed", "{rel}");
        ensure!(h.release_names() == vec!["slow".to_string()]);
        let st = h.state("slow").await?.unwrap_or_default();
        ensure!(
            st.extra.get("helm_lease").is_some_and(|l| l.is_string()),
            "the state records the term of the last helm call: {st:?}"
        );
        h.assert_no_orphan_states().await
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn an_etcd_restart_in_the_middle_loses_nothing_and_duplicates_nothing() -> Result<()> {
    let mut h = Harness::start().await?;
    let d = h.deployer(&[("FAKE_HELM_DELAY_MS", "300")])?;
    let first = ids("before", 12);
    for id in &first {
        h.deploy(id, &dask(id, json!({}))).await?;
    }
    with_log(
        eventually(LIMIT, "installs running", || async {
            Ok((h.release_names().len() >= 2).then_some(()))
        })
        .await,
        &d,
    )?;
    h.etcd.kill();
    tokio::time::sleep(Duration::from_secs(3)).await; // longer than the leader lease (2 s)
    h.etcd.restart()?;
    let result = async {
        let later = ids("after", 6);
        for id in &later {
            h.deploy(id, &dask(id, json!({}))).await?;
        }
        let all: Vec<String> = first.iter().chain(&later).cloned().collect();
        check_exactly_once(&h, &all, &BTreeSet::new()).await?;
        h.delete_tree("/deploy/before-00").await?;
        eventually(LIMIT, "before-00 uninstalled", || async {
            Ok(h.release("before-00").is_none().then_some(()))
        })
        .await?;
        check_exactly_once(&h, &all[1..], &BTreeSet::new()).await
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn two_deployers_at_once_deploy_everything_exactly_once_and_fail_over() -> Result<()> {
    let h = Harness::start().await?;
    let mut a = h.deployer(&[("FAKE_HELM_DELAY_MS", "200")])?;
    let mut b = h.deployer(&[("FAKE_HELM_DELAY_MS", "200")])?;
    let all = ids("pair", 16);
    for id in &all {
        h.deploy(id, &dask(id, json!({}))).await?;
    }
    let result = async {
        check_exactly_once(&h, &all, &BTreeSet::new()).await?;
        let leaders =
            a.metric("sdp_deployer_is_leader", "")? + b.metric("sdp_deployer_is_leader", "")?;
        ensure!(leaders == 1.0, "exactly one leader, found {leaders}");
        // Kill the leader: the other takes over well within 15 s.
        let (leader, standby) = if a.metric("sdp_deployer_is_leader", "")? == 1.0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        ensure!(standby.http_get("/readyz")?.0 == 200, "a standby is ready");
        leader.kill();
        let killed = Instant::now();
        h.deploy("pair-new", &dask("pair-new", json!({}))).await?;
        h.delete("/deploy/pair-00").await?;
        h.wait_status("pair-new", "DEPLOYED", LIMIT).await?;
        eventually(LIMIT, "pair-00 uninstalled", || async {
            Ok(h.release("pair-00").is_none().then_some(()))
        })
        .await?;
        let took = killed.elapsed();
        ensure!(took < Duration::from_secs(15), "failover took {took:?}");
        ensure!(standby.metric("sdp_deployer_is_leader", "")? == 1.0);
        let mut rest: Vec<String> = all[1..].to_vec();
        rest.push("pair-new".into());
        check_exactly_once(&h, &rest, &BTreeSet::new()).await
    }
    .await;
    let result = with_log(result, &a);
    with_log(result, &b)
}

#[tokio::test]
async fn sigterm_lets_a_running_install_finish_and_report_then_exits() -> Result<()> {
    let h = Harness::start().await?;
    h.faults(json!([{"kind": "delay", "release": "finishing", "ms": 2000}]))?;
    let mut d = h.deployer(&[])?;
    let result = async {
        h.deploy("finishing", &dask("finishing", json!({}))).await?;
        h.wait_status("finishing", "INSTALLING", LIMIT).await?;
        d.terminate();
        // Stopping: new work is not started.
        h.deploy("late", &dask("late", json!({}))).await?;
        let code = d.wait_exit(Duration::from_secs(15)).await?;
        ensure!(code == Some(0), "clean exit, got {code:?}");
        let st = h.state("finishing").await?.unwrap_or_default();
        ensure!(
            st.status.as_deref() == Some("DEPLOYED"),
            "the running install finished and was reported: {st:?}"
        );
        ensure!(
            h.release("late").is_none(),
            "nothing new started after SIGTERM"
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}
