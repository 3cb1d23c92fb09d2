//! Fault tests with the real binary: etcd killed mid-burst, the controller killed
//! mid-burst, several replicas. Every block must end with exactly one workflow
//! deployment and one state, deleted blocks with nothing, and no log line may report a
//! duplicate create or an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sdp_config::Config;
use tokio::task::JoinSet;

const BURST: usize = 1000;

fn ids(day: &str) -> Vec<String> {
    (0..BURST)
        .map(|i| format!("realtime-{day}-{i:04}"))
        .collect()
}

/// Create the blocks from 8 concurrent writers (each retrying across etcd outages).
fn spawn_writers(db: &Config, ids: &[String]) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(8)) {
        let db = db.clone();
        let chunk = chunk.to_vec();
        set.spawn(async move {
            for id in chunk {
                create_retrying(
                    &db,
                    &format!("/pb/{id}"),
                    &sdpcfg_block(&id, "realtime", "testdask"),
                )
                .await;
            }
        });
    }
    set
}

async fn deployments(db: &Config) -> usize {
    keys_at(db, "/deploy/", 0).await.len()
}

async fn wait_deployments(db: &Config, n: usize) {
    wait_for(&format!("{n} deployments"), || async {
        (deployments(db).await >= n).then_some(())
    })
    .await;
}

/// Delete every 25th block; returns the blocks that remain.
async fn delete_some(env: &Env, ids: &[String]) -> Vec<String> {
    let mut live = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if i % 25 == 7 {
            env.delete_tree(&format!("/pb/{id}")).await;
        } else {
            live.push(id.clone());
        }
    }
    live
}

async fn is_leader(addr: &str) -> bool {
    http_get(addr, "/metrics")
        .await
        .is_some_and(|(_, body)| body.lines().any(|l| l == "sdp_controller_is_leader 1"))
}

fn assert_clean_logs(controllers: &[&Binary]) {
    for c in controllers {
        let bad = bad_log_lines(&c.log_text());
        assert!(bad.is_empty(), "{}: {bad:#?}", c.log.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_and_restarted_in_the_middle_of_a_burst() -> TestResult {
    let mut env = Env::start().await;
    let mut ctl = Binary::start(
        &env.etcd,
        &env.registry,
        env.dir.path().join("controller.log"),
        &[],
    );
    wait_for("ready", || async {
        http_get(&ctl.http_addr, "/readyz")
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    let ids = ids("20200505");
    let mut writers = spawn_writers(&env.db, &ids);
    wait_deployments(&env.db, 200).await;
    let before = deployments(&env.db).await;
    env.etcd.kill();
    assert!(
        before < ids.len(),
        "the burst had finished ({before} deployments) before etcd was killed: nothing tested"
    );
    let at_kill = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.etcd.restart()?;
    eprintln!(
        "etcd killed after {before} deployments, down for {:?}",
        at_kill.elapsed()
    );
    while writers.join_next().await.is_some() {}
    let live = delete_some(&env, &ids).await;
    wait_consistent(
        &env.db,
        &live,
        "every live block deployed once after the etcd restart",
    )
    .await;
    assert!(
        ctl.child.try_wait()?.is_none(),
        "the controller exited:\n{}",
        ctl.log_text()
    );
    // The controller noticed the outage (its watches reconnected) and carried on.
    let (_, metrics) = http_get(&ctl.http_addr, "/metrics").await.unwrap();
    let reconnects: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sdp_controller_etcd_watch_reconnects_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(reconnects >= 1, "no watch reconnect counted:\n{metrics}");
    assert_clean_logs(&[&ctl]);
    ctl.sigkill();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_killed_in_the_middle_of_a_burst_and_restarted() -> TestResult {
    let env = Env::start().await;
    let fast = [("SDP_LEADER_TTL", "3")];
    let mut first = Binary::start(
        &env.etcd,
        &env.registry,
        env.dir.path().join("first.log"),
        &fast,
    );
    wait_for("ready", || async {
        http_get(&first.http_addr, "/readyz")
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    let ids = ids("20200606");
    let mut writers = spawn_writers(&env.db, &ids);
    wait_deployments(&env.db, 200).await;
    first.sigkill();
    let killed_at = deployments(&env.db).await;
    eprintln!("SIGKILL after {killed_at} deployments");
    assert!(
        killed_at < ids.len(),
        "the burst had finished ({killed_at} deployments) before the SIGKILL: nothing tested"
    );
    let second = Binary::start(
        &env.etcd,
        &env.registry,
        env.dir.path().join("second.log"),
        &fast,
    );
    while writers.join_next().await.is_some() {}
    let live = delete_some(&env, &ids).await;
    wait_consistent(
        &env.db,
        &live,
        "every live block deployed once after the restart",
    )
    .await;
    assert_clean_logs(&[&first, &second]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_at_once_one_acts_and_the_other_takes_over() -> TestResult {
    let env = Env::start().await;
    let a = Binary::start(&env.etcd, &env.registry, env.dir.path().join("a.log"), &[]);
    let b = Binary::start(&env.etcd, &env.registry, env.dir.path().join("b.log"), &[]);
    for c in [&a, &b] {
        wait_for("ready", || async {
            http_get(&c.http_addr, "/readyz")
                .await
                .filter(|r| r.0 == 200)
        })
        .await;
    }
    let ids = ids("20200707");
    let mut writers = spawn_writers(&env.db, &ids);
    while writers.join_next().await.is_some() {}
    let live = delete_some(&env, &ids).await;
    wait_consistent(
        &env.db,
        &live,
        "every block deployed once with two controllers",
    )
    .await;
    assert_clean_logs(&[&a, &b]);
    let leaders = [is_leader(&a.http_addr).await, is_leader(&b.http_addr).await];
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "exactly one leader: {leaders:?}"
    );
    let (mut leader, standby) = if leaders[0] { (a, b) } else { (b, a) };
    let (_, ready) = http_get(&standby.http_addr, "/readyz").await.unwrap();
    assert_eq!(ready, "ready (standby)\n");

    // The leader dies: the standby acts within 15 s.
    leader.sigkill();
    let died = Instant::now();
    env.put(
        "/pb/realtime-20200707-9999",
        &sdpcfg_block("realtime-20200707-9999", "realtime", "testdask"),
    )
    .await;
    wait_for_within("takeover", Duration::from_secs(20), || async {
        env.get("/deploy/realtime-20200707-9999-workflow").await
    })
    .await;
    let takeover = died.elapsed();
    eprintln!("takeover after {takeover:?}");
    assert!(takeover < Duration::from_secs(15), "took {takeover:?}");

    // A graceful stop (SIGTERM) resigns at once: a third replica takes over quickly.
    let third = Binary::start(&env.etcd, &env.registry, env.dir.path().join("c.log"), &[]);
    wait_for("ready", || async {
        http_get(&third.http_addr, "/readyz")
            .await
            .filter(|r| r.0 == 200)
    })
    .await;
    let mut standby = standby;
    standby.sigterm();
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = standby.child.try_wait()? {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        standby.log_text().contains("resigned leadership"),
        "{}",
        standby.log_text()
    );
    wait_for_within(
        "the third replica to lead",
        Duration::from_secs(5),
        || async { is_leader(&third.http_addr).await.then_some(()) },
    )
    .await;
    env.put(
        "/pb/realtime-20200707-9998",
        &sdpcfg_block("realtime-20200707-9998", "realtime", "testdask"),
    )
    .await;
    env.wait_value("/deploy/realtime-20200707-9998-workflow")
        .await;
    assert_clean_logs(&[&leader, &standby, &third]);
    Ok(())
}
