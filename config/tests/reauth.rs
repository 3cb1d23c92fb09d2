//! Against a real etcd with authentication and a 3-second `--auth-token-ttl`: a client
//! idle past the TTL (its token expired) keeps working. Reads, transactions, new
//! watches, `wait_for_change`, leases and elections re-authenticate and carry on;
//! watches, leases and leadership made before the expiry keep going without losing an
//! event. (Before re-authentication, every request failed "invalid auth token" from
//! then on.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use sdp_config::{Config, DEFAULT_TTL, WatchEvent};
use sdp_testing::{EtcdOptions, EtcdServer};
use tokio_util::sync::CancellationToken;

const TOKEN_TTL: u32 = 3;
/// Idle this long: the token is gone (etcd sweeps expired simple tokens every second).
const IDLE: Duration = Duration::from_secs(TOKEN_TTL as u64 + 2);
const DEADLINE: Duration = Duration::from_secs(15);

fn start() -> Result<EtcdServer> {
    Ok(EtcdServer::start_with(EtcdOptions {
        auth: Some(("sdp".into(), "secret".into())),
        auth_token_ttl: Some(TOKEN_TTL),
        ..Default::default()
    })?)
}

async fn put(db: &Config, path: &str, value: &str) -> Result<i64> {
    let (p, v) = (path.to_string(), value.to_string());
    let ((), committed) = db
        .transact_reads(|t| {
            let (p, v) = (p.clone(), v.clone());
            Box::pin(async move { t.put(&p, &v) })
        })
        .await?;
    Ok(committed.revision)
}

async fn get(db: &Config, path: &str) -> Result<Option<String>> {
    let p = path.to_string();
    Ok(db
        .transact(|t| {
            let p = p.clone();
            Box::pin(async move { t.get(&p).await })
        })
        .await?)
}

async fn next_put(watch: &mut sdp_config::Watch) -> Result<String> {
    match tokio::time::timeout(DEADLINE, watch.next()).await {
        Ok(Some(WatchEvent::Put(e))) => Ok(e.path),
        other => bail!("expected a put, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_idle_past_the_token_ttl_authenticates_again_and_carries_on() -> Result<()> {
    let etcd = start()?;
    let db = Config::connect(&etcd.connection()).await?;
    let cancel = CancellationToken::new();

    // Made while the first token is fresh.
    let leadership = db
        .election("reauth")
        .campaign("me", Duration::from_secs(4), &cancel)
        .await?;
    let lease = db.grant_lease(Duration::from_secs(4)).await?;
    let mut old_watch = db.watch("/a/", 0, None)?;
    ensure!(matches!(
        old_watch.next().await,
        Some(WatchEvent::Listed { .. })
    ));
    put(&db, "/a/before", "1").await?;
    assert_eq!(next_put(&mut old_watch).await?, "/a/before");

    tokio::time::sleep(IDLE).await;

    // Unary requests: a read and a transaction.
    assert_eq!(
        get(&db, "/a/before")
            .await
            .context("get after idle")?
            .as_deref(),
        Some("1")
    );
    let rev = put(&db, "/a/after", "2").await.context("txn after idle")?;
    // The watch made before sees the write made after, once.
    assert_eq!(next_put(&mut old_watch).await?, "/a/after");

    tokio::time::sleep(IDLE).await;
    // A new watch (its creation is refused with the expired token inside the stream).
    let mut new_watch = db.watch("/a/", 0, Some(rev + 1))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&db, "/a/later", "3").await?;
    assert_eq!(
        next_put(&mut new_watch)
            .await
            .context("new watch after idle")?,
        "/a/later"
    );

    tokio::time::sleep(IDLE).await;
    // wait_for_change, on a watch of its own.
    let ((), committed) = db
        .transact_reads(|t| Box::pin(async move { t.get("/a/wait").await.map(drop) }))
        .await?;
    tokio::time::sleep(IDLE).await;
    let waiter = tokio::spawn({
        let (db, cancel) = (db.clone(), cancel.clone());
        async move { db.wait_for_change(&committed.reads, &cancel).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    put(&db, "/a/wait", "4").await?;
    tokio::time::timeout(DEADLINE, waiter)
        .await
        .context("wait_for_change missed the change after idle")???;

    tokio::time::sleep(IDLE).await;
    // Leases and elections: the old ones lived through it, new ones can be made.
    ensure!(!lease.is_lost(), "lease lost while idle");
    ensure!(!leadership.is_lost(), "leadership lost while idle");
    let fresh = db
        .grant_lease(DEFAULT_TTL)
        .await
        .context("lease grant after idle")?;
    fresh.revoke().await.context("lease revoke")?;
    leadership.resign().await.context("resign after idle")?;
    tokio::time::sleep(IDLE).await;
    let again = tokio::time::timeout(
        DEADLINE,
        db.election("reauth")
            .campaign("me", Duration::from_secs(4), &cancel),
    )
    .await
    .context("campaign after idle")??;
    again.resign().await?;
    eprintln!(
        "watch re-authentications: {}",
        db.stats().reauthentications.load(Ordering::Relaxed)
    );
    Ok(())
}
