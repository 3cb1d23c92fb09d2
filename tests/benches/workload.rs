//! Benchmark `workload`: the whole loop with 1,000 owned pods changing phase. A real etcd,
//! the real `sdp-controller` and `sdp-deployer` (stand-in helm), and the Kubernetes API
//! stand-in serving the pods over HTTP to the deployer's real `kube` watch.
//!
//! 1,000 processing blocks are created and deployed; then each workflow pod is created
//! `Running` and ready (one burst of 1,000 changes), then each is made to fail with
//! `ImagePullBackOff` (a second burst). Measured:
//!
//! - etcd writes of workload reports per pod change (target ≤ 1);
//! - pod change → `/deploy/<id>/state` showing it, p50/p99/max (target p99 ≤ 100 ms);
//! - pod change → `/pb/<id>/state` `FAILED`, p50/p99/max (target p99 ≤ 200 ms);
//! - the deployer's resident memory while watching the 1,000 pods (target ≤ 40 MB).
//!
//! Run: `cargo bench -p sdp-e2e --bench workload` (prints a Markdown table).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sdp_config::WatchEvent;
use sdp_e2e::system::{Options, System, Target};
use sdp_testing::kube::{KubeApi, pods};
use serde_json::Value;

const BLOCKS: usize = 1000;
const LIMIT: Duration = Duration::from_secs(300);

fn pb_id(i: usize) -> String {
    format!("realtime-20261207-{i:04}")
}

fn release(i: usize) -> String {
    format!("{}-workflow", pb_id(i))
}

const IMAGE: &str = "sdp/workflow-testdask:0.1.0";

fn pod(namespace: &str, i: usize, status: Value) -> Value {
    pods::pod(&release(i), namespace, &release(i), IMAGE, status)
}

fn running() -> Value {
    pods::running(IMAGE, true)
}

fn image_pull_error() -> Value {
    pods::image_pull_error(IMAGE)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn metric(system: &System, daemon: &str, name: &str) -> Result<f64> {
    let port = system.http_port(daemon).context("no port")?;
    let (_, body) = sdp_e2e::system::http_get(port, "/metrics").await?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Times (after `start`) at which each watched key first satisfied `accept`.
fn follow(
    system: &System,
    prefix: &str,
    from: i64,
    accept: impl Fn(&str, &Value) -> Option<usize> + Send + 'static,
) -> Result<tokio::task::JoinHandle<HashMap<usize, Instant>>> {
    let mut watch = system.db.watch(prefix, 1, Some(from))?;
    Ok(tokio::spawn(async move {
        let mut seen = HashMap::new();
        let deadline = Instant::now() + LIMIT;
        while seen.len() < BLOCKS && Instant::now() < deadline {
            let ev = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
            let Ok(Some(WatchEvent::Put(e))) = ev else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&e.value) else {
                continue;
            };
            if let Some(i) = accept(&e.path, &v) {
                seen.entry(i).or_insert_with(Instant::now);
            }
        }
        seen
    }))
}

fn index_of(path: &str, suffix: &str) -> Option<usize> {
    let id = path.rsplit('/').nth(1)?;
    let id = id.strip_suffix(suffix)?;
    id.rsplit('-').next()?.parse().ok()
}

struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

fn latency(sent: &[Instant], seen: &HashMap<usize, Instant>) -> Latency {
    let mut ms: Vec<f64> = seen
        .iter()
        .filter_map(|(i, t)| Some(t.duration_since(*sent.get(*i)?).as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Latency {
        p50: pct(0.5),
        p99: pct(0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
        n: ms.len(),
    }
}

/// Every block back to STARTING, as the controller writes it (a fresh start for a round
/// that fails them).
async fn reset_blocks(system: &System) -> Result<()> {
    for chunk in (0..BLOCKS).collect::<Vec<_>>().chunks(100) {
        let paths: Vec<String> = chunk
            .iter()
            .map(|i| format!("/pb/{}/state", pb_id(*i)))
            .collect();
        let state = r#"{"resources_available": false, "status": "STARTING"}"#;
        let changes: Vec<(&str, Option<&str>)> =
            paths.iter().map(|p| (p.as_str(), Some(state))).collect();
        sdp_testing::fixtures::write(&system.db, &changes).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

async fn revision(system: &System) -> Result<i64> {
    Ok(system.db.current_revision().await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let api = KubeApi::start()?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = api.write_kubeconfig(dir.path())?;
    let mut opts = Options::new(Target::StandIn { kubeconfig });
    opts.namespace = "sdp".into();
    opts.deployer_env = vec![("SDP_HELM_CONCURRENCY".into(), "16".into())];
    let system = System::start(opts).await?;
    let result = run(&system, &api).await;
    system.report(result)
}

async fn run(system: &System, api: &KubeApi) -> Result<()> {
    let ns = system.namespace().to_string();
    // 1,000 blocks, deployed.
    let started = Instant::now();
    for chunk in (0..BLOCKS).collect::<Vec<_>>().chunks(100) {
        let blocks: Vec<(String, String)> = chunk
            .iter()
            .map(|i| {
                (
                    format!("/pb/{}", pb_id(*i)),
                    sdp_testing::fixtures::realtime_block(&pb_id(*i)),
                )
            })
            .collect();
        let changes: Vec<(&str, Option<&str>)> = blocks
            .iter()
            .map(|(p, v)| (p.as_str(), Some(v.as_str())))
            .collect();
        sdp_testing::fixtures::write(&system.db, &changes).await?;
    }
    loop {
        let deployed = metric(
            system,
            "deployer",
            "sdp_deployer_helm_operations_total{kind=\"install\",result=\"ok\"}",
        )
        .await?;
        if deployed as usize >= BLOCKS {
            break;
        }
        if started.elapsed() > LIMIT {
            bail!("only {deployed} of {BLOCKS} installed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the first workload reports (no pods yet) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "deployed {BLOCKS} blocks in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut rows = Vec::new();
    for (name, status, want, gap) in [
        (
            "created Running, one burst",
            running(),
            "RUNNING",
            Duration::ZERO,
        ),
        (
            "turn ImagePullBackOff, one burst",
            image_pull_error(),
            "FAILED",
            Duration::ZERO,
        ),
        (
            "turn Running, 500 per second",
            running(),
            "RUNNING",
            Duration::from_millis(2),
        ),
        (
            "turn ImagePullBackOff, 500 per second",
            image_pull_error(),
            "FAILED",
            Duration::from_millis(2),
        ),
    ] {
        // Blocks FAILED before stay so: start each round from STARTING blocks.
        if want == "FAILED" {
            reset_blocks(system).await?;
        }
        let from = revision(system).await? + 1;
        let deploy_seen = follow(system, "/deploy/", from, move |path, v| {
            (v["workload"]["phase"] == want)
                .then(|| index_of(path, "-workflow"))
                .flatten()
        })?;
        let block_seen = (want == "FAILED")
            .then(|| {
                follow(system, "/pb/", from, |path, v| {
                    (v["status"] == "FAILED" && path.ends_with("/state"))
                        .then(|| index_of(path, ""))
                        .flatten()
                })
            })
            .transpose()?;
        let writes_before =
            metric(system, "deployer", "sdp_deployer_workload_writes_total").await?;
        let mut sent = Vec::with_capacity(BLOCKS);
        let round_start = Instant::now();
        for i in 0..BLOCKS {
            if !gap.is_zero() {
                let at = round_start + gap * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(at.into()).await;
            }
            api.put_object(pod(&ns, i, status.clone()))?;
            sent.push(Instant::now());
        }
        let deploy_seen = deploy_seen.await?;
        let block_seen = match block_seen {
            Some(t) => Some(t.await?),
            None => None,
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let writes =
            metric(system, "deployer", "sdp_deployer_workload_writes_total").await? - writes_before;
        let rss = system.pid("deployer").and_then(rss_kb);
        rows.push((
            name,
            latency(&sent, &deploy_seen),
            block_seen.map(|b| latency(&sent, &b)),
            writes / BLOCKS as f64,
            rss,
        ));
    }
    println!(
        "| {BLOCKS} pods change | pod → deployment state p50 / p99 / max (ms) | seen | pod → block FAILED p50 / p99 / max (ms) | workload writes per pod change | deployer RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, d, b, wpc, rss) in rows {
        let block = b.map_or("–".to_string(), |b| {
            format!(
                "{:.0} / {:.0} / {:.0} ({} blocks)",
                b.p50, b.p99, b.max, b.n
            )
        });
        println!(
            "| {name} | {:.0} / {:.0} / {:.0} | {} | {block} | {wpc:.2} | {} |",
            d.p50,
            d.p99,
            d.max,
            d.n,
            rss.map_or("?".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0))
        );
    }
    Ok(())
}
