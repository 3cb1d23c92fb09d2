//! Benchmark of the processing controller against a real etcd, with the real binary.
//!
//! `cargo bench -p sdp-controller --bench controller` (release build). Prints a
//! Markdown report. Scenarios:
//!
//! - raw etcd: create-if-absent transactions from 16 concurrent clients (etcd-client
//!   directly), the ceiling any controller shares with etcd on this machine;
//! - burst: N blocks waiting when the controller starts → time until all are deployed;
//! - steady state with N existing blocks: 200 blocks created one at a time, latency from
//!   sending the create to the deployment arriving on a watch; etcd requests per block
//!   (from etcd's own gRPC metrics); resident memory of the controller.
//!
//! Optional arguments: burst sizes (default `1000 10000`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use sdp_config::{Config, WatchEvent};
use sdp_testing::EtcdServer;

const RAW_CLIENTS: usize = 16;
const RAW_TXNS: usize = 16_000;
const WRITERS: usize = 16;
const STEADY_BLOCKS: usize = 200;
const METHODS: [&str; 4] = ["Txn", "Range", "Put", "DeleteRange"];

fn block(id: &str) -> String {
    format!(
        "{{\n  \"parameters\": {{}},\n  \"pb_id\": \"{id}\",\n  \"sbi_id\": null,\n  \"scan_parameters\": {{}},\n  \"workflow\": {{\n    \"id\": \"testdask\",\n    \"type\": \"realtime\",\n    \"version\": \"0.1.0\"\n  }}\n}}"
    )
}

fn block_id(n: usize) -> String {
    format!("realtime-{:08}-{:04}", 20_200_101 + n / 10_000, n % 10_000)
}

/// Raw create-if-absent transactions per second, `RAW_CLIENTS` connections.
async fn raw_txn_rate(etcd: &EtcdServer) -> f64 {
    let value = "x".repeat(300);
    let per = RAW_TXNS / RAW_CLIENTS;
    let mut clients = Vec::new();
    for _ in 0..RAW_CLIENTS {
        clients.push(
            etcd_client::Client::connect([etcd.endpoint()], None)
                .await
                .unwrap(),
        );
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut client) in clients.into_iter().enumerate() {
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let key = format!("raw/{c}/{i}");
                let txn = Txn::new()
                    .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value.clone(), None)]);
                let resp = client.txn(txn).await.unwrap();
                assert!(resp.succeeded());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * RAW_CLIENTS) as f64 / start.elapsed().as_secs_f64()
}

async fn connect(etcd: &EtcdServer) -> Config {
    Config::connect(&etcd.connection()).await.unwrap()
}

async fn create_blocks(db: &Config, ids: Vec<String>) {
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (db, ids) = (db.clone(), Arc::clone(&ids));
        tasks.push(tokio::spawn(async move {
            for id in ids.iter().skip(w).step_by(WRITERS) {
                create(&db, id).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn create(db: &Config, id: &str) {
    let (path, value) = (format!("/pb/{id}"), block(id));
    db.transact(move |t| {
        let (path, value) = (path.clone(), value.clone());
        Box::pin(async move { t.create(&path, &value).await })
    })
    .await
    .unwrap();
}

struct Controller {
    child: Child,
}

impl Controller {
    fn start(etcd: &EtcdServer, registry: &Path, log: &Path) -> Controller {
        let out = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdp-controller"));
        cmd.envs(etcd.env())
            .env("SDP_WORKFLOWS_URL", registry)
            .env(
                "SDP_HTTP_ADDR",
                format!("127.0.0.1:{}", sdp_testing::free_port()),
            )
            .env("SDP_LOG_LEVEL", "info")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        Controller {
            child: cmd.spawn().unwrap(),
        }
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb / 1024.0
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for `n` workflow deployments on `watch`; returns the time of the first and last.
async fn wait_deployed(watch: &mut sdp_config::Watch, n: usize) -> (Instant, Instant) {
    let mut seen = 0;
    let mut first = None;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(120), watch.next())
            .await
            .expect("deployments within 120 s")
            .unwrap();
        if let WatchEvent::Put(e) = ev
            && e.path.ends_with("-workflow")
        {
            let now = Instant::now();
            first.get_or_insert(now);
            seen += 1;
            if seen == n {
                return (first.unwrap(), now);
            }
        }
    }
}

async fn requests(etcd: &EtcdServer) -> u64 {
    METHODS
        .iter()
        .map(|m| etcd.grpc_requests(m).unwrap_or(0))
        .sum()
}

struct Steady {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    requests_per_block: f64,
    rss_mb: f64,
}

/// 200 blocks one at a time into a controller that has `existing` blocks deployed.
async fn steady(etcd: &EtcdServer, db: &Config, ctl: &Controller, first_index: usize) -> Steady {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rev = db.current_revision().await.unwrap();
    let mut watch = db.watch("/deploy/", 0, Some(rev + 1)).unwrap();
    let before = requests(etcd).await;
    let mut lat = Vec::new();
    for i in 0..STEADY_BLOCKS {
        let id = block_id(first_index + i);
        let t = Instant::now();
        create(db, &id).await;
        let want = format!("/deploy/{id}-workflow");
        loop {
            match tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .unwrap()
                .unwrap()
            {
                WatchEvent::Put(e) if e.path == want => break,
                _ => {}
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // Let any trailing request (none expected) land before reading the counters.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = requests(etcd).await;
    let own = STEADY_BLOCKS as u64; // the bench's creates: one Txn each
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat[((lat.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(lat.len() - 1)]
    };
    Steady {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: *lat.last().unwrap(),
        requests_per_block: (after - before - own) as f64 / STEADY_BLOCKS as f64,
        rss_mb: ctl.rss_mb(),
    }
}

struct Burst {
    n: usize,
    raw: f64,
    from_start: Duration,
    from_first: Duration,
    steady: Option<Steady>,
}

async fn burst(n: usize, registry: &Path, dir: &Path, with_steady: bool) -> Burst {
    let etcd = EtcdServer::start().unwrap();
    let raw = raw_txn_rate(&etcd).await;
    let db = connect(&etcd).await;
    create_blocks(&db, (0..n).map(block_id).collect()).await;
    let rev = db.current_revision().await.unwrap();
    let mut watch = db.watch("/deploy/", 0, Some(rev + 1)).unwrap();
    let start = Instant::now();
    let ctl = Controller::start(&etcd, registry, &dir.join(format!("burst-{n}.log")));
    let (first, last) = wait_deployed(&mut watch, n).await;
    drop(watch);
    let steady = if with_steady {
        Some(steady(&etcd, &db, &ctl, n).await)
    } else {
        None
    };
    Burst {
        n,
        raw,
        from_start: last - start,
        from_first: last - first,
        steady,
    }
}

/// Requests per block with few existing blocks.
async fn steady_small(existing: usize, registry: &Path, dir: &Path) -> Steady {
    let etcd = EtcdServer::start().unwrap();
    let db = connect(&etcd).await;
    create_blocks(&db, (0..existing).map(block_id).collect()).await;
    let rev = db.current_revision().await.unwrap();
    let mut watch = db.watch("/deploy/", 0, Some(rev + 1)).unwrap();
    let ctl = Controller::start(&etcd, registry, &dir.join("steady-small.log"));
    wait_deployed(&mut watch, existing).await;
    drop(watch);
    steady(&etcd, &db, &ctl, existing).await
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("workflows.json");
        std::fs::write(
            &registry,
            r#"{"repositories": [{"name": "r", "path": "nexus.engageska-portugal.pt/sdp-prototype"}],
                "workflows": [{"type": "realtime", "id": "testdask", "repository": "r", "image": "workflow-testdask", "versions": ["0.1.0"]}]}"#,
        )
        .unwrap();
        let largest = sizes.iter().copied().max().unwrap_or(0);
        let mut bursts = Vec::new();
        for &n in &sizes {
            let b = burst(n, &registry, dir.path(), n == largest).await;
            eprintln!("burst {n}: {:?} from start, {:?} from the first deployment", b.from_start, b.from_first);
            bursts.push(b);
        }
        let small = steady_small(100, &registry, dir.path()).await;

        println!("| burst | raw etcd txn/s (16 clients) | all deployed after (from start) | blocks/s (from start) | ratio | blocks/s (from first deployment) | ratio |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for b in &bursts {
            let rate_start = b.n as f64 / b.from_start.as_secs_f64();
            let rate_first = b.n as f64 / b.from_first.as_secs_f64();
            println!(
                "| {} | {:.0} | {:.3} s | {:.0} | {:.2} | {:.0} | {:.2} |",
                b.n,
                b.raw,
                b.from_start.as_secs_f64(),
                rate_start,
                rate_start / b.raw,
                rate_first,
                rate_first / b.raw
            );
        }
        println!();
        println!("| existing blocks | latency p50 | p99 | max | etcd requests per new block | controller RSS |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        let mut rows: Vec<(usize, &Steady)> = vec![(100, &small)];
        for b in &bursts {
            if let Some(s) = &b.steady {
                rows.push((b.n, s));
            }
        }
        for (n, s) in rows {
            println!(
                "| {n} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} | {:.1} MB |",
                s.p50_ms, s.p99_ms, s.max_ms, s.requests_per_block, s.rss_mb
            );
        }
    });
}
