//! Harness of the deployer's integration tests: a real etcd, the real `sdp-deployer`
//! binary as a child process, and the stand-in helm (`fake-helm`) keeping its releases
//! in a temporary directory.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sdp_config::Config;
use sdp_config::entity::DeploymentState;
use sdp_testing::EtcdServer;
use serde_json::{Value, json};

pub const NS: &str = "sdp";
pub const WORKFLOW_ID: &str = "realtime-20191121-0000-workflow";
pub const DASK_ID: &str = "realtime-20191121-0000-dask";

/// The repository's charts.
pub fn charts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts")
        .canonicalize()
        .unwrap_or_default()
}

/// The real helm and kubernetes-validate.
pub fn tools_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin")
}

/// The seed's workflow deployment, as the processing controller writes it.
pub fn seed_workflow() -> String {
    json!({"deploy_id": WORKFLOW_ID, "type": "helm", "args": {"chart": "workflow", "values": {
        "env.SDP_CONFIG_HOST": "127.0.0.1", "env.SDP_HELM_NAMESPACE": "sdp",
        "pb_id": "realtime-20191121-0000", "wf_image": "sdp/workflow-testdask:0.1.0"}}})
    .to_string()
}

/// The seed's dask deployment, byte for byte as in the wire format.
pub fn seed_dask() -> String {
    "{\n  \"args\": {\n    \"chart\": \"stable/dask\",\n    \"values\": {\n      \"jupyter.enabled\": \"false\",\n      \"scheduler.serviceType\": \"ClusterIP\",\n      \"worker.replicas\": 2\n    }\n  },\n  \"deploy_id\": \"realtime-20191121-0000-dask\",\n  \"type\": \"helm\"\n}".to_string()
}

/// A helm deployment of the dask chart with these values.
pub fn dask(id: &str, values: Value) -> String {
    json!({"deploy_id": id, "type": "helm", "args": {"chart": "stable/dask", "values": values}})
        .to_string()
}

/// Poll `check` until it returns `Some`, or fail after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One recorded call of the stand-in helm.
#[derive(Debug, Clone)]
pub struct Call {
    pub argv: Vec<String>,
    /// Names of the variables in the environment of the call.
    pub env: Vec<String>,
    pub values: Vec<String>,
    pub values_modes: Vec<u64>,
    pub t: u64,
    pub pid: u32,
}

impl Call {
    pub fn command(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }
    /// The positional arguments after `--`.
    pub fn positional(&self) -> Vec<&str> {
        match self.argv.iter().position(|a| a == "--") {
            Some(i) => self.argv[i + 1..].iter().map(String::as_str).collect(),
            None => Vec::new(),
        }
    }
    pub fn release(&self) -> Option<&str> {
        let p = self.positional();
        match self.command() {
            "upgrade" | "uninstall" | "history" | "rollback" | "template" => p.first().copied(),
            _ => None,
        }
    }
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.argv
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.argv.get(i + 1))
            .map(String::as_str)
    }
}

pub struct Harness {
    pub etcd: EtcdServer,
    pub db: Config,
    pub helm_dir: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

/// A running `sdp-deployer`, killed (SIGKILL) when dropped.
pub struct Deployer {
    pub child: Child,
    pub http_port: u16,
    pub log: PathBuf,
}

impl Deployer {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn terminate(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    /// Wait for exit; the exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<Option<i32>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            ensure!(
                start.elapsed() < limit,
                "deployer still running after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        // The start (how the deployer came up) and the end (what it did last).
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() <= 120 {
            return lines.join("\n");
        }
        let (head, tail) = (&lines[..40], &lines[lines.len() - 80..]);
        format!("{}\n[…]\n{}", head.join("\n"), tail.join("\n"))
    }
    /// `GET path` on the health/metrics port: (status, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").context("bad HTTP response")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status")?;
        Ok((status, body.to_string()))
    }
    /// A metric's value (first series matching `name` and containing `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> Result<f64> {
        let (_, body) = self.http_get("/metrics")?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

impl Drop for Deployer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Harness {
    pub async fn start() -> Result<Harness> {
        Self::start_with(sdp_testing::EtcdOptions::default()).await
    }

    /// With an etcd started with `opts` (TLS, authentication).
    pub async fn start_with(opts: sdp_testing::EtcdOptions) -> Result<Harness> {
        let etcd = EtcdServer::start_with(opts)?;
        let db = Config::connect(&etcd.connection()).await?;
        Ok(Harness {
            etcd,
            db,
            helm_dir: tempfile::tempdir()?,
            work: tempfile::tempdir()?,
        })
    }

    /// Environment of a deployer using the stand-in helm, with test-sized timings.
    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self.etcd.env().into_iter().collect();
        let pairs = [
            (
                "SDP_HELM",
                sdp_testing::fake_helm_path().display().to_string(),
            ),
            ("FAKE_HELM_DIR", self.helm_dir.path().display().to_string()),
            ("SDP_HELM_NAMESPACE", NS.into()),
            ("SDP_CHARTS_DIR", charts_dir().display().to_string()),
            ("SDP_HELM_TIMEOUT", "20".into()),
            ("SDP_HELM_KILL_GRACE", "0.5".into()),
            ("SDP_HELM_BACKOFF", "0.2".into()),
            ("SDP_HELM_BACKOFF_MAX", "2".into()),
            ("SDP_HELM_RETRIES", "4".into()),
            ("SDP_HELM_RESYNC", "2".into()),
            ("SDP_LEADER_TTL", "2".into()),
            ("SDP_SHUTDOWN_GRACE", "10".into()),
            ("SDP_LOG_LEVEL", "info,sdp_deployer=debug".into()),
            ("TMPDIR", self.work.path().display().to_string()),
        ];
        env.extend(pairs.into_iter().map(|(k, v)| (k.to_string(), v)));
        env
    }

    /// Start `sdp-deployer` with [`Harness::env`] plus `extra`.
    pub fn deployer(&self, extra: &[(&str, &str)]) -> Result<Deployer> {
        let port = sdp_testing::free_port();
        let n = std::fs::read_dir(self.work.path())?.count();
        let log = self.work.path().join(format!("deployer-{n}-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdp-deployer"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SDP_") || k.starts_with("FAKE_HELM") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env())
            .env("SDP_HTTP_ADDR", format!("127.0.0.1:{port}"));
        cmd.envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start sdp-deployer")?;
        Ok(Deployer {
            child,
            http_port: port,
            log,
        })
    }

    /// This database's identity (created as the deployer creates it, if it has none
    /// yet), for releases written by hand as if the deployer had installed them.
    pub async fn database_id(&self) -> Result<String> {
        Ok(self.db.database_record_or_create(false).await?.id)
    }

    pub async fn put(&self, path: &str, value: &str) -> Result<()> {
        let (path, value) = (path.to_string(), value.to_string());
        self.db
            .transact(|t| {
                let (path, value) = (path.clone(), value.clone());
                Box::pin(async move { t.put(&path, &value) })
            })
            .await?;
        Ok(())
    }

    pub async fn deploy(&self, id: &str, value: &str) -> Result<()> {
        self.put(&format!("/deploy/{id}"), value).await
    }

    /// Delete one key (like `sdpcfg delete`, not recursive).
    pub async fn delete(&self, path: &str) -> Result<()> {
        let path = path.to_string();
        self.db
            .transact(|t| {
                let path = path.clone();
                Box::pin(async move { t.delete(&path).await })
            })
            .await?;
        Ok(())
    }

    /// Delete a deployment and everything below it (`sdpcfg delete -R`).
    pub async fn delete_tree(&self, path: &str) -> Result<()> {
        let path = path.to_string();
        self.db
            .transact(|t| {
                let path = path.clone();
                Box::pin(async move { t.delete_tree(&path) })
            })
            .await?;
        Ok(())
    }

    pub async fn get(&self, path: &str) -> Result<Option<String>> {
        let path = path.to_string();
        Ok(self
            .db
            .transact(|t| {
                let path = path.clone();
                Box::pin(async move { t.get(&path).await })
            })
            .await?)
    }

    pub async fn keys(&self, prefix: &str, depth: usize) -> Result<Vec<String>> {
        let prefix = prefix.to_string();
        Ok(self
            .db
            .transact(|t| {
                let prefix = prefix.clone();
                Box::pin(async move { t.list_keys(&prefix, depth).await })
            })
            .await?)
    }

    pub async fn state(&self, id: &str) -> Result<Option<DeploymentState>> {
        Ok(match self.get(&format!("/deploy/{id}/state")).await? {
            Some(text) => Some(DeploymentState::parse(&text)?),
            None => None,
        })
    }

    /// Wait until the state of `id` has `status` (and, if given, this digest).
    pub async fn wait_status(
        &self,
        id: &str,
        status: &str,
        limit: Duration,
    ) -> Result<DeploymentState> {
        eventually(limit, &format!("{id} to be {status}"), || async {
            Ok(self
                .state(id)
                .await?
                .filter(|s| s.status.as_deref() == Some(status)))
        })
        .await
    }

    /// Wait until the state of `id` is DEPLOYED with a digest other than `not`.
    pub async fn wait_deployed_other_than(
        &self,
        id: &str,
        not: Option<&str>,
        limit: Duration,
    ) -> Result<DeploymentState> {
        eventually(limit, &format!("{id} to be DEPLOYED anew"), || async {
            Ok(self
                .state(id)
                .await?
                .filter(|s| s.status.as_deref() == Some("DEPLOYED") && s.digest.as_deref() != not))
        })
        .await
    }

    pub fn calls(&self) -> Vec<Call> {
        let text =
            std::fs::read_to_string(self.helm_dir.path().join("calls.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Call {
                argv: v["argv"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect(),
                env: v["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect(),
                values: v["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect(),
                values_modes: v["values_modes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .collect(),
                t: v["t"].as_u64().unwrap_or(0),
                pid: v["pid"].as_u64().unwrap_or(0) as u32,
            })
            .collect()
    }

    /// Calls of `command` on `release`.
    pub fn calls_on(&self, command: &str, release: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.command() == command && c.release() == Some(release))
            .collect()
    }

    pub fn release_path(&self, name: &str) -> PathBuf {
        self.helm_dir
            .path()
            .join("releases")
            .join(NS)
            .join(format!("{name}.json"))
    }

    /// A release as the stand-in keeps it.
    pub fn release(&self, name: &str) -> Option<Value> {
        std::fs::read_to_string(self.release_path(name))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// Names of every release in the namespace.
    pub fn release_names(&self) -> Vec<String> {
        let dir = self.helm_dir.path().join("releases").join(NS);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".json")
                            .map(String::from)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Put a release straight into the stand-in's store (a release someone else made).
    pub fn write_release(&self, release: &Value) -> Result<()> {
        let name = release["name"].as_str().context("name")?;
        std::fs::create_dir_all(self.helm_dir.path().join("releases").join(NS))?;
        std::fs::write(
            self.release_path(name),
            serde_json::to_string_pretty(release)?,
        )?;
        Ok(())
    }

    /// Fault rules of the stand-in (see fake-helm's docs).
    pub fn faults(&self, rules: Value) -> Result<()> {
        std::fs::write(self.helm_dir.path().join("faults.json"), rules.to_string())?;
        Ok(())
    }

    /// No state key without its entry, anywhere under /deploy/.
    pub async fn assert_no_orphan_states(&self) -> Result<()> {
        let keys = self.keys("/deploy/", 1).await?;
        for key in &keys {
            if let Some(id) = key
                .strip_prefix("/deploy/")
                .and_then(|k| k.strip_suffix("/state"))
            {
                ensure!(
                    keys.contains(&format!("/deploy/{id}")),
                    "state key without entry: {key}"
                );
            }
        }
        Ok(())
    }
}

/// A foreign (not ours) deployed release of the stand-in.
pub fn foreign_release(name: &str) -> Value {
    json!({"name": name, "namespace": NS, "revision": 1, "status": "deployed", "chart": "other-1.0.0",
           "labels": {"owner": "someone-else"}, "values": {}, "description": "Install complete",
           "updated": chrono::Utc::now().to_rfc3339(), "installs": 1,
           "history": [{"revision": 1, "status": "deployed", "description": "Install complete",
                        "updated": chrono::Utc::now().to_rfc3339(), "chart": "other-1.0.0", "values": {}}]})
}

/// Context for a failing assertion: the deployer's log.
pub fn with_log<T>(result: Result<T>, deployer: &Deployer) -> Result<T> {
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- deployer log ---\n{}", deployer.log_tail()))
}
