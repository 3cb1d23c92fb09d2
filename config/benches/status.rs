//! `sdpcfg status` on a large system: 10,000 processing blocks (each with its state,
//! half with an owner) and 20,000 deployments (each with the deployer's state and, for
//! most, a workload with one pod), written as the controller, the deployer and the
//! workflows write them; then the real `sdpcfg` binary is run against the real etcd and
//! timed from spawn to exit, standard output read through a pipe.
//!
//! `cargo bench -p sdp-config --bench status` (`-- --quick` for a small smoke run).
//!
//! Reported: wall time per run (median, min, max over the runs, after one warm-up run)
//! for the table, for `-o json`, and for `--status FAILED`; the output size; and, in
//! this process, how long the overview's listing alone takes (range reads and the
//! model), to tell etcd's share from the command's.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use sdp_config::entity::{ProcessingBlock, WorkflowRef};
use sdp_config::overview;
use sdp_config::{Config, ConnectionSettings};
use sdp_testing::EtcdServer;
use tokio_util::sync::CancellationToken;

/// Target: `sdpcfg status` on 10,000 blocks and 20,000 deployments in at most this.
const TARGET: Duration = Duration::from_secs(1);
/// Keys per loading transaction (etcd takes at most 128 operations).
const CHUNK: usize = 100;
/// Concurrent loading tasks.
const LOADERS: usize = 8;

struct Plan {
    blocks: usize,
    runs: usize,
}

fn since(i: usize) -> String {
    // Spread over the last three days.
    let minutes = (i * 7) % (3 * 24 * 60);
    (chrono::Utc::now() - chrono::TimeDelta::minutes(minutes as i64))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every key of block `i`, its two deployments and their states.
fn entries(i: usize) -> Result<Vec<(String, String)>> {
    let id = format!("realtime-20261201-{i:05}");
    let workflow = WorkflowRef::parse_spec("realtime:testdask:0.1.0").context("spec")?;
    let mut pb = ProcessingBlock::new(id.clone(), workflow);
    pb.parameters
        .insert("n_workers".into(), serde_json::json!(2 + i % 4));
    let (status, reason) = match i % 10 {
        0 => (
            "FAILED",
            Some(format!(
                "workflow pod {id}-workflow: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)"
            )),
        ),
        1 | 2 => ("STARTING", None),
        9 => ("FINISHED", None),
        _ => ("RUNNING", None),
    };
    let mut state = serde_json::json!({
        "resources_available": true, "since": since(i), "status": status,
    });
    if let Some(reason) = &reason {
        state["reason"] = reason.clone().into();
        state["failed_deployment"] = format!("{id}-workflow").into();
    }
    let mut out = vec![
        (ProcessingBlock::path(&id), pb.to_json()),
        (
            ProcessingBlock::state_path(&id),
            sdp_config::json::to_python_string(&state),
        ),
    ];
    if status == "RUNNING" {
        let owner = serde_json::json!({
            "command": ["testdask", &id], "hostname": format!("node-{}", i % 40), "pid": 1000 + i,
        });
        out.push((
            ProcessingBlock::owner_path(&id),
            sdp_config::json::to_python_string(&owner),
        ));
    }
    for (suffix, chart) in [("workflow", "workflow"), ("dask", "dask")] {
        let deploy_id = format!("{id}-{suffix}");
        let deployment = serde_json::json!({
            "deploy_id": deploy_id, "type": "helm",
            "args": {"chart": chart, "values": {
                "env.SDP_CONFIG_HOST": "etcd.sdp.svc", "env.SDP_HELM_NAMESPACE": "sdp",
                "wf_image": "sdp/workflow-testdask:0.1.0", "pb_id": id,
                "worker.replicas": 2, "scheduler.serviceType": "ClusterIP",
            }},
        });
        let (phase, message) = match (suffix, status) {
            ("workflow", "FAILED") => ("FAILED", reason.clone()),
            (_, "STARTING") => (
                "PENDING",
                Some(format!("pod {deploy_id}: ContainerCreating")),
            ),
            (_, "FINISHED") => ("FINISHED", None),
            _ => ("RUNNING", None),
        };
        let mut workload = serde_json::json!({
            "phase": phase,
            "pods": [{"name": format!("{deploy_id}-0"), "phase": "Running", "ready": true, "restarts": 0}],
            "updated": since(i),
        });
        if let Some(m) = message {
            workload["message"] = m.into();
        }
        let state = serde_json::json!({
            "attempts": 1, "digest": format!("{:064x}", i), "message": "installed: revision 1",
            "namespace": "sdp", "release": deploy_id, "revision": 1, "status": "DEPLOYED",
            "updated": since(i), "workload": workload,
        });
        out.push((
            format!("/deploy/{deploy_id}"),
            sdp_config::json::to_python_string(&deployment),
        ));
        out.push((
            format!("/deploy/{deploy_id}/state"),
            sdp_config::json::to_python_string(&state),
        ));
    }
    Ok(out)
}

async fn load(db: &Config, blocks: usize) -> Result<(usize, usize)> {
    let mut all = Vec::new();
    for i in 0..blocks {
        all.extend(entries(i)?);
    }
    let (keys, bytes) = (all.len(), all.iter().map(|(_, v)| v.len()).sum());
    let chunks: Vec<Vec<(String, String)>> = all.chunks(CHUNK).map(<[_]>::to_vec).collect();
    let per_task = chunks.len().div_ceil(LOADERS);
    let mut tasks = Vec::new();
    for part in chunks.chunks(per_task.max(1)) {
        let (db, part) = (db.clone(), part.to_vec());
        tasks.push(tokio::spawn(async move {
            for chunk in part {
                db.transact(|t| {
                    let chunk = chunk.clone();
                    Box::pin(async move {
                        for (path, value) in &chunk {
                            t.put(path, value)?;
                        }
                        Ok(())
                    })
                })
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((keys, bytes))
}

/// One run of `sdpcfg <args>`: wall time and bytes printed.
fn run(etcd: &EtcdServer, args: &[&str]) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sdpcfg"))
        .env_clear()
        .envs(etcd.env())
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let elapsed = started.elapsed();
    ensure!(
        out.status.success(),
        "sdpcfg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((elapsed, out.stdout.len()))
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Times of the range reads alone and of the model alone, `runs` each.
async fn diagnose(
    etcd: &EtcdServer,
    db: &Config,
    runs: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None).await?;
    let start = db.keys().key_prefix("/deploy/", 0).into_bytes();
    let end = sdp_config::path::prefix_end(db.keys().key_prefix("/pb/", 1).as_bytes());
    let (mut reads, mut model) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let mut pairs = Vec::new();
        let mut from = start.clone();
        loop {
            let opts = etcd_client::GetOptions::new()
                .with_range(end.clone())
                .with_limit(5_000);
            let resp = client.get(from.clone(), Some(opts)).await?;
            for kv in resp.kvs() {
                if let Some(path) = db.keys().path(kv.key()) {
                    pairs.push((path, String::from_utf8_lossy(kv.value()).into_owned()));
                }
            }
            match (resp.more(), resp.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        reads.push(started.elapsed());
        let started = Instant::now();
        let o =
            overview::Overview::from_pairs(1, pairs.iter().map(|(p, v)| (p.as_str(), v.as_str())));
        let s = o.snapshot();
        model.push(started.elapsed());
        ensure!(s.totals.blocks > 0);
    }
    Ok((reads, model))
}

#[tokio::main]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            blocks: 500,
            runs: 3,
        }
    } else {
        Plan {
            blocks: 10_000,
            runs: 9,
        }
    };
    let etcd = EtcdServer::start()?;
    let settings = ConnectionSettings {
        host: etcd.host().into(),
        port: etcd.port(),
        ..Default::default()
    };
    let db = Config::connect(&settings).await?;
    let loading = Instant::now();
    let (keys, bytes) = load(&db, plan.blocks).await?;
    println!(
        "loaded {} blocks, {} deployments: {keys} keys, {:.1} MB of values, in {:.1} s",
        plan.blocks,
        2 * plan.blocks,
        bytes as f64 / 1e6,
        loading.elapsed().as_secs_f64()
    );
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {cores} cores; load average {}",
        load_avg.split_whitespace().next().unwrap_or("?")
    );

    // In process: the overview's listing alone (one range read paged by 5,000 keys,
    // and the model built from it).
    let mut listing = Vec::new();
    for _ in 0..plan.runs {
        let started = Instant::now();
        let stop = CancellationToken::new();
        let s = overview::follow(&db, stop.clone()).listed().await?;
        listing.push(started.elapsed());
        stop.cancel();
        ensure!(
            s.totals.blocks == plan.blocks,
            "listed {} blocks",
            s.totals.blocks
        );
        ensure!(s.totals.deployments == 2 * plan.blocks);
    }

    // Diagnostics: the range reads alone (etcd-client, paged as the watch pages), and
    // the model built from the pairs alone.
    let (reads, model) = diagnose(&etcd, &db, plan.runs).await?;

    println!();
    println!("| command | median | min | max | output |");
    println!("|---|---:|---:|---:|---:|");
    let mut table_median = Duration::ZERO;
    for args in [
        &["status"][..],
        &["status", "-o", "json"],
        &["status", "--status", "FAILED"],
    ] {
        run(&etcd, args)?; // warm-up: page cache, etcd's first reads
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..plan.runs {
            let (t, n) = run(&etcd, args)?;
            times.push(t);
            size = n;
        }
        let (lo, hi) = (
            times.iter().min().copied().unwrap_or_default(),
            times.iter().max().copied().unwrap_or_default(),
        );
        let med = median(times);
        if args == ["status"] {
            table_median = med;
        }
        println!(
            "| `sdpcfg {}` | {} | {} | {} | {:.1} MB |",
            args.join(" "),
            ms(med),
            ms(lo),
            ms(hi),
            size as f64 / 1e6
        );
    }
    println!(
        "| overview listing in process (no binary) | {} | {} | {} | |",
        ms(median(listing.clone())),
        ms(listing.iter().min().copied().unwrap_or_default()),
        ms(listing.iter().max().copied().unwrap_or_default()),
    );
    for (what, times) in [
        ("range reads alone (etcd-client)", reads),
        ("model from the pairs alone", model),
    ] {
        println!(
            "| {what} | {} | {} | {} | |",
            ms(median(times.clone())),
            ms(times.iter().min().copied().unwrap_or_default()),
            ms(times.iter().max().copied().unwrap_or_default()),
        );
    }
    println!();
    println!(
        "target: `sdpcfg status` <= {} ({}): {}",
        ms(TARGET),
        if quick {
            "quick run, smaller system"
        } else {
            "10,000 blocks, 20,000 deployments"
        },
        if table_median <= TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
