//! Failure handling: helm errors retried with growing delays then FAILED with helm's
//! words, hung helm calls killed and retried, releases stuck in pending-* recovered, and
//! slow or changing releases never holding up others.

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn a_failing_helm_is_retried_with_growing_delays_then_failed_with_its_message() -> Result<()>
{
    let h = Harness::start().await?;
    h.faults(json!([{"kind": "fail", "release": "bad", "count": 4,
                     "message": "INSTALLATION FAILED: Service \"bad-scheduler\" is invalid: spec.ports: Required value"}]))?;
    let mut d = h.deployer(&[("SDP_HELM_RETRIES", "4"), ("SDP_HELM_BACKOFF", "0.3")])?;
    let result = async {
        h.deploy("bad", &dask("bad", json!({}))).await?;
        h.deploy("good", &dask("good", json!({}))).await?;
        h.wait_status("good", "DEPLOYED", LIMIT).await?;
        let retrying = h.wait_status("bad", "PENDING", LIMIT).await?;
        let message = retrying.message.unwrap_or_default();
        ensure!(message.contains("failed, retrying in"), "{message}");
        let failed = h.wait_status("bad", "FAILED", LIMIT).await?;
        let message = failed.message.unwrap_or_default();
        assert_eq!(message, "Error: INSTALLATION FAILED: Service \"bad-scheduler\" is invalid: spec.ports: Required value");
        assert_eq!(failed.attempts, Some(4));
        let times: Vec<u64> = h.calls_on("upgrade", "bad").iter().map(|c| c.t).collect();
        ensure!(times.len() == 4, "four attempts: {times:?}");
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        // Delays are 0.3·2^(n-1) s scaled by a jitter in [0.5, 1): ranges that do not overlap
        // two steps apart.
        ensure!(gaps[0] >= 140 && gaps[2] > gaps[0] && gaps[2] >= 600, "growing delays: {gaps:?} ms");
        // FAILED stays: no further attempts…
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(h.calls_on("upgrade", "bad").len(), 4);
        // …until the entry changes.
        h.deploy("bad", &dask("bad", json!({"worker.replicas": 2}))).await?;
        let fixed = h.wait_status("bad", "DEPLOYED", LIMIT).await?;
        assert_eq!(fixed.attempts, Some(1));
        ensure!(d.is_running(), "the deployer never exits");
        assert!(d.metric("sdp_deployer_retries_total", "")? >= 3.0);
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_hung_helm_is_killed_at_the_timeout_and_the_release_recovered() -> Result<()> {
    let h = Harness::start().await?;
    h.faults(json!([{"kind": "hang", "release": "hangs", "count": 1}]))?;
    let mut d = h.deployer(&[("SDP_HELM_TIMEOUT", "1.5")])?;
    let result = async {
        h.deploy("hangs", &dask("hangs", json!({}))).await?;
        let retrying = h.wait_status("hangs", "PENDING", LIMIT).await?;
        let message = retrying.message.unwrap_or_default();
        ensure!(
            message.contains("did not finish within 1.5 s and was stopped"),
            "{message}"
        );
        let hung = h.calls_on("upgrade", "hangs")[0].pid;
        ensure!(
            !std::path::Path::new(&format!("/proc/{hung}")).exists(),
            "the hung helm process is gone"
        );
        // The killed helm left the release in pending-install; it is uninstalled and
        // installed again rather than failing with "another operation is in progress".
        let state = h.wait_status("hangs", "DEPLOYED", LIMIT).await?;
        assert_eq!(h.calls_on("uninstall", "hangs").len(), 1);
        assert_eq!(state.attempts, Some(2));
        assert_eq!(h.release("hangs").unwrap_or_default()["status"], "deployed");
        ensure!(d.is_running());
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_release_left_pending_install_by_a_failed_helm_is_recovered() -> Result<()> {
    let h = Harness::start().await?;
    h.faults(json!([{"kind": "pending", "release": "stuck", "count": 1, "message": "connection reset by peer"}]))?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy("stuck", &dask("stuck", json!({}))).await?;
        h.wait_status("stuck", "DEPLOYED", LIMIT).await?;
        let upgrades = h.calls_on("upgrade", "stuck");
        ensure!(
            upgrades.len() == 2,
            "the failed attempt and the reinstall: {upgrades:?}"
        );
        assert_eq!(h.calls_on("uninstall", "stuck").len(), 1);
        Ok(())
    }
    .await;
    with_log(result, &d)
}

/// A release this deployer installed from this database (`database`), left in `status`.
fn stuck_release(
    name: &str,
    status: &str,
    updated: chrono::DateTime<chrono::Utc>,
    database: &str,
) -> serde_json::Value {
    let t = updated.to_rfc3339();
    json!({"name": name, "namespace": NS, "revision": 2, "status": status, "chart": "dask-0.1.0",
           "labels": {"sdp.skao.int/managed-by": "sdp-deployer", "sdp.skao.int/deploy-id": name,
                      "sdp.skao.int/config-db": database},
           "values": {}, "description": "", "updated": t, "installs": 1,
           "history": [
               {"revision": 1, "status": "deployed", "description": "Install complete", "updated": t, "chart": "dask-0.1.0", "values": {}},
               {"revision": 2, "status": status, "description": "", "updated": t, "chart": "dask-0.1.0", "values": {}}]})
}

#[tokio::test]
async fn a_stale_pending_upgrade_from_a_dead_helm_is_rolled_back_then_upgraded() -> Result<()> {
    let h = Harness::start().await?;
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let database = h.database_id().await?;
    h.write_release(&stuck_release(
        "old-stuck",
        "pending-upgrade",
        long_ago,
        &database,
    ))?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy(
            "old-stuck",
            &dask("old-stuck", json!({"worker.replicas": 3})),
        )
        .await?;
        let state = h.wait_status("old-stuck", "DEPLOYED", LIMIT).await?;
        let rollbacks = h.calls_on("rollback", "old-stuck");
        ensure!(
            rollbacks.len() == 1 && rollbacks[0].positional() == vec!["old-stuck", "1"],
            "{rollbacks:?}"
        );
        let rel = h.release("old-stuck").unwrap_or_default();
        assert_eq!(rel["values"], json!({"worker": {"replicas": 3}}));
        assert_eq!(state.revision, rel["revision"].as_i64());
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_release_busy_with_another_helm_is_waited_for_not_broken() -> Result<()> {
    let h = Harness::start().await?;
    let database = h.database_id().await?;
    h.write_release(&stuck_release(
        "busy",
        "pending-upgrade",
        chrono::Utc::now(),
        &database,
    ))?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy("busy", &dask("busy", json!({}))).await?;
        let waiting = h.wait_status("busy", "PENDING", LIMIT).await?;
        ensure!(
            waiting
                .message
                .unwrap_or_default()
                .contains("pending-upgrade by another helm process")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(
            h.calls_on("rollback", "busy").is_empty() && h.calls_on("uninstall", "busy").is_empty()
        );
        // The other helm finishes.
        let mut rel = stuck_release("busy", "deployed", chrono::Utc::now(), &database);
        rel["history"][1]["status"] = json!("deployed");
        rel["history"][0]["status"] = json!("superseded");
        h.write_release(&rel)?;
        h.wait_status("busy", "DEPLOYED", LIMIT).await?;
        ensure!(
            h.calls_on("rollback", "busy").is_empty() && h.calls_on("uninstall", "busy").is_empty()
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_slow_install_never_holds_up_other_entries() -> Result<()> {
    let h = Harness::start().await?;
    h.faults(json!([{"kind": "delay", "release": "slow", "ms": 8000}]))?;
    let d = h.deployer(&[("SDP_HELM_CONCURRENCY", "2")])?;
    let result = async {
        h.deploy("slow", &dask("slow", json!({}))).await?;
        eventually(LIMIT, "the slow install to start", || async {
            Ok((!h.calls_on("upgrade", "slow").is_empty()).then_some(()))
        })
        .await?;
        let start = std::time::Instant::now();
        for i in 0..6 {
            h.deploy(&format!("fast-{i}"), &dask(&format!("fast-{i}"), json!({})))
                .await?;
        }
        for i in 0..6 {
            h.wait_status(&format!("fast-{i}"), "DEPLOYED", LIMIT)
                .await?;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(6),
            "others done in {:?}",
            start.elapsed()
        );
        assert_eq!(
            h.state("slow").await?.and_then(|s| s.status).as_deref(),
            Some("INSTALLING")
        );
        h.wait_status("slow", "DEPLOYED", LIMIT).await?;
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn an_entry_changed_or_deleted_during_its_install_is_handled_right_after() -> Result<()> {
    let h = Harness::start().await?;
    h.faults(
        json!([{"kind": "delay", "release": "changing", "ms": 1500, "count": 1},
                    {"kind": "delay", "release": "leaving", "ms": 1500, "count": 1}]),
    )?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy("changing", &dask("changing", json!({}))).await?;
        h.deploy("leaving", &dask("leaving", json!({}))).await?;
        h.wait_status("changing", "INSTALLING", LIMIT).await?;
        h.wait_status("leaving", "INSTALLING", LIMIT).await?;
        h.deploy("changing", &dask("changing", json!({"worker.replicas": 5})))
            .await?;
        h.delete("/deploy/leaving").await?;
        eventually(LIMIT, "the new spec deployed", || async {
            let rel = h.release("changing").unwrap_or_default();
            let st = h.state("changing").await?.unwrap_or_default();
            Ok((rel["values"] == json!({"worker": {"replicas": 5}})
                && st.status.as_deref() == Some("DEPLOYED"))
            .then_some(()))
        })
        .await?;
        assert_eq!(
            h.calls_on("upgrade", "changing").len(),
            2,
            "the install, then one upgrade"
        );
        eventually(LIMIT, "the deleted entry's release gone", || async {
            Ok(h.release("leaving").is_none().then_some(()))
        })
        .await?;
        eventually(LIMIT, "and its state", || async {
            Ok(h.get("/deploy/leaving/state")
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        h.assert_no_orphan_states().await
    }
    .await;
    with_log(result, &d)
}
