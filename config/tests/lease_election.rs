//! Leases and leader election against a real etcd: an owner key vanishes within its TTL
//! when its holder dies, at once on revoke; leadership moves to the next candidate when
//! the leader dies or resigns, a deposed leader's guarded writes fail, and observers see
//! every change of leader.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sdp_config::entity::{Owner, ProcessingBlock};
use sdp_config::{Config, Error, Leadership};
use sdp_testing::EtcdServer;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(3);
/// Beyond the TTL: etcd checks expiry periodically and a loaded machine is slow.
const MARGIN: Duration = Duration::from_secs(3);

async fn get(db: &Config, path: &str) -> Result<Option<String>> {
    let path = path.to_string();
    Ok(db
        .transact(|t| {
            let path = path.clone();
            Box::pin(async move { t.get(&path).await })
        })
        .await?)
}

async fn create_leased(db: &Config, path: &str, value: &str, lease: i64) -> Result<()> {
    let (path, value) = (path.to_string(), value.to_string());
    db.transact(|t| {
        let (path, value) = (path.clone(), value.clone());
        Box::pin(async move { t.create_leased(&path, &value, Some(lease)).await })
    })
    .await?;
    Ok(())
}

/// Poll until `path` is gone; how long it took.
async fn gone_within(db: &Config, path: &str, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    while get(db, path).await?.is_some() {
        ensure!(
            started.elapsed() < limit,
            "{path} still there after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

#[tokio::test]
async fn an_owner_key_vanishes_within_the_ttl_after_its_holder_dies() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let db = Config::connect(&etcd.connection()).await?;
    let holder = Config::connect(&etcd.connection()).await?;
    let path = ProcessingBlock::owner_path("pb-lease-20240101-00000");
    let owner = Owner::this_process().to_json();

    let lease = holder.grant_lease(TTL).await?;
    assert_eq!(lease.ttl(), TTL);
    create_leased(&holder, &path, &owner, lease.id()).await?;
    // Kept alive in the background: still there well past one TTL.
    tokio::time::sleep(TTL + Duration::from_secs(1)).await;
    assert_eq!(
        get(&db, &path).await?.as_deref(),
        Some(owner.as_str()),
        "expired while its holder lived"
    );
    assert!(!lease.is_lost());

    drop(lease); // the holder dies: no revoke, the refreshes just stop
    let took = gone_within(&db, &path, TTL + MARGIN).await?;
    eprintln!("owner key gone {took:?} after its holder died (TTL {TTL:?})");
    Ok(())
}

#[tokio::test]
async fn revoking_a_lease_deletes_its_keys_at_once() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let db = Config::connect(&etcd.connection()).await?;
    let lease = db.grant_lease(Duration::from_secs(30)).await?;
    create_leased(&db, "/pb/x/owner", "{}", lease.id()).await?;
    create_leased(&db, "/pb/y/owner", "{}", lease.id()).await?;
    ensure!(get(&db, "/pb/x/owner").await?.is_some());
    let id = lease.id();
    ensure!(db.lease_exists(id).await?, "a live lease exists");
    lease.revoke().await?;
    assert_eq!(get(&db, "/pb/x/owner").await?, None);
    assert_eq!(get(&db, "/pb/y/owner").await?, None);
    ensure!(!db.lease_exists(id).await?, "a revoked lease is gone");
    ensure!(
        !db.lease_exists(0x1234_5678).await?,
        "an unknown lease is gone"
    );
    Ok(())
}

async fn campaign(db: &Config, name: &'static str) -> Result<Leadership> {
    Ok(db
        .election("controller")
        .campaign(name, TTL, &CancellationToken::new())
        .await?)
}

/// Wait until the observed leader is `want`.
async fn observed(rx: &mut tokio::sync::watch::Receiver<Option<String>>, want: &str) -> Result<()> {
    tokio::time::timeout(TTL + MARGIN, rx.wait_for(|v| v.as_deref() == Some(want)))
        .await
        .with_context(|| format!("observe() never reported {want} as leader"))??;
    Ok(())
}

async fn guarded_put(
    db: &Config,
    leadership: &sdp_config::Guard,
    path: &str,
) -> sdp_config::Result<()> {
    let mut txn = db.txn();
    txn.require(leadership);
    txn.put(path, "{}")?;
    txn.commit().await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_next_candidate_when_the_leader_dies_or_resigns() -> Result<()> {
    let etcd = EtcdServer::start()?;
    // Each candidate its own connection, as separate replicas.
    let (db_a, db_b, db_c) = (
        Config::connect(&etcd.connection()).await?,
        Config::connect(&etcd.connection()).await?,
        Config::connect(&etcd.connection()).await?,
    );
    let watcher = Config::connect(&etcd.connection()).await?;
    let election = watcher.election("controller");
    let mut leaders = election.observe();

    let a = campaign(&db_a, "A").await?;
    observed(&mut leaders, "A").await?;
    assert_eq!(election.leader().await?.as_deref(), Some("A"));
    let guard_a = a.guard();
    guarded_put(&db_a, &guard_a, "/led/by-a").await?;

    let b = tokio::spawn({
        let db_b = db_b.clone();
        async move { campaign(&db_b, "B").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(!b.is_finished(), "B became leader while A still leads");

    drop(a); // A dies: its lease is no longer refreshed, nothing is resigned
    let died = Instant::now();
    let b = tokio::time::timeout(TTL + MARGIN, b)
        .await
        .context("B did not take over within the TTL")???;
    let took = died.elapsed();
    eprintln!("B took over {took:?} after A died (TTL {TTL:?})");
    assert_eq!(election.leader().await?.as_deref(), Some("B"));
    observed(&mut leaders, "B").await?;

    let deposed = guarded_put(&db_a, &guard_a, "/led/by-a-after").await;
    assert!(
        matches!(&deposed, Err(Error::NotLeader { election }) if election == "controller"),
        "{deposed:?}"
    );
    assert_eq!(get(&db_a, "/led/by-a-after").await?, None);
    guarded_put(&db_b, &b.guard(), "/led/by-b").await?;

    let c = tokio::spawn({
        let db_c = db_c.clone();
        async move { campaign(&db_c, "C").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(!c.is_finished(), "C became leader while B still leads");
    let guard_b = b.guard();
    let resigned = Instant::now();
    b.resign().await?;
    let c = tokio::time::timeout(Duration::from_secs(2), c)
        .await
        .context("C did not take over at once on resign")???;
    eprintln!("C took over {:?} after B resigned", resigned.elapsed());
    assert!(!c.is_lost());
    observed(&mut leaders, "C").await?;
    let deposed = guarded_put(&db_b, &guard_b, "/led/by-b-after").await;
    assert!(
        matches!(deposed, Err(Error::NotLeader { .. })),
        "{deposed:?}"
    );

    c.resign().await?;
    assert_eq!(election.leader().await?, None);
    Ok(())
}

// Regression: etcd's Observe stream only ever sends leaders, never "no leader", so an
// observe() built on it stuck at the resigned leader; it now watches the candidate keys.
#[tokio::test]
async fn observe_reports_no_leader_after_the_last_leader_resigns() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let db = Config::connect(&etcd.connection()).await?;
    let election = db.election("controller");
    let mut leaders = election.observe();
    let a = campaign(&db, "A").await?;
    observed(&mut leaders, "A").await?;
    a.resign().await?;
    assert_eq!(
        election.leader().await?,
        None,
        "leader() knows there is none"
    );
    tokio::time::timeout(TTL + MARGIN, leaders.wait_for(Option::is_none))
        .await
        .context("observe() still reports the resigned leader")??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leadership_watch_resumed_after_compaction_still_sees_the_key_deleted() -> Result<()> {
    let mut etcd = EtcdServer::start()?;
    let db = Config::connect(&etcd.connection()).await?;
    let leadership = campaign(&db, "a").await?;
    // History after the leader key, compacted away, then the watch's stream cut: it
    // resumes from a revision etcd no longer has.
    for i in 0..5 {
        let path = format!("/filler/{i}");
        db.transact(move |t| {
            let path = path.clone();
            Box::pin(async move { t.put(&path, "{}") })
        })
        .await?;
    }
    etcd.compact()?;
    etcd.restart()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(!leadership.is_lost(), "leadership lost by a restart alone");
    // The leader key deleted by hand (its lease lives on): only the watch can tell.
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    raw.delete(
        "election/controller/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    tokio::time::timeout(TTL + MARGIN, leadership.lost())
        .await
        .context("the deleted leader key was never noticed (the resumed watch kept hitting the compacted revision)")?;
    Ok(())
}
