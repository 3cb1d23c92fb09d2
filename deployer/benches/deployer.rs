//! Benchmark `deployer`: the real `sdp-deployer` binary against a real etcd and the
//! stand-in helm (`fake-helm`).
//!
//! - 100 entries with a stand-in that takes 1 s per install: time until all are DEPLOYED
//!   at concurrency 4 (target ≤ 30 s) and 8 (target ≤ 15 s);
//! - a stand-in that returns at once: installs per second (target ≥ 100);
//! - 1,000 entries deployed: resident memory of the deployer (target ≤ 30 MB).
//!
//! Run: `cargo bench -p sdp-deployer --bench deployer` (prints a Markdown table).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sdp_config::{Config, WatchEvent};
use sdp_testing::EtcdServer;
use serde_json::json;

struct Run {
    cpu_s: f64,
    name: String,
    entries: usize,
    concurrency: usize,
    seconds: f64,
    helm_calls: usize,
    rss_kb: Option<(u64, u64)>,
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// Leading, with its first listing and resync done.
fn leading(port: u16) -> bool {
    let ready = http_get(port, "/readyz").is_some_and(|(s, _)| s == 200);
    let leader = http_get(port, "/metrics")
        .is_some_and(|(_, body)| body.lines().any(|l| l == "sdp_deployer_is_leader 1"));
    ready && leader
}

/// CPU time (user + system) of a process so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 14th field.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // rest starts at field 3 (state, not numeric, filtered out): utime, stime = fields 14, 15.
    let ticks = 100.0; // USER_HZ on Linux
    f.get(10).copied().unwrap_or(0.0) / ticks + f.get(11).copied().unwrap_or(0.0) / ticks
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn scenario(
    name: &str,
    entries: usize,
    delay_ms: u64,
    concurrency: usize,
    measure_rss: bool,
) -> Result<Run> {
    let etcd = EtcdServer::start()?;
    let db = Config::connect(&etcd.connection()).await?;
    let helm_dir = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let charts = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts")
        .canonicalize()?;
    let port = sdp_testing::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdp-deployer"));
    cmd.envs(etcd.env())
        .env("SDP_HELM", sdp_testing::fake_helm_path())
        .env("FAKE_HELM_DIR", helm_dir.path())
        .env("FAKE_HELM_DELAY_MS", delay_ms.to_string())
        .env("SDP_HELM_CONCURRENCY", concurrency.to_string())
        .env("SDP_CHARTS_DIR", &charts)
        .env("SDP_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SDP_LOG_LEVEL", "warn")
        .env("TMPDIR", work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = Killed(cmd.spawn().context("start sdp-deployer")?);
    let pid = child.0.id();
    let start = Instant::now();
    while !leading(port) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("deployer not leading");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut watch = db.watch("/deploy/", 1, None)?;
    let cpu0 = cpu_seconds(pid);
    let ids: Vec<String> = (0..entries).map(|i| format!("bench-{i:04}")).collect();
    let t0 = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for chunk in ids.chunks(entries.div_ceil(16)) {
        let db = db.clone();
        let chunk = chunk.to_vec();
        writers.spawn(async move {
            for id in chunk {
                let value =
                    json!({"deploy_id": id, "type": "helm", "args": {"chart": "stable/dask",
                    "values": {"worker.replicas": 2, "jupyter.enabled": "false"}}})
                    .to_string();
                let path = format!("/deploy/{id}");
                db.transact(|t| {
                    let (path, value) = (path.clone(), value.clone());
                    Box::pin(async move { t.put(&path, &value) })
                })
                .await?;
            }
            Ok::<(), sdp_config::Error>(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    let mut deployed: HashSet<String> = HashSet::new();
    while deployed.len() < entries {
        let ev = tokio::time::timeout(Duration::from_secs(120), watch.next())
            .await
            .context("no progress for 120 s")?;
        let items = match ev {
            Some(WatchEvent::Put(e)) => vec![e],
            Some(WatchEvent::Listed { entries, .. }) => entries,
            Some(WatchEvent::Deleted { .. }) => vec![],
            None => bail!("watch ended"),
        };
        for e in items {
            if e.path.ends_with("/state") && e.value.contains("\"DEPLOYED\"") {
                deployed.insert(e.path);
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds(pid) - cpu0;
    let rss_kb = if measure_rss {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((
            proc_status_kb(pid, "VmRSS:").unwrap_or(0),
            proc_status_kb(pid, "VmHWM:").unwrap_or(0),
        ))
    } else {
        None
    };
    let helm_calls = std::fs::read_to_string(helm_dir.path().join("calls.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    drop(child);
    Ok(Run {
        cpu_s,
        name: name.into(),
        entries,
        concurrency,
        seconds,
        helm_calls,
        rss_kb,
    })
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    // Build (or find) the stand-in before timing anything.
    let _ = sdp_testing::fake_helm_path();
    // BENCH_ONLY=<text> runs only the scenarios whose name contains it.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let plan: [(&str, usize, u64, usize, bool); 5] = [
        ("1 s per install", 100, 1000, 4, false),
        ("1 s per install", 100, 1000, 8, false),
        ("instant helm", 500, 0, 4, false),
        ("instant helm", 500, 0, 8, false),
        ("instant helm, memory", 1000, 0, 4, true),
    ];
    let runs = rt.block_on(async {
        let mut runs = Vec::new();
        for (name, entries, delay, concurrency, rss) in plan {
            if name.contains(only.as_str()) {
                runs.push(scenario(name, entries, delay, concurrency, rss).await?);
            }
        }
        Ok::<_, anyhow::Error>(runs)
    })?;
    println!(
        "| scenario | entries | concurrency | all DEPLOYED after | installs/s | helm calls | deployer CPU per install | deployer RSS (now / peak) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &runs {
        let rss = r.rss_kb.map_or("".to_string(), |(now, peak)| {
            format!(
                "{:.1} MB / {:.1} MB",
                now as f64 / 1024.0,
                peak as f64 / 1024.0
            )
        });
        println!(
            "| {} | {} | {} | {:.2} s | {:.0} | {} | {:.2} ms | {} |",
            r.name,
            r.entries,
            r.concurrency,
            r.seconds,
            r.entries as f64 / r.seconds,
            r.helm_calls,
            r.cpu_s * 1000.0 / r.entries as f64,
            rss
        );
    }
    Ok(())
}
