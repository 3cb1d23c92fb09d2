//! Create-if-absent throughput: the library's transaction path against raw `etcd-client`
//! calls, on the same etcd in the same run, sequential (one task) and with 16 concurrent
//! tasks. Each round runs every side back to back, in an order that rotates from round
//! to round, so drift (other load on the machine, etcd's growing database) hits all
//! sides alike; the headline is the median of the per-round ratios.
//!
//! `cargo bench -p sdp-config --bench txn` (add `-- --quick` for a short smoke run).
//!
//! - raw: the cheapest correct create-if-absent etcd can do, one `Txn` with
//!   `version(key) == 0` as the only compare and a put.
//! - library: what daemons write, `db.transact(|t| … t.create(path, value) …)`.
//! - raw+or_else (diagnostic): raw plus the failure branch the library adds to every
//!   transaction with a blind create (a count-only get of the key, never executed when the
//!   create succeeds), to tell the cost of that request shape from the library's own CPU.
//!
//! etcd's request counters show what each side sent, and CPU time of this process and of
//! etcd per create show where any gap comes from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use sdp_config::Config;
use sdp_config::entity::{ProcessingBlock, WorkflowRef};
use sdp_testing::EtcdServer;

const TASKS: usize = 16;

#[derive(Clone, Copy)]
struct Plan {
    rounds: usize,
    sequential_keys: usize,
    keys_per_task: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Raw,
    Library,
    RawOrElse,
}

impl Side {
    const ALL: [Side; 3] = [Side::Raw, Side::Library, Side::RawOrElse];

    fn name(self) -> &'static str {
        match self {
            Side::Raw => "raw",
            Side::Library => "library",
            Side::RawOrElse => "raw+or_else",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Sequential,
    Concurrent,
}

/// One measured run.
#[derive(Clone, Copy, Debug)]
struct Run {
    round: usize,
    per_second: f64,
    txns_per_create: f64,
    ranges_per_create: f64,
    /// CPU time of this (client) process per create, in microseconds.
    client_cpu_us: f64,
    /// CPU time of etcd per create, in microseconds.
    etcd_cpu_us: f64,
}

/// User + system CPU seconds of this process so far (from `/proc/self/stat`).
fn own_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unreadable /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("no utime")?.parse::<f64>()?
        + fields.get(12).context("no stime")?.parse::<f64>()?;
    // Linux reports in USER_HZ, 100 on every platform this runs on.
    Ok(ticks / 100.0)
}

/// etcd's own CPU seconds so far (its `process_cpu_seconds_total` metric).
fn etcd_cpu_seconds(etcd: &EtcdServer) -> Result<f64> {
    let metrics = etcd.metrics()?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("process_cpu_seconds_total "))
        .context("etcd reports no process_cpu_seconds_total")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

/// A realistic value: a processing block as `sdpcfg process` writes it.
fn value(id: &str) -> Result<String> {
    let workflow = WorkflowRef::parse_spec("realtime:testdask:0.1.0").context("workflow spec")?;
    Ok(ProcessingBlock::new(id, workflow).to_json())
}

/// The configuration path of key `i` of `task` in `round` on `side`; unique per run.
fn path(side: Side, mode: Mode, round: usize, task: usize, i: usize) -> String {
    let mode = match mode {
        Mode::Sequential => "s",
        Mode::Concurrent => "c",
    };
    let side = side.name().replace(['+', '_'], "-");
    format!("/pb/{side}-{mode}{round}-t{task:02}-{i:05}")
}

async fn raw_creates(client: Client, keys: Vec<(String, String)>, or_else: bool) -> Result<()> {
    let mut kv = client.kv_client();
    for (key, value) in keys {
        let mut txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value, None)]);
        if or_else {
            txn = txn.or_else([TxnOp::get(key, Some(GetOptions::new().with_count_only()))]);
        }
        let resp = kv.txn(txn).await?;
        ensure!(resp.succeeded(), "raw create found its key existing");
    }
    Ok(())
}

async fn library_creates(db: Config, keys: Vec<(String, String)>) -> Result<()> {
    for (path, value) in keys {
        let (path, value) = (Arc::new(path), Arc::new(value));
        db.transact(|t| {
            let (path, value) = (path.clone(), value.clone());
            Box::pin(async move { t.create(&path, &value).await })
        })
        .await?;
    }
    Ok(())
}

struct Bench {
    etcd: EtcdServer,
    client: Client,
    db: Config,
}

impl Bench {
    /// The (etcd key or configuration path, value) pairs one task creates.
    fn work(
        &self,
        side: Side,
        mode: Mode,
        round: usize,
        task: usize,
        n: usize,
    ) -> Result<Vec<(String, String)>> {
        (0..n)
            .map(|i| {
                let p = path(side, mode, round, task, i);
                let v = value(p.trim_start_matches("/pb/"))?;
                // Raw sides write the same depth-tagged key the library writes for a path.
                let k = match side {
                    Side::Library => p,
                    Side::Raw | Side::RawOrElse => self.db.keys().key(&p),
                };
                Ok((k, v))
            })
            .collect()
    }

    async fn run(&self, side: Side, mode: Mode, round: usize, plan: Plan) -> Result<Run> {
        let (tasks, n) = match mode {
            Mode::Sequential => (1, plan.sequential_keys),
            Mode::Concurrent => (TASKS, plan.keys_per_task),
        };
        let work: Vec<Vec<(String, String)>> = (0..tasks)
            .map(|t| self.work(side, mode, round, t, n))
            .collect::<Result<_>>()?;
        let (txns, ranges) = (
            self.etcd.grpc_requests("Txn")?,
            self.etcd.grpc_requests("Range")?,
        );
        let (client_cpu, etcd_cpu) = (own_cpu_seconds()?, etcd_cpu_seconds(&self.etcd)?);
        let started = Instant::now();
        let handles: Vec<_> = work
            .into_iter()
            .map(|keys| match side {
                Side::Raw => tokio::spawn(raw_creates(self.client.clone(), keys, false)),
                Side::RawOrElse => tokio::spawn(raw_creates(self.client.clone(), keys, true)),
                Side::Library => tokio::spawn(library_creates(self.db.clone(), keys)),
            })
            .collect();
        for h in handles {
            h.await??;
        }
        let elapsed = started.elapsed();
        let client_cpu = own_cpu_seconds()? - client_cpu;
        let etcd_cpu = etcd_cpu_seconds(&self.etcd)? - etcd_cpu;
        let creates = (tasks * n) as f64;
        let txns = (self.etcd.grpc_requests("Txn")? - txns) as f64;
        let ranges = (self.etcd.grpc_requests("Range")? - ranges) as f64;
        Ok(Run {
            round,
            per_second: creates / elapsed.as_secs_f64(),
            txns_per_create: txns / creates,
            ranges_per_create: ranges / creates,
            client_cpu_us: client_cpu * 1e6 / creates,
            etcd_cpu_us: etcd_cpu * 1e6 / creates,
        })
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The 1-minute load average: other work on the machine skews every side.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn etcd_version() -> String {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.trim_start_matches("etcd Version: ").to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

struct Results(Vec<(Side, Mode, Run)>);

impl Results {
    fn runs(&self, side: Side, mode: Mode) -> impl Iterator<Item = &Run> {
        self.0
            .iter()
            .filter(move |(s, m, _)| *s == side && *m == mode)
            .map(|(_, _, r)| r)
    }

    fn median(&self, side: Side, mode: Mode, f: fn(&Run) -> f64) -> f64 {
        median(self.runs(side, mode).map(f).collect())
    }

    /// Median over rounds of `side`'s throughput divided by raw's in the same round.
    fn paired_ratio(&self, side: Side, mode: Mode) -> f64 {
        let ratios = self
            .runs(side, mode)
            .filter_map(|r| {
                self.runs(Side::Raw, mode)
                    .find(|raw| raw.round == r.round)
                    .map(|raw| r.per_second / raw.per_second)
            })
            .collect();
        median(ratios)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            rounds: 1,
            sequential_keys: 300,
            keys_per_task: 100,
        }
    } else {
        Plan {
            rounds: 7,
            sequential_keys: 3_000,
            keys_per_task: 1_000,
        }
    };
    let etcd = EtcdServer::start()?;
    let db = Config::connect(&etcd.connection()).await?;
    let client = Client::connect([etcd.endpoint()], None).await?;
    let bench = Bench { etcd, client, db };

    let load_before = load();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("create-if-absent throughput, library vs raw etcd-client");
    println!(
        "machine: {cores} cores; etcd {}; {} rounds; sequential {} keys; concurrent {TASKS} tasks x {} keys",
        etcd_version(),
        plan.rounds,
        plan.sequential_keys,
        plan.keys_per_task
    );

    // Warm up every side (connections, etcd's first allocations).
    let warm = Plan {
        sequential_keys: plan.sequential_keys / 10,
        keys_per_task: plan.keys_per_task / 10,
        ..plan
    };
    for side in Side::ALL {
        for mode in [Mode::Sequential, Mode::Concurrent] {
            bench.run(side, mode, 0, warm).await?;
        }
    }

    let mut results = Results(Vec::new());
    for round in 1..=plan.rounds {
        let mut order = Side::ALL;
        order.rotate_left(round % Side::ALL.len());
        for mode in [Mode::Sequential, Mode::Concurrent] {
            for side in order {
                let run = bench.run(side, mode, round, plan).await?;
                println!(
                    "round {round} {:<10} {:<11} {:>6.0}/s  {:.2} Txn + {:.2} Range per create; CPU per create: client {:>4.0} us, etcd {:>4.0} us",
                    format!("{mode:?}"),
                    side.name(),
                    run.per_second,
                    run.txns_per_create,
                    run.ranges_per_create,
                    run.client_cpu_us,
                    run.etcd_cpu_us
                );
                results.0.push((side, mode, run));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!();
    println!(
        "| mode | raw (creates/s) | library (creates/s) | library / raw, per round | library / raw, of medians | raw+or_else / raw | requests per create (raw; library) | client CPU per create (raw; library) | etcd CPU per create (raw; library) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|---|");
    for mode in [Mode::Sequential, Mode::Concurrent] {
        let m = |side, f| results.median(side, mode, f);
        let requests = |side| {
            format!(
                "{:.2} Txn + {:.2} Range",
                m(side, |r: &Run| r.txns_per_create),
                m(side, |r: &Run| r.ranges_per_create)
            )
        };
        let cpu = |f: fn(&Run) -> f64| {
            format!("{:.0} us; {:.0} us", m(Side::Raw, f), m(Side::Library, f))
        };
        let (raw, lib) = (
            m(Side::Raw, |r| r.per_second),
            m(Side::Library, |r| r.per_second),
        );
        let label = match mode {
            Mode::Sequential => "sequential (1 task)".to_string(),
            Mode::Concurrent => format!("concurrent ({TASKS} tasks)"),
        };
        println!(
            "| {label} | {raw:.0} | {lib:.0} | {:.2} | {:.2} | {:.2} | {}; {} | {} | {} |",
            results.paired_ratio(Side::Library, mode),
            lib / raw,
            results.paired_ratio(Side::RawOrElse, mode),
            requests(Side::Raw),
            requests(Side::Library),
            cpu(|r| r.client_cpu_us),
            cpu(|r| r.etcd_cpu_us),
        );
    }
    println!(
        "(medians over {} rounds; target: library / raw >= 0.80)",
        plan.rounds
    );
    println!(
        "load average (1 min): {load_before} before, {} after",
        load()
    );
    Ok(())
}
