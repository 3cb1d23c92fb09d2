//! Shared test helpers: a fresh etcd per test, blocks, polling with deadlines, and
//! workflow binaries run as real processes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sdp_config::entity::{ProcessingBlock, ProcessingBlockState, WorkflowRef};
use sdp_config::{Config, ConnectionSettings};
use sdp_testing::EtcdServer;
use sdp_workflows::Options;
use serde_json::Value;

/// Generous: the machine may be loaded.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A fresh etcd and a connection to it.
pub struct Env {
    pub etcd: EtcdServer,
    pub settings: ConnectionSettings,
    pub db: Config,
}

impl Env {
    pub async fn start() -> Env {
        let etcd = EtcdServer::start().expect("etcd starts");
        let settings = ConnectionSettings {
            timeout_secs: 3.0,
            ..etcd.connection()
        };
        let db = Config::connect(&settings).await.expect("connects");
        Env { etcd, settings, db }
    }

    /// Options for SDK tests: short lease, short connect limit.
    pub fn options(&self) -> Options {
        Options::default()
            .with_lease_ttl(Duration::from_secs(2))
            .with_connect_timeout(Duration::from_secs(10))
            .with_namespace("test-sdp")
    }

    /// Create `/pb/<id>` as `sdpcfg process` would, with `parameters`.
    pub async fn create_block(&self, pb_id: &str, workflow: &str, parameters: Value) {
        let mut block = ProcessingBlock::new(pb_id, WorkflowRef::parse_spec(workflow).unwrap());
        block.parameters = parameters.as_object().unwrap().clone();
        self.create(&ProcessingBlock::path(pb_id), &block.to_json())
            .await;
    }

    /// Rewrite the block's parameters.
    pub async fn set_parameters(&self, pb_id: &str, parameters: Value) {
        let path = ProcessingBlock::path(pb_id);
        let text = self.get(&path).await.expect("block exists");
        let mut block = ProcessingBlock::parse(&text, Some(pb_id)).unwrap();
        block.parameters = parameters.as_object().unwrap().clone();
        self.put(&path, &block.to_json()).await;
    }

    pub async fn get(&self, path: &str) -> Option<String> {
        self.db.txn().get(path).await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Option<Value> {
        self.get(path)
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
    }

    pub async fn state(&self, pb_id: &str) -> Option<ProcessingBlockState> {
        self.get(&ProcessingBlock::state_path(pb_id))
            .await
            .map(|t| ProcessingBlockState::parse(&t).unwrap())
    }

    pub async fn create(&self, path: &str, value: &str) {
        let mut txn = self.db.txn();
        txn.create(path, value).await.unwrap();
        txn.commit().await.unwrap();
    }

    pub async fn put(&self, path: &str, value: &str) {
        let mut txn = self.db.txn();
        txn.put(path, value).unwrap();
        txn.commit().await.unwrap();
    }

    pub async fn delete(&self, path: &str) {
        let mut txn = self.db.txn();
        txn.delete(path).await.unwrap();
        txn.commit().await.unwrap();
    }

    /// `sdpcfg delete -R <path>`.
    pub async fn delete_tree(&self, path: &str) {
        let mut txn = self.db.txn();
        txn.delete_tree(path).unwrap();
        txn.commit().await.unwrap();
    }

    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        self.db.txn().list_keys(prefix, 0).await.unwrap()
    }
}

/// Poll `probe` until it returns `Some`, or panic with `what` after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A workflow binary running as a child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Run `binary <pb_id>` against `etcd` with `env` added.
    pub fn spawn(binary: &str, pb_id: &str, etcd: &EtcdServer, env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let mut cmd = Command::new(binary);
        cmd.arg(pb_id)
            .envs(etcd.env())
            .env("SDP_HELM_NAMESPACE", "test-sdp")
            .env("SDP_LOG_LEVEL", "debug")
            .env_remove("SDP_CONFIG_PREFIX")
            .env_remove("SDP_HELM_PREFIX")
            .env_remove("SDP_DASK_SCHEDULER")
            .env_remove("SDP_DASK_TIMEOUT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
        Proc {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for the exit (panics with the log after `DEADLINE`).
    pub async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Send SIGTERM (with the `kill` program: no unsafe code in tests).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
