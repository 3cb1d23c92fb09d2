//! What the console's tests share: a real etcd, the console on a free port, entries
//! written as the controller and deployer write them, and a reader of the page's event
//! stream.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sdp_config::Config;
use sdp_console::{Console, Settings};
use sdp_testing::EtcdServer;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Generous: a loaded 2-core machine, or a watch waiting out its reconnect backoff.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// etcd, a client of it and a console following it; everything stops when dropped.
pub struct World {
    pub db: Config,
    pub console: Console,
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    // Last: dropped after the console has been told to stop.
    pub etcd: EtcdServer,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl World {
    /// etcd and a console on `127.0.0.1:<free port>`, ready (it has listed).
    pub async fn start() -> Result<World> {
        let etcd = EtcdServer::start()?;
        let db = Config::connect(&etcd.connection()).await?;
        let mut settings = Settings::new(etcd.connection());
        settings.http_addr = "127.0.0.1:0".into();
        let shutdown = CancellationToken::new();
        let console = sdp_console::start(settings, shutdown.clone()).await?;
        let base = format!("http://{}", console.addr());
        let world = World {
            db,
            console,
            base,
            http: http_client(),
            shutdown,
            etcd,
        };
        world.until_ready().await?;
        Ok(world)
    }

    /// `GET path`: status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    /// `GET path` as JSON, which must answer 200.
    pub async fn json(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get(path).await?;
        if status != 200 {
            bail!("GET {path}: {status} {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Wait until `/readyz` answers 200.
    pub async fn until_ready(&self) -> Result<String> {
        let start = tokio::time::Instant::now();
        loop {
            let (status, body) = self.get("/readyz").await?;
            if status == 200 {
                return Ok(body);
            }
            if start.elapsed() > DEADLINE {
                bail!("not ready within {DEADLINE:?}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn events(&self) -> Result<Events> {
        Events::open(&self.http, &self.base).await
    }
}

/// Write (`Some`) or delete (`None`) keys in one transaction.
pub async fn write(db: &Config, changes: &[(String, Option<String>)]) -> Result<()> {
    let changes: Vec<(&str, Option<&str>)> = changes
        .iter()
        .map(|(p, v)| (p.as_str(), v.as_deref()))
        .collect();
    Ok(sdp_testing::fixtures::write(db, &changes).await?)
}

/// A plain-HTTP client for the console under test. reqwest may be built with rustls and no
/// crypto provider (feature unification with the controller in a workspace build), so the
/// ring provider is installed for the process first (a no-op when one is installed).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A processing block as `sdpcfg process` creates it, with a secret among its parameters.
/// Its workflow type is the ID's first word.
pub fn block(id: &str) -> (String, Option<String>) {
    let workflow = if id.starts_with("batch-") {
        serde_json::json!({"type": "batch", "id": "ical", "version": "0.3.0"})
    } else {
        serde_json::json!({"type": "realtime", "id": "testdask", "version": "0.1.0"})
    };
    let value = serde_json::json!({
        "pb_id": id,
        "sbi_id": null,
        "workflow": workflow,
        "parameters": {"password": "hunter2-in-parameters"},
        "scan_parameters": {},
    });
    (format!("/pb/{id}"), Some(value.to_string()))
}

/// The block's state as the controller writes it, first written `age` ago.
pub fn block_state(
    id: &str,
    status: &str,
    reason: Option<&str>,
    age: Duration,
) -> (String, Option<String>) {
    let since = chrono::Utc::now() - age;
    let mut value = serde_json::json!({
        "status": status,
        "since": since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "resources_available": true,
    });
    if let Some(r) = reason {
        value["reason"] = r.into();
    }
    (format!("/pb/{id}/state"), Some(value.to_string()))
}

/// The block's workflow deployment as the controller creates it, with a secret value.
pub fn deployment(id: &str) -> (String, Option<String>) {
    let value = serde_json::json!({
        "deploy_id": id,
        "type": "helm",
        "args": {"chart": "workflow", "values": {"env.SDP_CONFIG_PASSWORD": "hunter2-in-values"}},
    });
    (format!("/deploy/{id}"), Some(value.to_string()))
}

/// A deployment's state as the deployer writes it.
pub fn deployment_state(id: &str, status: &str, phase: &str) -> (String, Option<String>) {
    let value = serde_json::json!({
        "status": status,
        "message": "installed: revision 1",
        "workload": {"phase": phase, "message": "", "pods": []},
    });
    (format!("/deploy/{id}/state"), Some(value.to_string()))
}

/// A reader of `/api/events`.
pub struct Events {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no event end (a snapshot is megabytes).
    scanned: usize,
    /// Everything read so far, to check what was never sent.
    pub seen: String,
}

/// One event: its name and its data as JSON.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

impl Events {
    pub async fn open(http: &reqwest::Client, base: &str) -> Result<Events> {
        let resp = http.get(format!("{base}/api/events")).send().await?;
        if resp.status() != 200 {
            bail!("GET /api/events: {}", resp.status());
        }
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if kind != "text/event-stream" {
            bail!("GET /api/events: content type {kind:?}");
        }
        Ok(Events {
            resp,
            buf: Vec::new(),
            scanned: 0,
            seen: String::new(),
        })
    }

    /// The next event (comments and `retry:` skipped).
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            let from = self.scanned.saturating_sub(1);
            let found = self.buf[from..].windows(2).position(|w| w == b"\n\n");
            self.scanned = self.buf.len();
            if let Some(end) = found.map(|i| from + i) {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                self.scanned = 0;
                let text = String::from_utf8(block)?;
                let (mut name, mut data) = (None, String::new());
                for line in text.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if let Some(name) = name {
                    return Ok(Event {
                        name,
                        data: serde_json::from_str(&data).context("event data")?,
                    });
                }
                continue;
            }
            let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk())
                .await
                .context("no event within the deadline")??
                .context("the event stream ended")?;
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// Events until one named `name` for which `pred` holds; returns it.
    pub async fn until(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        loop {
            let e = self.next().await?;
            if e.name == name && pred(&e.data) {
                return Ok(e.data);
            }
        }
    }
}
