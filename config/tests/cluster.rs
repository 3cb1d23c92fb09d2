//! Against a real 3-member etcd cluster on loopback: a host list connects, the client
//! fails over when the member it talks to dies mid-burst, and nothing is lost or done
//! twice: every create exactly once, a watch sees every key exactly once in revision
//! order, leadership and leases survive.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use sdp_config::{Config, ConnectionSettings, DEFAULT_TTL, Error, WatchEvent};
use sdp_testing::EtcdCluster;
use tokio_util::sync::CancellationToken;

const CREATES: usize = 300;
/// Creates in flight at once.
const CONCURRENCY: usize = 8;
/// Creates done before the member is killed.
const KILL_AFTER: usize = 60;
const DEADLINE: Duration = Duration::from_secs(30);

/// The cluster's host list with `first` listed first: the member the client talks to.
fn settings_starting_at(cluster: &EtcdCluster, first: usize) -> ConnectionSettings {
    let mut order: Vec<usize> = (0..cluster.len()).collect();
    order.retain(|&i| i != first);
    order.insert(0, first);
    let hosts = order
        .iter()
        .map(|&i| format!("127.0.0.1:{}", cluster.member(i).port()))
        .collect::<Vec<_>>()
        .join(",");
    ConnectionSettings {
        host: hosts,
        // The daemons' default. Requests wait for a new leader within it, and two
        // surviving members on a loaded machine can take several seconds to elect one
        // (each round 1-2 s, a split vote repeats it): with 5 s, one CI run saw 16
        // creates fail because no member had a leader within the timeout.
        timeout_secs: 10.0,
        ..cluster.connection()
    }
}

/// One create committed directly, as the daemons commit: no re-run on a conflict, so a
/// commit cut off by the kill must come back applied or be sent again, never reported
/// as a conflict that nothing else caused.
async fn create_once(db: &Config, path: String, value: String) -> Result<(), Error> {
    let mut txn = db.txn();
    txn.create(&path, &value).await?;
    txn.commit().await.map(drop)
}

async fn create(db: &Config, path: String, value: String) -> Result<(), Error> {
    db.transact(|t| {
        let (path, value) = (path.clone(), value.clone());
        Box::pin(async move { t.create(&path, &value).await })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_member_in_use_mid_burst_loses_and_repeats_nothing() -> Result<()> {
    let mut cluster = EtcdCluster::start(3)?;
    // The client talks to the raft leader: killing it also costs the cluster its leader,
    // so the other members answer "no leader" / "leader changed" for a while.
    let leader = cluster.leader()?;
    let settings = settings_starting_at(&cluster, leader);
    let db = Config::connect(&settings).await?;
    assert_eq!(db.current_endpoint(), cluster.member(leader).endpoint());
    assert_eq!(db.endpoint().split(',').count(), 3, "{}", db.endpoint());

    // A leader of an election and a leased key, made before the kill.
    let cancel = CancellationToken::new();
    let leadership = db
        .election("cluster-test")
        .campaign("me", Duration::from_secs(5), &cancel)
        .await?;
    let lease = db.grant_lease(DEFAULT_TTL).await?;
    let lease_id = lease.id();
    db.transact(|t| {
        Box::pin(async move { t.create_leased("/owned/x", "{}", Some(lease_id)).await })
    })
    .await?;

    let mut watch = db.watch("/burst/", 0, None)?;
    match watch.next().await {
        Some(WatchEvent::Listed { entries, .. }) if entries.is_empty() => {}
        other => bail!("expected an empty listing first, got {other:?}"),
    }

    let done = Arc::new(AtomicUsize::new(0));
    let burst = tokio::spawn({
        let (db, done) = (db.clone(), done.clone());
        async move {
            futures::stream::iter(0..CREATES)
                .map(|i| {
                    let (db, done) = (db.clone(), done.clone());
                    async move {
                        let (path, value) = (format!("/burst/k{i:04}"), format!("\"v{i}\""));
                        let r = if i % 2 == 0 {
                            create(&db, path, value).await
                        } else {
                            create_once(&db, path, value).await
                        };
                        done.fetch_add(1, Ordering::Relaxed);
                        (i, r)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await
        }
    });
    let started = Instant::now();
    while done.load(Ordering::Relaxed) < KILL_AFTER {
        ensure!(
            started.elapsed() < DEADLINE,
            "burst stalled before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(leader);
    let killed_at = done.load(Ordering::Relaxed);
    eprintln!(
        "killed member {leader} (the one in use, and the raft leader) after {killed_at} creates"
    );

    let results = tokio::time::timeout(DEADLINE, burst)
        .await
        .context("burst did not finish")??;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    ensure!(failed.is_empty(), "creates failed: {failed:?}");
    ensure!(killed_at < CREATES, "the kill came after the burst");
    eprintln!(
        "burst finished {:?} after the start; failovers {}, commits read back {}, conflicts {}",
        started.elapsed(),
        db.stats().failovers.load(Ordering::Relaxed),
        db.stats().unknown_commits.load(Ordering::Relaxed),
        db.stats().conflicts.load(Ordering::Relaxed),
    );
    assert_ne!(db.current_endpoint(), cluster.member(leader).endpoint());
    assert!(db.stats().failovers.load(Ordering::Relaxed) >= 1);

    // The watch saw each key created exactly once, in revision order.
    let mut seen = BTreeSet::new();
    let mut last = 0;
    let watch_deadline = Instant::now() + DEADLINE;
    while seen.len() < CREATES {
        let left = watch_deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, watch.next())
            .await
            .with_context(|| format!("watch saw only {} creates", seen.len()))?
            .context("watch ended")?;
        match ev {
            WatchEvent::Put(e) => {
                ensure!(e.mod_revision > last, "out of order: {e:?} after {last}");
                ensure!(e.create_revision == e.mod_revision, "written twice: {e:?}");
                ensure!(seen.insert(e.path.clone()), "delivered twice: {e:?}");
                last = e.mod_revision;
            }
            other => bail!("unexpected event {other:?}"),
        }
    }
    // Nothing more arrives: no duplicate after the last key.
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
        bail!("event after all {CREATES} creates: {ev:?}");
    }

    // etcd holds each key once, each written by exactly one revision (version 1).
    let keys = db
        .transact(|t| Box::pin(async move { t.list_keys("/burst/", 0).await }))
        .await?;
    assert_eq!(keys.len(), CREATES);

    // Leadership and lease survived the loss of the member they were made on.
    ensure!(!leadership.is_lost(), "leadership lost with the member");
    ensure!(!lease.is_lost(), "lease lost with the member");
    let guard = leadership.guard();
    db.transact(|t| {
        let guard = guard.clone();
        Box::pin(async move {
            t.require(&guard);
            t.put("/guarded", "{}")
        })
    })
    .await
    .context("a leader's guarded write after the failover")?;
    let owned = db
        .transact(|t| Box::pin(async move { t.get("/owned/x").await }))
        .await?;
    assert_eq!(owned.as_deref(), Some("{}"));
    // A new lease, election and watch work on the surviving members.
    let other = db.grant_lease(Duration::from_secs(5)).await?;
    other.revoke().await?;
    leadership.resign().await?;
    let again = db
        .election("cluster-test")
        .campaign("me-again", Duration::from_secs(5), &cancel)
        .await?;
    again.resign().await?;
    Ok(())
}

#[tokio::test]
async fn connect_skips_a_dead_member_and_fails_naming_all_when_none_answers() -> Result<()> {
    let mut cluster = EtcdCluster::start(3)?;
    cluster.kill(0);
    let db = Config::connect(&settings_starting_at(&cluster, 0)).await?;
    // The next member, or the one after if the next had no leader yet (member 0 may
    // have been the leader).
    assert_ne!(db.current_endpoint(), cluster.member(0).endpoint());
    db.transact(|t| Box::pin(async move { t.create("/x", "1").await }))
        .await?;

    cluster.kill(1);
    cluster.kill(2);
    let started = Instant::now();
    let err = match Config::connect(&settings_starting_at(&cluster, 0)).await {
        Ok(_) => bail!("connected to a cluster with every member dead"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::ConnectFailed { .. }), "{err:?}");
    for endpoint in cluster.endpoints() {
        assert!(err.to_string().contains(&endpoint), "{err}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_watch_follows_across_two_failovers_and_a_restarted_member() -> Result<()> {
    let mut cluster = EtcdCluster::start(3)?;
    let db = Config::connect(&settings_starting_at(&cluster, 0)).await?;
    let mut watch = db.watch("/w/", 0, None)?;
    ensure!(matches!(
        watch.next().await,
        Some(WatchEvent::Listed { .. })
    ));
    let mut expect = Vec::new();
    for (round, victim) in [0usize, 1].into_iter().enumerate() {
        let path = format!("/w/before-{round}");
        create(&db, path.clone(), "1".into()).await?;
        expect.push(path);
        cluster.kill(victim);
        let path = format!("/w/after-{round}");
        create(&db, path.clone(), "1".into()).await?;
        expect.push(path);
        cluster.restart(victim)?;
    }
    let mut got = Vec::new();
    while got.len() < expect.len() {
        match tokio::time::timeout(DEADLINE, watch.next()).await {
            Ok(Some(WatchEvent::Put(e))) => got.push(e.path),
            other => bail!("expected a put, got {other:?} after {got:?}"),
        }
    }
    assert_eq!(got, expect);
    assert!(db.stats().failovers.load(Ordering::Relaxed) >= 2);
    Ok(())
}
