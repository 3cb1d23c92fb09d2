//! Shared helpers of the controller's integration tests: a real etcd, the controller
//! in-process (`run`) or as the built binary, and polling with deadlines.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sdp_config::{Config, Error};
use sdp_controller::Settings;
use sdp_testing::EtcdServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Generous: the machine may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The repository path of the wire-format example's image.
pub const NEXUS: &str = "nexus.engageska-portugal.pt/sdp-prototype";

/// A registry file: realtime testdask and testdeploy, batch teststate, from `repo`.
pub fn registry_json(repo: &str, extra_workflows: &[(&str, &str)]) -> String {
    let mut wfs = vec![
        r#"{"type": "realtime", "id": "testdask", "repository": "r", "image": "workflow-testdask", "versions": ["0.1.0"]}"#.to_string(),
        r#"{"type": "realtime", "id": "testdeploy", "repository": "r", "image": "workflow-testdeploy", "versions": ["0.1.0"]}"#.to_string(),
        r#"{"type": "batch", "id": "teststate", "repository": "r", "image": "workflow-teststate", "versions": ["0.1.0"]}"#.to_string(),
    ];
    for (kind, id) in extra_workflows {
        wfs.push(format!(r#"{{"type": "{kind}", "id": "{id}", "repository": "r", "image": "workflow-{id}", "versions": ["0.1.0"]}}"#));
    }
    format!(
        r#"{{"repositories": [{{"name": "r", "path": "{repo}"}}], "workflows": [{}]}}"#,
        wfs.join(", ")
    )
}

/// etcd, a client, and a registry file in a temporary directory.
pub struct Env {
    pub etcd: EtcdServer,
    pub db: Config,
    pub dir: tempfile::TempDir,
    pub registry: PathBuf,
}

impl Env {
    pub async fn start() -> Env {
        let etcd = EtcdServer::start().expect("etcd starts");
        let db = Config::connect(&etcd.connection()).await.expect("connect");
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("workflows.json");
        std::fs::write(&registry, registry_json(NEXUS, &[])).unwrap();
        Env {
            etcd,
            db,
            dir,
            registry,
        }
    }

    /// Controller settings for this etcd and registry, HTTP on a free port.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(self.etcd.connection());
        s.workflows_url = self.registry.display().to_string();
        s.http_addr = format!("127.0.0.1:{}", sdp_testing::free_port());
        s
    }

    /// Run the controller in-process.
    pub fn controller(&self) -> InProcess {
        InProcess::start(self.settings())
    }

    pub async fn put(&self, path: &str, value: &str) {
        put(&self.db, path, value).await
    }

    pub async fn get(&self, path: &str) -> Option<String> {
        get(&self.db, path).await
    }

    pub async fn delete_tree(&self, path: &str) {
        let path = path.to_string();
        self.db
            .transact(move |t| {
                let path = path.clone();
                Box::pin(async move { t.delete_tree(&path) })
            })
            .await
            .unwrap();
    }

    /// Wait until `path` holds a value, and return it.
    pub async fn wait_value(&self, path: &str) -> String {
        let db = self.db.clone();
        let p = path.to_string();
        wait_for(&format!("{path} to exist"), move || {
            let db = db.clone();
            let p = p.clone();
            async move { get(&db, &p).await }
        })
        .await
    }

    /// Every configuration path under `prefix`, up to 3 levels below it.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        keys(&self.db, prefix).await
    }
}

pub async fn put(db: &Config, path: &str, value: &str) {
    let (path, value) = (path.to_string(), value.to_string());
    db.transact(move |t| {
        let (path, value) = (path.clone(), value.clone());
        Box::pin(async move { t.put(&path, &value) })
    })
    .await
    .unwrap();
}

pub async fn get(db: &Config, path: &str) -> Option<String> {
    let path = path.to_string();
    db.transact(move |t| {
        let path = path.clone();
        Box::pin(async move { t.get(&path).await })
    })
    .await
    .unwrap()
}

pub async fn keys(db: &Config, prefix: &str) -> Vec<String> {
    keys_at(db, prefix, 3).await
}

/// Paths under `prefix` down to `depth` levels below it; empty while etcd is down.
pub async fn keys_at(db: &Config, prefix: &str, depth: usize) -> Vec<String> {
    let prefix = prefix.to_string();
    db.transact(move |t| {
        let prefix = prefix.clone();
        Box::pin(async move { t.list_keys(&prefix, depth).await })
    })
    .await
    .unwrap_or_default()
}

/// Create a block the way `sdpcfg process` does (create; retried across etcd outages).
pub async fn create_retrying(db: &Config, path: &str, value: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (p, v) = (path.to_string(), value.to_string());
        let r = db
            .transact(move |t| {
                let (p, v) = (p.clone(), v.clone());
                Box::pin(async move { t.create(&p, &v).await })
            })
            .await;
        match r {
            Ok(()) | Err(Error::AlreadyExists { .. }) => return,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create {path}: {e}"),
        }
    }
}

/// Poll `probe` until it returns `Some`, or panic after [`DEADLINE`] naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, DEADLINE, probe).await
}

pub async fn wait_for_within<T, F, Fut>(what: &str, deadline: Duration, probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The 2019 `sdpcfg process realtime:testdask:0.1.0` block, byte for byte.
pub fn sdpcfg_block(id: &str, kind: &str, workflow: &str) -> String {
    format!(
        "{{\n  \"parameters\": {{}},\n  \"pb_id\": \"{id}\",\n  \"sbi_id\": null,\n  \"scan_parameters\": {{}},\n  \"workflow\": {{\n    \"id\": \"{workflow}\",\n    \"type\": \"{kind}\",\n    \"version\": \"0.1.0\"\n  }}\n}}"
    )
}

/// The `status` and `reason` of a state value.
pub fn status_of(state: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(state).unwrap();
    (
        v["status"].as_str().unwrap_or("").to_string(),
        v["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// The controller running in this process.
pub struct InProcess {
    pub cancel: CancellationToken,
    pub task: Option<JoinHandle<sdp_controller::Result<()>>>,
    pub http_addr: String,
}

impl InProcess {
    pub fn start(settings: Settings) -> InProcess {
        let cancel = CancellationToken::new();
        let http_addr = settings.http_addr.clone();
        let task = Some(tokio::spawn(sdp_controller::run(settings, cancel.clone())));
        InProcess {
            cancel,
            task,
            http_addr,
        }
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stop gracefully and return `run`'s result.
    pub async fn stop(mut self) -> sdp_controller::Result<()> {
        self.cancel.cancel();
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("stops within 30 s")
            .expect("no panic")
    }

    /// `GET path` on the HTTP endpoint: (status, body).
    pub async fn http_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http_addr, path).await
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A minimal HTTP/1.1 GET.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The controller binary as a child process, its output in a log file.
pub struct Binary {
    pub child: Child,
    pub log: PathBuf,
    pub http_addr: String,
}

impl Binary {
    pub fn start(
        etcd: &EtcdServer,
        registry: &Path,
        log: PathBuf,
        extra_env: &[(&str, &str)],
    ) -> Binary {
        let http_addr = format!("127.0.0.1:{}", sdp_testing::free_port());
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdp-controller"));
        for (k, v) in etcd.env() {
            cmd.env(k, v);
        }
        cmd.env("SDP_WORKFLOWS_URL", registry)
            .env("SDP_HTTP_ADDR", &http_addr)
            .env("SDP_LOG_LEVEL", "info")
            .env("SDP_LOG_JSON", "false")
            .env_remove("RUST_LOG")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("controller binary starts");
        Binary {
            child,
            log,
            http_addr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        // SAFETY-free: libc::kill on our own child's PID.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of controller logs that report a duplicate create or an error.
pub fn bad_log_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let lower = l.to_lowercase();
            lower.contains("already exists")
                || lower.contains("alreadyexists")
                || lower.contains("duplicate")
                || l.contains("ERROR")
        })
        .map(String::from)
        .collect()
}

/// Wait until every live block has exactly its workflow deployment and a state, no other
/// deployment exists, and deleted blocks have none.
pub async fn wait_consistent(db: &Config, live: &[String], what: &str) {
    let want: std::collections::BTreeSet<String> = live
        .iter()
        .map(|id| format!("/deploy/{id}-workflow"))
        .collect();
    let db2 = db.clone();
    let live2: Vec<String> = live.to_vec();
    wait_for_within(what, Duration::from_secs(120), move || {
        let db = db2.clone();
        let want = want.clone();
        let live = live2.clone();
        async move {
            let deploys: std::collections::BTreeSet<String> =
                keys_at(&db, "/deploy/", 0).await.into_iter().collect();
            if deploys != want {
                return None;
            }
            let states: std::collections::BTreeSet<String> = keys(&db, "/pb/")
                .await
                .into_iter()
                .filter(|k| k.ends_with("/state"))
                .collect();
            live.iter()
                .all(|id| states.contains(&format!("/pb/{id}/state")))
                .then_some(())
        }
    })
    .await;
}
