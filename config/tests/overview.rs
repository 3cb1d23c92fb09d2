//! The overview against a real etcd: blocks, their state and owner, deployments and
//! their state appearing, changing and disappearing, as snapshots and as change
//! records; one transaction never half shown; the global prefix honoured; an etcd
//! restart survived.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sdp_config::overview::{self, Change, ChangeKind, Entity, Follower, Snapshot};
use sdp_config::{Config, ConnectionSettings};
use sdp_testing::EtcdServer;
use sdp_testing::fixtures::write;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Generous: a loaded 2-core machine, or a watch waiting out its reconnect backoff.
const DEADLINE: Duration = Duration::from_secs(20);

const PB: &str = r#"{"pb_id": "realtime-20261201-0000", "sbi_id": null, "workflow": {"id": "testdask", "type": "realtime", "version": "0.1.0"}, "parameters": {"token": "s3cret"}, "scan_parameters": {}}"#;
const WORKFLOW: &str = r#"{"deploy_id": "realtime-20261201-0000-workflow", "type": "helm", "args": {"chart": "workflow", "values": {"env.SDP_CONFIG_PASSWORD": "s3cret"}}}"#;
const ID: &str = "realtime-20261201-0000";
const DEPLOY: &str = "realtime-20261201-0000-workflow";

async fn connect(etcd: &EtcdServer, prefix: &str) -> Result<Config> {
    let settings = ConnectionSettings {
        host: etcd.host().into(),
        port: etcd.port(),
        ..Default::default()
    }
    .with_prefix(prefix);
    Ok(Config::connect(&settings).await?)
}

/// The first snapshot for which `ready` holds.
async fn until(follower: &Follower, ready: impl Fn(&Snapshot) -> bool) -> Result<Arc<Snapshot>> {
    let mut rx = follower.snapshots();
    let waited = tokio::time::timeout(DEADLINE, rx.wait_for(|s| ready(s))).await;
    match waited {
        Ok(Ok(s)) => Ok(s.clone()),
        Ok(Err(_)) => bail!("the follower stopped"),
        Err(_) => bail!("not reached within {DEADLINE:?}: {:#?}", follower.latest()),
    }
}

/// The next change record.
async fn next_change(changes: &mut broadcast::Receiver<Change>) -> Result<Change> {
    Ok(tokio::time::timeout(DEADLINE, changes.recv())
        .await
        .context("no change record")??)
}

async fn expect_changes(
    changes: &mut broadcast::Receiver<Change>,
    expected: &[(ChangeKind, Entity, &str, &str)],
) -> Result<()> {
    for (kind, entity, id, summary) in expected {
        let c = next_change(changes).await?;
        assert_eq!(
            (c.kind, c.entity, c.id.as_str(), c.summary.as_str()),
            (*kind, *entity, *id, *summary)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_owners_and_deployments_appear_change_and_disappear() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let db = connect(&etcd, "").await?;
    write(&db, &[("/pb/batch-20261201-0000", Some(r#"{"pb_id": "batch-20261201-0000", "workflow": {"type": "batch", "id": "ical", "version": "1"}}"#)), ("/deploy/mine", Some(r#"{"deploy_id": "mine", "type": "process-direct", "args": {}}"#)), ("/sb/sbi-1", Some("{}"))]).await?;
    let shutdown = CancellationToken::new();
    let follower = overview::follow(&db, shutdown.clone());
    let mut changes = follower.subscribe();

    // The listing: what existed before, other paths ignored.
    let first = follower.listed().await?;
    assert_eq!(first.blocks.len(), 1);
    assert_eq!(first.blocks[0].workflow.as_deref(), Some("batch:ical:1"));
    assert_eq!(first.blocks[0].status, None);
    assert_eq!(first.orphans, ["mine"]);

    // A block with its state, as the controller writes them.
    write(&db, &[("/pb/realtime-20261201-0000", Some(PB)), ("/pb/realtime-20261201-0000/state", Some(r#"{"resources_available": false, "since": "2026-12-01T10:00:00Z", "status": "STARTING"}"#))]).await?;
    let s = until(&follower, |s| s.block(ID).is_some()).await?;
    let b = s.block(ID).context("block")?;
    assert_eq!(b.status.as_deref(), Some("STARTING"));
    assert_eq!(b.since.as_deref(), Some("2026-12-01T10:00:00Z"));
    assert_eq!(b.owner, None);
    expect_changes(
        &mut changes,
        &[(
            ChangeKind::Added,
            Entity::Block,
            ID,
            "block realtime-20261201-0000 added: workflow realtime:testdask:0.1.0; status STARTING",
        )],
    )
    .await?;

    // Its workflow deployment, then the deployer's report with the workload.
    write(
        &db,
        &[("/deploy/realtime-20261201-0000-workflow", Some(WORKFLOW))],
    )
    .await?;
    let s = until(&follower, |s| s.deployment(DEPLOY).is_some()).await?;
    assert_eq!(s.block(ID).context("block")?.deployments, [DEPLOY]);
    let d = s.deployment(DEPLOY).context("deployment")?;
    assert_eq!(
        (d.kind.as_deref(), d.chart.as_deref(), d.block.as_deref()),
        (Some("helm"), Some("workflow"), Some(ID))
    );
    write(&db, &[("/deploy/realtime-20261201-0000-workflow/state", Some(r#"{"status": "DEPLOYED", "message": "installed: revision 1", "workload": {"phase": "FAILED", "message": "pod p: image cannot be pulled (ImagePullBackOff)", "pods": []}}"#))]).await?;
    let s = until(&follower, |s| {
        s.deployment(DEPLOY).is_some_and(|d| d.status.is_some())
    })
    .await?;
    let d = s.deployment(DEPLOY).context("deployment")?;
    assert_eq!(d.status.as_deref(), Some("DEPLOYED"));
    assert_eq!(d.message.as_deref(), Some("installed: revision 1"));
    assert_eq!(d.workload_phase.as_deref(), Some("FAILED"));
    assert_eq!(
        d.workload_message.as_deref(),
        Some("pod p: image cannot be pulled (ImagePullBackOff)")
    );
    expect_changes(
        &mut changes,
        &[
            (ChangeKind::Added, Entity::Deployment, DEPLOY, "deployment realtime-20261201-0000-workflow added: helm; chart workflow"),
            (ChangeKind::Changed, Entity::Deployment, DEPLOY, "deployment realtime-20261201-0000-workflow: status none → DEPLOYED; workload none → FAILED; message: installed: revision 1; workload message: pod p: image cannot be pulled (ImagePullBackOff)"),
        ],
    )
    .await?;

    // An owner on a real lease: alive, then gone when the lease is revoked.
    let lease = db.grant_lease(Duration::from_secs(10)).await?;
    let lease_id = lease.id();
    db.transact(|t| Box::pin(async move { t.create_leased("/pb/realtime-20261201-0000/owner", r#"{"command": ["testdask.py", "--password", "s3cret"], "hostname": "node-7", "pid": 41}"#, Some(lease_id)).await })).await?;
    let s = until(&follower, |s| {
        s.block(ID).is_some_and(|b| b.owner.is_some())
    })
    .await?;
    assert_eq!(
        s.block(ID)
            .and_then(|b| b.owner.as_ref())
            .map(|o| o.to_string())
            .as_deref(),
        Some("node-7:41")
    );
    assert_eq!(s.totals.owners_alive, 1);
    write(
        &db,
        &[(
            "/pb/realtime-20261201-0000/state",
            Some(r#"{"since": "2026-12-01T10:00:00Z", "status": "RUNNING"}"#),
        )],
    )
    .await?;
    lease.revoke().await?;
    until(&follower, |s| {
        s.block(ID).is_some_and(|b| b.owner.is_none())
    })
    .await?;
    expect_changes(
        &mut changes,
        &[
            (
                ChangeKind::Changed,
                Entity::Block,
                ID,
                "block realtime-20261201-0000: owner alive (node-7:41)",
            ),
            (
                ChangeKind::Changed,
                Entity::Block,
                ID,
                "block realtime-20261201-0000: status STARTING → RUNNING",
            ),
            (
                ChangeKind::Changed,
                Entity::Block,
                ID,
                "block realtime-20261201-0000: owner gone",
            ),
        ],
    )
    .await?;

    // The block goes: its deployment belongs to no block until it goes too.
    write(&db, &[("/pb/realtime-20261201-0000", None)]).await?;
    let s = until(&follower, |s| s.block(ID).is_none()).await?;
    assert_eq!(s.orphans, ["mine", DEPLOY]);
    assert_eq!(s.deployment(DEPLOY).context("deployment")?.block, None);
    write(&db, &[("/deploy/realtime-20261201-0000-workflow", None)]).await?;
    let s = until(&follower, |s| s.deployment(DEPLOY).is_none()).await?;
    assert_eq!(s.totals.blocks, 1);
    assert_eq!(s.totals.deployments, 1);
    expect_changes(
        &mut changes,
        &[
            (
                ChangeKind::Removed,
                Entity::Block,
                ID,
                "block realtime-20261201-0000 removed",
            ),
            (
                ChangeKind::Removed,
                Entity::Deployment,
                DEPLOY,
                "deployment realtime-20261201-0000-workflow removed",
            ),
        ],
    )
    .await?;

    // Nothing of the values beyond the shown fields reached the snapshot.
    write(
        &db,
        &[
            ("/pb/realtime-20261201-0000", Some(PB)),
            ("/deploy/realtime-20261201-0000-workflow", Some(WORKFLOW)),
        ],
    )
    .await?;
    let s = until(&follower, |s| {
        s.block(ID).is_some_and(|b| !b.deployments.is_empty())
    })
    .await?;
    let json = serde_json::to_string(&*s)?;
    assert!(!json.contains("s3cret"), "{json}");
    shutdown.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_never_shown_half_applied() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let db = connect(&etcd, "").await?;
    let follower = overview::follow(&db, CancellationToken::new());
    follower.listed().await?;
    let mut rx = follower.snapshots();
    let watcher = tokio::spawn(async move {
        // Every snapshot published: a block never without its state.
        let mut seen = 0;
        while rx.changed().await.is_ok() {
            let s = rx.borrow_and_update().clone();
            for b in &s.blocks {
                if b.status.is_none() {
                    bail!(
                        "block {} shown without its state at revision {}",
                        b.id,
                        s.revision
                    );
                }
            }
            seen += 1;
            if s.blocks.len() == 50 {
                return Ok(seen);
            }
        }
        bail!("the follower stopped")
    });
    for i in 0..50 {
        let path = format!("/pb/batch-20261201-{i:04}");
        let state = format!("{path}/state");
        write(
            &db,
            &[
                (&path, Some("{}")),
                (&state, Some(r#"{"status": "STARTING"}"#)),
            ],
        )
        .await?;
    }
    let seen = tokio::time::timeout(DEADLINE, watcher).await???;
    assert!(seen >= 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_prefix_is_honoured() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let plain = connect(&etcd, "").await?;
    let test = connect(&etcd, "/test").await?;
    write(
        &plain,
        &[
            ("/pb/outside", Some("{}")),
            ("/deploy/outside-x", Some("{}")),
        ],
    )
    .await?;
    write(
        &test,
        &[("/pb/inside", Some("{}")), ("/deploy/inside-x", Some("{}"))],
    )
    .await?;
    let follower = overview::follow(&test, CancellationToken::new());
    let s = follower.listed().await?;
    // Read once: the same picture.
    assert_eq!(overview::read(&test).await?, *s);
    let ids: Vec<&str> = s.blocks.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["inside"]);
    assert_eq!(
        s.block("inside").context("inside")?.deployments,
        ["inside-x"]
    );
    write(&plain, &[("/pb/outside2", Some("{}"))]).await?;
    write(&test, &[("/pb/inside2", Some("{}"))]).await?;
    let s = until(&follower, |s| s.block("inside2").is_some()).await?;
    assert!(s.block("outside2").is_none() && s.block("outside").is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_survives_an_etcd_restart() -> Result<()> {
    let mut etcd = EtcdServer::start()?;
    let db = connect(&etcd, "").await?;
    let follower = overview::follow(&db, CancellationToken::new());
    let mut changes = follower.subscribe();
    follower.listed().await?;
    write(&db, &[("/pb/before", Some("{}"))]).await?;
    until(&follower, |s| s.block("before").is_some()).await?;
    etcd.kill();
    let etcd = tokio::task::spawn_blocking(move || etcd.restart().map(|()| etcd)).await??;
    // Writes may fail while etcd comes back.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while write(&db, &[("/pb/after", Some("{}"))]).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            bail!("etcd did not come back");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = until(&follower, |s| s.block("after").is_some()).await?;
    assert!(s.block("before").is_some());
    expect_changes(
        &mut changes,
        &[
            (
                ChangeKind::Added,
                Entity::Block,
                "before",
                "block before added: workflow none",
            ),
            (
                ChangeKind::Added,
                Entity::Block,
                "after",
                "block after added: workflow none",
            ),
        ],
    )
    .await?;
    drop(etcd);
    Ok(())
}
