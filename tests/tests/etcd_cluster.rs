//! The whole loop on a 3-member etcd cluster: the controller and the deployer (stand-in
//! helm) are given every member, the raft leader first, so they talk to it. Killing that
//! member in the middle of a burst of processing blocks costs nothing: every block gets
//! exactly one workflow deployment and one release, installed once, and nothing else
//! is left.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sdp_config::entity::{ProcessingBlock, WorkflowRef, WorkflowType};
use sdp_e2e::fake_helm;
use sdp_e2e::system::{Options, System, Target, status_of};
use sdp_e2e::wait::{Outcome, eventually};

const BLOCKS: usize = 30;
/// Blocks created before the member is killed.
const KILL_AFTER: usize = 8;
const LIMIT: Duration = Duration::from_secs(50);

fn block_id(i: usize) -> String {
    format!("realtime-20260101-{i:04}")
}

async fn create_block(system_db: &sdp_config::Config, i: usize) -> Result<()> {
    let workflow = WorkflowRef {
        kind: WorkflowType::Realtime,
        id: "testdask".into(),
        version: "0.1.0".into(),
    };
    let pb = ProcessingBlock::new(block_id(i), workflow);
    let (path, value) = (ProcessingBlock::path(&block_id(i)), pb.to_json());
    system_db
        .transact(|t| {
            let (path, value) = (path.clone(), value.clone());
            Box::pin(async move { t.create(&path, &value).await })
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_member_the_daemons_use_mid_burst_deploys_every_block_once() -> Result<()>
{
    let system = System::start(Options {
        etcd_members: 3,
        ..Options::new(Target::FakeHelm)
    })
    .await?;
    let result = async {
        let victim = system.etcd.first_member()?;
        let created = Arc::new(AtomicUsize::new(0));
        let burst = tokio::spawn({
            let (db, created) = (system.db.clone(), created.clone());
            async move {
                for i in 0..BLOCKS {
                    create_block(&db, i).await?;
                    created.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                anyhow::Ok(())
            }
        });
        let started = Instant::now();
        while created.load(Ordering::Relaxed) < KILL_AFTER {
            ensure!(started.elapsed() < LIMIT, "burst stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        system.etcd.kill_member(victim)?;
        eprintln!(
            "killed etcd member {victim} (the daemons' and the leader) after {} blocks",
            created.load(Ordering::Relaxed)
        );
        tokio::time::timeout(LIMIT, burst)
            .await
            .context("the burst did not finish")???;

        // Every block's workflow deployed.
        for i in 0..BLOCKS {
            let path = format!("/deploy/{}-workflow/state", block_id(i));
            let left = LIMIT.saturating_sub(started.elapsed());
            system.wait_status(&path, "DEPLOYED", left).await?;
        }
        eprintln!(
            "all {BLOCKS} blocks deployed {:?} after the start",
            started.elapsed()
        );

        // Exactly one deployment per block, nothing else, and its release installed once.
        let want: BTreeSet<String> = (0..BLOCKS)
            .map(|i| format!("{}-workflow", block_id(i)))
            .collect();
        let deployments: BTreeSet<String> = system
            .all_keys()
            .await?
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix("/deploy/")
                    .filter(|rest| !rest.contains('/'))
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(deployments, want, "deployments");
        let dir = system.fake_helm_dir();
        // Settled: no release comes or goes any more.
        let releases = eventually(Duration::from_secs(10), "releases settle", || {
            let dir = dir.clone();
            let system = &system;
            async move {
                let names: BTreeSet<String> = fake_helm::releases(&dir, system.namespace())
                    .iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_string))
                    .collect();
                Ok(if names.len() == BLOCKS {
                    Outcome::Done(names)
                } else {
                    Outcome::NotYet(format!("{} releases", names.len()))
                })
            }
        })
        .await?;
        assert_eq!(releases, want, "releases");
        for rel in fake_helm::releases(&dir, system.namespace()) {
            ensure!(
                rel["installs"] == 1,
                "release installed more than once: {rel}"
            );
            ensure!(rel["status"] == "deployed", "{rel}");
        }
        let mut upgrades: std::collections::BTreeMap<String, usize> = Default::default();
        for call in fake_helm::calls(&dir) {
            let argv = fake_helm::argv(&call);
            if argv.first() == Some(&"upgrade") || argv.first() == Some(&"uninstall") {
                let name = argv.iter().rev().nth(1).copied().unwrap_or_default();
                *upgrades.entry(format!("{} {name}", argv[0])).or_default() += 1;
            }
        }
        ensure!(
            upgrades.keys().all(|k| k.starts_with("upgrade ")),
            "uninstalls happened: {upgrades:?}"
        );
        ensure!(
            upgrades.values().all(|n| *n == 1) && upgrades.len() == BLOCKS,
            "expected one helm upgrade --install per release: {upgrades:?}"
        );
        for i in 0..BLOCKS {
            let state = system.get(&format!("/pb/{}/state", block_id(i))).await?;
            ensure!(
                state.as_deref().and_then(status_of).is_some(),
                "block {i} has no state: {state:?}"
            );
        }
        // Both daemons were talking to the killed member: each logged its switch.
        for daemon in ["controller", "deployer"] {
            let logs = daemon_logs(&system, daemon)?;
            ensure!(
                logs.contains("switching to the next one"),
                "the {daemon} never failed over: was it using member {victim}?"
            );
        }
        system.ensure_daemons_running()?;
        system.shutdown().await
    }
    .await;
    system.report(result)
}

/// Everything daemon `name` logged (every start of it).
fn daemon_logs(system: &System, name: &str) -> Result<String> {
    let mut text = String::new();
    for entry in std::fs::read_dir(system.dir().join("logs"))? {
        let path = entry?.path();
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if file.is_some_and(|f| f.ends_with(&format!("-{name}.log"))) {
            text.push_str(&std::fs::read_to_string(&path)?);
        }
    }
    Ok(text)
}
