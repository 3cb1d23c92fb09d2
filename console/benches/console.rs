//! Benchmark of the web console against a real etcd, with the real binary.
//!
//! `cargo bench -p sdp-console --bench console` (release build). Prints a Markdown
//! report. With 10,000 blocks (each with a state and two deployments with their states,
//! values of realistic size) in etcd:
//!
//! - start: from spawning `sdp-console` to `/readyz` answering 200 with every block;
//! - 20 pages: 20 clients of `/api/events`, each reading the whole first snapshot;
//! - push: changes written to etcd one at a time (states of existing blocks, then new
//!   blocks), latency from sending the write to each page receiving the delta that
//!   holds it; per change, the time until the last of the 20 pages has it;
//! - memory: `VmRSS` (and the peak, `VmHWM`) of the console process from
//!   `/proc/<pid>/status`, after the pages connected and after the pushes;
//! - etcd: watchers (`etcd_debugging_mvcc_watcher_total`) and Range requests while
//!   20 pages are open.
//!
//! Optional arguments: blocks (default 10000), changes per kind (default 300).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Events, block, block_state, deployment, deployment_state, write};
use sdp_config::Config;
use sdp_testing::EtcdServer;
use tokio::sync::mpsc;

const PAGES: usize = 20;
const WRITERS: usize = 16;
/// Between two changes, so that each is pushed on its own (not coalesced with the next).
const GAP: Duration = Duration::from_millis(20);

/// Keys to write (`Some`) or delete (`None`) in one transaction.
type Entries = Vec<(String, Option<String>)>;

fn block_id(n: usize) -> String {
    format!("realtime-{:08}-{:04}", 20_200_101 + n / 10_000, n % 10_000)
}

/// A block, its state, its workflow deployment and a second (dask) deployment, each
/// with a state: what a running block looks like.
fn entries(n: usize) -> Entries {
    let id = block_id(n);
    let workflow = format!("{id}-workflow");
    let dask = format!("proc-{id}-dask");
    let status = ["RUNNING", "FINISHED", "FAILED", "STARTING"][n % 4];
    let reason = (status == "FAILED").then_some("workflow pod failed: exit code 1 (Error)");
    vec![
        block(&id),
        block_state(
            &id,
            status,
            reason,
            Duration::from_secs(60 * (n as u64 % 600)),
        ),
        deployment(&workflow),
        deployment_state(&workflow, "DEPLOYED", "RUNNING"),
        deployment(&dask),
        deployment_state(&dask, "DEPLOYED", "RUNNING"),
    ]
}

async fn fill(db: &Config, blocks: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (db, next) = (db.clone(), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= blocks {
                    break;
                }
                write(&db, &entries(n)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

struct Console {
    child: Child,
    base: String,
}

impl Console {
    fn start(etcd: &EtcdServer, log: &std::path::Path) -> Console {
        let out = std::fs::File::create(log).unwrap();
        let addr = format!("127.0.0.1:{}", sdp_testing::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_sdp-console"))
            .envs(etcd.env())
            .env("SDP_HTTP_ADDR", &addr)
            .env("SDP_LOG_LEVEL", "info")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Console {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// (`VmRSS`, `VmHWM`) in MB.
    fn memory_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> f64 {
            let kb: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            kb / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn until_ready(http: &reqwest::Client, base: &str, blocks: usize) {
    let want = format!(", {blocks} blocks,");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(resp) = http.get(format!("{base}/readyz")).send().await
            && let Ok(body) = resp.text().await
            && body.contains(&want)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "console not ready with {blocks} blocks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Percentile `p` (0–100) of sorted `xs`.
fn pct(xs: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (xs.len() - 1) as f64).round() as usize;
    xs[i.min(xs.len() - 1)]
}

fn etcd_gauge(etcd: &EtcdServer, name: &str) -> String {
    etcd.metrics()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

struct Push {
    /// Every (page, change) latency, ms, sorted.
    each: Vec<f64>,
    /// Per change, until the last page had it, ms, sorted.
    all: Vec<f64>,
}

/// Write `changes` one at a time; every page reports (change index, arrival) for each
/// delta naming the changed block.
async fn push(
    db: &Config,
    changes: Vec<(String, Entries)>,
    arrivals: &mut mpsc::UnboundedReceiver<(usize, Instant)>,
    watching: &std::sync::Mutex<HashMap<String, usize>>,
) -> Push {
    let mut each = Vec::new();
    let mut all = Vec::new();
    for (i, (id, entries)) in changes.into_iter().enumerate() {
        watching.lock().unwrap().insert(id, i);
        let sent = Instant::now();
        write(db, &entries).await.unwrap();
        let mut last = sent;
        for _ in 0..PAGES {
            let (index, at) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .expect("every page gets the change within 10 s")
                .unwrap();
            assert_eq!(index, i);
            each.push(at.duration_since(sent).as_secs_f64() * 1e3);
            last = last.max(at);
        }
        all.push(last.duration_since(sent).as_secs_f64() * 1e3);
        tokio::time::sleep(GAP).await;
    }
    each.sort_by(f64::total_cmp);
    all.sort_by(f64::total_cmp);
    Push { each, all }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let blocks = args.first().copied().unwrap_or(10_000);
    let per_kind = args.get(1).copied().unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(blocks, per_kind));
}

async fn run(blocks: usize, per_kind: usize) {
    let etcd = EtcdServer::start().unwrap();
    let db = Config::connect(&etcd.connection()).await.unwrap();
    let t = Instant::now();
    fill(&db, blocks).await;
    eprintln!(
        "wrote {blocks} blocks, {} deployments in {:.1} s",
        2 * blocks,
        t.elapsed().as_secs_f64()
    );

    let log = std::env::temp_dir().join("sdp-console-bench.log");
    // reqwest may be built with rustls and no crypto provider (workspace feature
    // unification with the controller): install ring for the process first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let console = Console::start(&etcd, &log);
    until_ready(&http, &console.base, blocks).await;
    let start_s = started.elapsed().as_secs_f64();
    let (rss_idle, _) = console.memory_mb();
    let snapshot_bytes = http
        .get(format!("{}/api/overview", console.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();

    // 20 pages, each reading the whole first snapshot, then reporting arrivals.
    let watching = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let (tx, mut arrivals) = mpsc::unbounded_channel();
    let connected = Instant::now();
    let mut pages = Vec::new();
    for _ in 0..PAGES {
        let mut events = Events::open(&http, &console.base).await.unwrap();
        let (tx, watching) = (tx.clone(), Arc::clone(&watching));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        pages.push(tokio::spawn(async move {
            events.until("changes", |_| true).await.unwrap();
            // Only what is read from now on matters; keep `seen` small.
            events.seen.clear();
            let _ = ready_tx.send(());
            loop {
                let Ok(e) = events.next().await else { return };
                events.seen.clear();
                if e.name != "delta" {
                    continue;
                }
                let at = Instant::now();
                let ids = e.data["blocks"].as_array().cloned().unwrap_or_default();
                let watching = watching.lock().unwrap();
                for b in ids {
                    if let Some(i) = b["id"].as_str().and_then(|id| watching.get(id)) {
                        let _ = tx.send((*i, at));
                    }
                }
            }
        }));
        ready_rx.await.unwrap();
    }
    let connect_s = connected.elapsed().as_secs_f64();
    let (rss_pages, _) = console.memory_mb();
    let watchers = etcd_gauge(&etcd, "etcd_debugging_mvcc_watcher_total ");
    let ranges_before = etcd.grpc_requests("Range").unwrap_or(0);

    // State changes of existing blocks, then new blocks.
    let changed: Vec<_> = (0..per_kind)
        .map(|i| {
            let id = block_id(i * (blocks / per_kind).max(1) % blocks.max(1));
            let state = block_state(
                &id,
                "FAILED",
                Some("bench: failed on purpose"),
                Duration::ZERO,
            );
            (id, vec![state])
        })
        .collect();
    let created: Vec<_> = (0..per_kind)
        .map(|i| {
            let id = block_id(blocks + i);
            (id.clone(), vec![block(&id)])
        })
        .collect();
    let state_push = push(&db, changed, &mut arrivals, &watching).await;
    let new_push = push(&db, created, &mut arrivals, &watching).await;
    let ranges = etcd.grpc_requests("Range").unwrap_or(0) - ranges_before;
    let metrics = http
        .get(format!("{}/metrics", console.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let publish_ms = 1e3 * metric("sdp_console_publish_duration_seconds_sum ")
        / metric("sdp_console_publish_duration_seconds_count ");
    let (rss_end, hwm) = console.memory_mb();
    for p in pages {
        p.abort();
    }

    println!(
        "## sdp-console bench ({blocks} blocks, {} deployments, {PAGES} pages)\n",
        2 * blocks
    );
    println!("| measure | value |\n| --- | ---: |");
    println!("| start to ready (listing {blocks} blocks) | {start_s:.2} s |");
    println!(
        "| `/api/overview` size | {:.1} MB |",
        snapshot_bytes as f64 / 1e6
    );
    println!("| {PAGES} pages connected, each with the whole snapshot | {connect_s:.2} s |");
    println!("| RSS ready, no page | {rss_idle:.1} MB |");
    println!("| RSS with {PAGES} pages | {rss_pages:.1} MB |");
    println!("| RSS after the pushes | {rss_end:.1} MB |");
    println!("| peak RSS (VmHWM) | {hwm:.1} MB |");
    println!("| etcd watchers with {PAGES} pages open | {watchers} |");
    println!(
        "| etcd Range requests during {} changes | {ranges} |",
        2 * per_kind
    );
    println!(
        "| console's own work per change (compare, serialise, publish), mean | {publish_ms:.2} ms |"
    );
    println!();
    println!(
        "| push to {PAGES} pages | changes | per page p50 | p99 | max | last page p50 | p99 | max |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, p) in [
        ("state of an existing block", &state_push),
        ("new block", &new_push),
    ] {
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            p.all.len(),
            pct(&p.each, 50.0),
            pct(&p.each, 99.0),
            pct(&p.each, 100.0),
            pct(&p.all, 50.0),
            pct(&p.all, 99.0),
            pct(&p.all, 100.0),
        );
    }
    let mut all: Vec<f64> = state_push
        .all
        .iter()
        .chain(&new_push.all)
        .copied()
        .collect();
    all.sort_by(f64::total_cmp);
    println!(
        "\nTargets: RSS ≤ 60 MB: {} ({rss_end:.1} MB, peak {hwm:.1} MB); every page within 100 ms p99: {} ({:.2} ms over {} changes)",
        if rss_end <= 60.0 { "met" } else { "NOT MET" },
        if pct(&all, 99.0) <= 100.0 {
            "met"
        } else {
            "NOT MET"
        },
        pct(&all, 99.0),
        all.len()
    );
}
