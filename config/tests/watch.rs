//! Watches against a real etcd: listing then changes in order, surviving an etcd kill and
//! restart with every change delivered exactly once, listing again after compaction,
//! and `wait_for_change`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sdp_config::{Config, ConnectionSettings, Entry, Error, Watch, WatchEvent};
use sdp_testing::EtcdServer;
use tokio_util::sync::CancellationToken;

/// Generous: a loaded 2-core machine, and a watch waiting out its reconnect backoff.
const EVENT_DEADLINE: Duration = Duration::from_secs(20);

fn settings(etcd: &EtcdServer) -> ConnectionSettings {
    ConnectionSettings {
        host: etcd.host().into(),
        port: etcd.port(),
        ..Default::default()
    }
}

async fn start() -> Result<(EtcdServer, Config)> {
    let etcd = EtcdServer::start()?;
    let db = Config::connect(&settings(&etcd)).await?;
    Ok((etcd, db))
}

/// A change as a consumer sees it: path, value (`None`: deleted), revision.
type Change = (String, Option<String>, i64);

/// Put `value` at `path` (`None`: delete it); the change with its commit revision.
async fn change(db: &Config, path: &str, value: Option<&str>) -> Result<Change> {
    let (p, v) = (path.to_string(), value.map(str::to_string));
    let ((), committed) = db
        .transact_reads(|t| {
            let (p, v) = (p.clone(), v.clone());
            Box::pin(async move {
                match v {
                    Some(v) => t.put(&p, &v),
                    None => t.delete(&p).await,
                }
            })
        })
        .await?;
    Ok((
        path.to_string(),
        value.map(str::to_string),
        committed.revision,
    ))
}

/// As [`change`], retrying while etcd is still coming back after a restart: a write
/// that fails with a request error may still have been applied, so only idempotent
/// puts are retried, and the revision is taken from a read afterwards.
async fn change_after_restart(db: &Config, path: &str, value: &str) -> Result<Change> {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        match change(db, path, Some(value)).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                eprintln!("write after restart failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                // An earlier attempt may have been applied: then do not write twice.
                let p = path.to_string();
                let current = db
                    .transact(|t| {
                        let p = p.clone();
                        Box::pin(async move { t.get_with_revision(&p).await })
                    })
                    .await;
                if let Ok(Some((v, rev))) = current
                    && v == value
                {
                    return Ok((path.to_string(), Some(v), rev));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

async fn next_event(watch: &mut Watch) -> Result<WatchEvent> {
    match tokio::time::timeout(EVENT_DEADLINE, watch.next()).await {
        Ok(Some(ev)) => Ok(ev),
        Ok(None) => bail!("the watch ended"),
        Err(_) => bail!("no watch event within {EVENT_DEADLINE:?}"),
    }
}

fn as_change(ev: &WatchEvent) -> Result<Change> {
    Ok(match ev {
        WatchEvent::Put(Entry {
            path,
            value,
            mod_revision,
            ..
        }) => (path.clone(), Some(value.clone()), *mod_revision),
        WatchEvent::Deleted { path, revision } => (path.clone(), None, *revision),
        WatchEvent::Listed { .. } => bail!("unexpected listing {ev:?}"),
    })
}

/// Changes from the watch up to and including the one at `until` (a sentinel change).
async fn changes_until(watch: &mut Watch, until: &Change) -> Result<Vec<Change>> {
    let mut seen = Vec::new();
    loop {
        let c = as_change(&next_event(watch).await?).with_context(|| format!("after {seen:?}"))?;
        let done = &c == until;
        seen.push(c);
        if done {
            return Ok(seen);
        }
    }
}

fn listed_paths(ev: &WatchEvent) -> Result<(i64, Vec<(String, String)>)> {
    match ev {
        WatchEvent::Listed { revision, entries } => Ok((
            *revision,
            entries
                .iter()
                .map(|e| (e.path.clone(), e.value.clone()))
                .collect(),
        )),
        other => bail!("expected a listing, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_lists_then_delivers_puts_and_deletes_in_order() -> Result<()> {
    let (_etcd, db) = start().await?;
    change(&db, "/pb/one", Some("1")).await?;
    change(&db, "/pb/one/state", Some("s")).await?;
    let mut watch = db.watch("/pb/", 0, None)?;
    let (_, listed) = listed_paths(&next_event(&mut watch).await?)?;
    assert_eq!(
        listed,
        [("/pb/one".to_string(), "1".to_string())],
        "only the level asked for"
    );

    let mut expected = Vec::new();
    expected.push(change(&db, "/pb/two", Some("2")).await?);
    expected.push(change(&db, "/pb/one", Some("1b")).await?);
    // One level below, and beside the prefix: not part of this watch.
    change(&db, "/pb/two/state", Some("s")).await?;
    change(&db, "/pbx", Some("x")).await?;
    expected.push(change(&db, "/pb/two", None).await?);
    expected.push(change(&db, "/pb/zzz", Some("end")).await?);
    let sentinel = expected.last().context("no changes")?.clone();
    assert_eq!(changes_until(&mut watch, &sentinel).await?, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_survives_etcd_restarting_and_delivers_every_change_once_in_order() -> Result<()> {
    let (mut etcd, db) = start().await?;
    let mut watch = db.watch("/pb/", 0, None)?;
    let (_, listed) = listed_paths(&next_event(&mut watch).await?)?;
    ensure!(listed.is_empty());

    let mut expected = Vec::new();
    // Delivered before the kill.
    for i in 0..3 {
        expected.push(change(&db, &format!("/pb/before-{i}"), Some("v")).await?);
    }
    let mut seen = changes_until(&mut watch, &expected[2].clone()).await?;
    // Made just before the kill: may or may not be delivered before it.
    expected.push(change(&db, "/pb/before-0", Some("v2")).await?);
    expected.push(change(&db, "/pb/before-1", None).await?);
    let reconnects = db.stats().watch_reconnects.load(Ordering::Relaxed);

    etcd.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let etcd = tokio::task::spawn_blocking(move || etcd.restart().map(|()| etcd)).await??;

    // Right after the restart, likely before the watch has reconnected …
    expected.push(change_after_restart(&db, "/pb/after-0", "v").await?);
    expected.push(change(&db, "/pb/before-2", None).await?);
    // … and once it surely has.
    tokio::time::sleep(Duration::from_secs(1)).await;
    expected.push(change(&db, "/pb/after-1", Some("v")).await?);
    let sentinel = change(&db, "/pb/zzz", Some("end")).await?;
    expected.push(sentinel.clone());

    seen.extend(changes_until(&mut watch, &sentinel).await?);
    assert_eq!(
        seen, expected,
        "every change exactly once, in revision order"
    );
    assert!(
        seen.windows(2).all(|w| w[0].2 < w[1].2),
        "revisions increase: {seen:?}"
    );
    assert!(
        db.stats().watch_reconnects.load(Ordering::Relaxed) > reconnects,
        "the watch was really disconnected by the kill"
    );
    drop(etcd);
    Ok(())
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_lists_the_current_contents() -> Result<()> {
    let (etcd, db) = start().await?;
    let (_, _, old) = change(&db, "/pb/a", Some("1")).await?;
    change(&db, "/pb/b", Some("1")).await?;
    change(&db, "/pb/a", Some("2")).await?;
    change(&db, "/pb/b", None).await?;
    change(&db, "/pb/c", Some("3")).await?;
    let (_, _, latest) = change(&db, "/pb/c/state", Some("s")).await?;
    etcd.compact()?;

    // As a watcher that was away while history up to now was compacted.
    let mut watch = db.watch("/pb/", 0, Some(old + 1))?;
    let (revision, listed) = listed_paths(&next_event(&mut watch).await?)?;
    assert!(
        revision >= latest,
        "listing at {revision}, older than the last change {latest}"
    );
    assert_eq!(
        listed,
        [
            ("/pb/a".to_string(), "2".to_string()),
            ("/pb/c".to_string(), "3".to_string())
        ]
    );
    // And it goes on with the changes after the listing.
    let next = change(&db, "/pb/d", Some("4")).await?;
    assert_eq!(changes_until(&mut watch, &next).await?, [next]);
    Ok(())
}

#[tokio::test]
async fn a_watch_from_an_uncompacted_revision_replays_history_without_listing() -> Result<()> {
    let (_etcd, db) = start().await?;
    let first = change(&db, "/pb/a", Some("1")).await?;
    let second = change(&db, "/pb/a", None).await?;
    let mut watch = db.watch("/pb/", 0, Some(first.2))?;
    assert_eq!(changes_until(&mut watch, &second).await?, [first, second]);
    Ok(())
}

/// Spawn `wait_for_change` on what a transaction (reading `/w/key`, listing `/w/list/`)
/// read, and check it is still waiting after 300 ms without a relevant change.
async fn waiting(
    db: &Config,
) -> Result<(
    tokio::task::JoinHandle<sdp_config::Result<()>>,
    CancellationToken,
)> {
    let ((), committed) = db
        .transact_reads(|t| {
            Box::pin(async move {
                t.get("/w/key").await?;
                t.list_keys("/w/list/", 0).await?;
                Ok(())
            })
        })
        .await?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (db, cancel) = (db.clone(), cancel.clone());
        async move { db.wait_for_change(&committed.reads, &cancel).await }
    });
    // Keys between the read key and the listed range, and below the range: not read.
    change(db, "/w/other", Some("x")).await?;
    change(db, "/w/list/a/state", Some("x")).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        !task.is_finished(),
        "returned without a change to anything read: {:?}",
        task.await
    );
    Ok((task, cancel))
}

async fn returns_soon(task: tokio::task::JoinHandle<sdp_config::Result<()>>) -> Result<()> {
    tokio::time::timeout(EVENT_DEADLINE, task)
        .await
        .context("still waiting after the change")???;
    Ok(())
}

#[tokio::test]
async fn wait_for_change_returns_when_a_key_read_changes_and_not_before() -> Result<()> {
    let (_etcd, db) = start().await?;
    change(&db, "/w/key", Some("1")).await?;
    change(&db, "/w/list/a", Some("1")).await?;
    let (task, _cancel) = waiting(&db).await?;
    change(&db, "/w/key", Some("2")).await?;
    returns_soon(task).await
}

#[tokio::test]
async fn wait_for_change_returns_when_a_key_is_created_in_a_listed_range() -> Result<()> {
    let (_etcd, db) = start().await?;
    change(&db, "/w/key", Some("1")).await?;
    let (task, _cancel) = waiting(&db).await?;
    change(&db, "/w/list/b", Some("new")).await?;
    returns_soon(task).await
}

#[tokio::test]
async fn wait_for_change_sees_a_change_made_between_reading_and_waiting() -> Result<()> {
    let (_etcd, db) = start().await?;
    let ((), committed) = db
        .transact_reads(|t| Box::pin(async move { t.get("/w/key").await.map(drop) }))
        .await?;
    change(&db, "/w/key", Some("created")).await?;
    let cancel = CancellationToken::new();
    tokio::time::timeout(
        EVENT_DEADLINE,
        db.wait_for_change(&committed.reads, &cancel),
    )
    .await
    .context("missed a change made before waiting")??;
    Ok(())
}

#[tokio::test]
async fn wait_for_change_returns_cancelled_when_cancelled() -> Result<()> {
    let (_etcd, db) = start().await?;
    let (task, cancel) = waiting(&db).await?;
    cancel.cancel();
    let result = tokio::time::timeout(EVENT_DEADLINE, task)
        .await
        .context("ignored cancellation")??;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    Ok(())
}
