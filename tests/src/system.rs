//! The whole system for one test: its own etcd, the processing controller and the Helm
//! deployer as real child processes, a temporary directory (logs, rendered manifests,
//! the stand-in helm's state), and helpers to run `sdpcfg` and workflows against it.
//!
//! Every process's output goes to a log file; [`System::report`] attaches the end of
//! each log and the recorded history to a failing test's error, and a panicking test
//! prints them when the system is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;
use sdp_config::Config;
use sdp_testing::{EtcdCluster, EtcdServer};

use crate::binaries::{binary, repo_root};
use crate::history::History;
use crate::process::{Proc, Spec, log_tail};
use crate::wait::{Outcome, eventually};

/// Where the deployer sends releases.
#[derive(Clone, Debug)]
pub enum Target {
    /// Real `helm template` into `<tmp>/render/<namespace>/<release>.yaml`.
    Render,
    /// The cluster target with the stand-in helm keeping releases in `<tmp>/helm`.
    FakeHelm,
    /// The stand-in helm, and pods watched through this kubeconfig (the Kubernetes API
    /// stand-in, `sdp_testing::kube::KubeApi`).
    StandIn {
        /// The `KUBECONFIG` the deployer uses.
        kubeconfig: PathBuf,
    },
    /// A real cluster: real helm with this kubeconfig.
    Cluster {
        /// The `KUBECONFIG` the deployer uses.
        kubeconfig: PathBuf,
    },
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    /// The deployer's target.
    pub target: Target,
    /// `SDP_HELM_NAMESPACE` of the controller, the deployer and the workflows.
    pub namespace: String,
    /// Whether to start the deployer at all (the dependency tests need only the
    /// controller).
    pub deployer: bool,
    /// `SDP_WORKFLOW_CONFIG_HOST` of the controller (the etcd host workflow pods are
    /// told); `None`: the controller's own host, 127.0.0.1.
    pub workflow_config_host: Option<String>,
    /// More environment for the controller (e.g. `SDP_OWNER_GRACE`).
    pub controller_env: Vec<(String, String)>,
    /// More environment for the deployer (e.g. `SDP_WORKLOAD_MAX_RESTARTS`).
    pub deployer_env: Vec<(String, String)>,
    /// Members of the etcd: 1 is a lone server; more make a cluster, whose members
    /// every process is given, the raft leader first (so the daemons talk to it).
    pub etcd_members: usize,
}

impl Options {
    /// Controller and deployer with `target`, namespace `test-sdp`.
    pub fn new(target: Target) -> Options {
        Options {
            target,
            namespace: "test-sdp".into(),
            deployer: true,
            workflow_config_host: None,
            controller_env: Vec::new(),
            deployer_env: Vec::new(),
            etcd_members: 1,
        }
    }
}

/// A running system; everything is stopped and deleted when dropped.
pub struct System {
    /// Recorded changes under `/pb/` and `/deploy/`.
    pub history: History,
    /// A client of the system's etcd.
    pub db: Config,
    /// The controller and the deployer.
    daemons: Mutex<Vec<Proc>>,
    /// Their HTTP ports on 127.0.0.1 (`/healthz`, `/readyz`, `/metrics`), by name.
    http: Mutex<Vec<(String, u16)>>,
    logs: Mutex<Vec<PathBuf>>,
    opts: Options,
    /// Dropped after the processes (fields drop in order).
    pub etcd: Etcd,
    dir: tempfile::TempDir,
}

/// The system's etcd: one server, or a cluster.
pub enum Etcd {
    /// A lone server.
    One(Box<EtcdServer>),
    /// A cluster, and the host list processes are given.
    Cluster {
        /// The members (behind a lock so that a test can kill one through `&System`).
        cluster: Mutex<EtcdCluster>,
        /// `SDP_CONFIG_HOST`: every member, the leader at start first.
        hosts: String,
        /// The member listed first (the one the daemons talk to at first).
        first: usize,
    },
}

impl Etcd {
    fn start(members: usize) -> Result<Etcd> {
        if members <= 1 {
            return Ok(Etcd::One(Box::new(
                EtcdServer::start().context("cannot start etcd")?,
            )));
        }
        let cluster = EtcdCluster::start(members).context("cannot start an etcd cluster")?;
        let first = cluster.leader()?;
        let mut order: Vec<usize> = (0..cluster.len()).filter(|&i| i != first).collect();
        order.insert(0, first);
        let hosts = order
            .iter()
            .map(|&i| format!("{}:{}", cluster.member(i).host(), cluster.member(i).port()))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Etcd::Cluster {
            cluster: Mutex::new(cluster),
            hosts,
            first,
        })
    }

    /// The lone server's process ID (`None` for a cluster, or when it does not run).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Etcd::One(server) => server.pid(),
            Etcd::Cluster { .. } => None,
        }
    }

    /// `SDP_CONFIG_PORT` of the processes (the port of a host listed without one; what
    /// the controller hands on to workflows).
    pub fn port(&self) -> u16 {
        match self {
            Etcd::One(server) => server.port(),
            Etcd::Cluster { .. } => self
                .env()
                .into_iter()
                .find(|(name, _)| name == "SDP_CONFIG_PORT")
                .and_then(|(_, port)| port.parse().ok())
                .unwrap_or(2379),
        }
    }

    /// `SDP_CONFIG_*` pointing at this etcd (every member of a cluster).
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Etcd::One(server) => server.env(),
            Etcd::Cluster { cluster, hosts, .. } => {
                let mut env = lock(cluster).env();
                for (name, value) in &mut env {
                    if name == "SDP_CONFIG_HOST" {
                        value.clone_from(hosts);
                    }
                }
                env
            }
        }
    }

    /// The library's connection settings for this etcd.
    pub fn connection(&self) -> sdp_config::ConnectionSettings {
        match self {
            Etcd::One(server) => server.connection(),
            Etcd::Cluster { cluster, hosts, .. } => sdp_config::ConnectionSettings {
                host: hosts.clone(),
                ..lock(cluster).connection()
            },
        }
    }

    /// The cluster member listed first, which the daemons use until it fails.
    ///
    /// # Errors
    /// Not a cluster.
    pub fn first_member(&self) -> Result<usize> {
        match self {
            Etcd::Cluster { first, .. } => Ok(*first),
            Etcd::One(_) => bail!("not an etcd cluster"),
        }
    }

    /// Kills cluster member `i` (SIGKILL).
    ///
    /// # Errors
    /// Not a cluster.
    pub fn kill_member(&self, i: usize) -> Result<()> {
        match self {
            Etcd::Cluster { cluster, .. } => {
                lock(cluster).kill(i);
                Ok(())
            }
            Etcd::One(_) => bail!("not an etcd cluster"),
        }
    }

    /// Starts cluster member `i` again and waits until it is healthy.
    ///
    /// # Errors
    /// Not a cluster, or the member does not come back.
    pub fn restart_member(&self, i: usize) -> Result<()> {
        match self {
            Etcd::Cluster { cluster, .. } => Ok(lock(cluster).restart(i)?),
            Etcd::One(_) => bail!("not an etcd cluster"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a daemon may take to report itself ready.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Attempts to start a daemon whose free port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

impl System {
    /// Starts etcd, the history recorder, the controller and (if asked) the deployer,
    /// and waits until both daemons answer `/readyz` with 200.
    ///
    /// # Errors
    /// Anything that fails to start, with its log.
    pub async fn start(opts: Options) -> Result<System> {
        let dir = tempfile::Builder::new().prefix("sdp-e2e-").tempdir()?;
        for sub in ["logs", "render", "helm", "helm-home"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        let etcd = Etcd::start(opts.etcd_members)?;
        let settings = etcd.connection();
        let db = Config::connect(&settings).await?;
        let history = History::start(&db)?;
        let system = System {
            history,
            db,
            daemons: Mutex::new(Vec::new()),
            http: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            opts,
            etcd,
            dir,
        };
        let controller = system
            .start_daemon("controller", System::controller_spec)
            .await;
        system.daemons().push(system.report(controller)?);
        if system.opts.deployer {
            let deployer = system.start_daemon("deployer", System::deployer_spec).await;
            system.daemons().push(system.report(deployer)?);
        }
        Ok(system)
    }

    fn daemons(&self) -> std::sync::MutexGuard<'_, Vec<Proc>> {
        self.daemons.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The target namespace.
    pub fn namespace(&self) -> &str {
        &self.opts.namespace
    }

    /// The deployer's target.
    pub fn target(&self) -> &Target {
        &self.opts.target
    }

    /// The test's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the render target writes: `<dir>/<namespace>/<release>.yaml`.
    pub fn render_dir(&self) -> PathBuf {
        self.dir.path().join("render")
    }

    /// The rendered manifest of a release.
    pub fn rendered(&self, release: &str) -> PathBuf {
        self.render_dir()
            .join(self.namespace())
            .join(format!("{release}.yaml"))
    }

    /// The stand-in helm's directory (`FAKE_HELM_DIR`).
    pub fn fake_helm_dir(&self) -> PathBuf {
        self.dir.path().join("helm")
    }

    /// `SDP_CONFIG_*` pointing at this system's etcd.
    pub fn connection_env(&self) -> Vec<(String, String)> {
        self.etcd.env()
    }

    /// A fresh log file for a process called `name`, included in failure reports.
    pub fn new_log(&self, name: &str) -> PathBuf {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self
            .dir
            .path()
            .join("logs")
            .join(format!("{:02}-{name}.log", logs.len()));
        logs.push(path.clone());
        path
    }

    /// Environment every helm process (and kubectl) gets: its own homes (no user repositories or
    /// plugins) and the project's tools first on PATH.
    pub fn helm_env(&self) -> Vec<(String, String)> {
        let home = self.dir.path().join("helm-home");
        let mut path = std::ffi::OsString::from(repo_root().join(".tools/bin"));
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        vec![
            (
                "HELM_CACHE_HOME".into(),
                home.join("cache").display().to_string(),
            ),
            (
                "HELM_CONFIG_HOME".into(),
                home.join("config").display().to_string(),
            ),
            (
                "HELM_DATA_HOME".into(),
                home.join("data").display().to_string(),
            ),
            ("PATH".into(), path.to_string_lossy().into_owned()),
        ]
    }

    fn controller_spec(&self) -> Result<Spec> {
        let registry = repo_root().join("workflows/workflows.json");
        let mut spec = Spec::new("controller", binary("sdp-controller")?)
            .envs(self.connection_env())
            .env("SDP_HELM_NAMESPACE", self.namespace())
            .env("SDP_WORKFLOWS_URL", registry.display().to_string())
            .env("SDP_LOG_LEVEL", "info")
            .env("SDP_LOG_JSON", "false");
        if let Some(host) = &self.opts.workflow_config_host {
            spec = spec.env("SDP_WORKFLOW_CONFIG_HOST", host.as_str());
        }
        Ok(spec.envs(self.opts.controller_env.iter().cloned()))
    }

    fn deployer_spec(&self) -> Result<Spec> {
        let spec = Spec::new("deployer", binary("sdp-deployer")?)
            .envs(self.connection_env())
            .envs(self.helm_env())
            .env("SDP_HELM_NAMESPACE", self.namespace())
            .env(
                "SDP_CHARTS_DIR",
                repo_root().join("charts").display().to_string(),
            )
            .env("SDP_HELM_BACKOFF", "0.5")
            .env("SDP_HELM_BACKOFF_MAX", "5")
            .env("SDP_LOG_LEVEL", "info")
            .env("SDP_LOG_JSON", "false")
            .envs(self.opts.deployer_env.iter().cloned());
        Ok(match &self.opts.target {
            Target::Render => spec
                .env("SDP_HELM", real_helm()?.display().to_string())
                .env("SDP_HELM_TARGET", "render")
                .env("SDP_HELM_TIMEOUT", "120")
                .env("SDP_RENDER_DIR", self.render_dir().display().to_string()),
            Target::FakeHelm => spec
                .env(
                    "SDP_HELM",
                    sdp_testing::fake_helm_path().display().to_string(),
                )
                .env("SDP_HELM_TARGET", "cluster")
                .env("SDP_HELM_TIMEOUT", "120")
                .env("FAKE_HELM_DIR", self.fake_helm_dir().display().to_string()),
            Target::StandIn { kubeconfig } => spec
                .env(
                    "SDP_HELM",
                    sdp_testing::fake_helm_path().display().to_string(),
                )
                .env("SDP_HELM_TARGET", "cluster")
                .env("SDP_HELM_TIMEOUT", "120")
                .env("FAKE_HELM_DIR", self.fake_helm_dir().display().to_string())
                .env("KUBECONFIG", kubeconfig.display().to_string()),
            Target::Cluster { kubeconfig } => spec
                .env("SDP_HELM", real_helm()?.display().to_string())
                .env("SDP_HELM_TARGET", "cluster")
                .env("KUBECONFIG", kubeconfig.display().to_string()),
        })
    }

    /// Starts a daemon on a free HTTP port and waits for `/readyz`; retries with
    /// another port if the chosen one was taken meanwhile.
    async fn start_daemon(
        &self,
        name: &str,
        spec: impl Fn(&System) -> Result<Spec>,
    ) -> Result<Proc> {
        let mut attempt = 1;
        loop {
            let port = sdp_testing::free_port();
            let spec = spec(self)?.env("SDP_HTTP_ADDR", format!("127.0.0.1:{port}"));
            let log = self.new_log(name);
            let mut proc = Proc::spawn(&spec, &log)?;
            match wait_ready(&mut proc, port).await {
                Ok(()) => {
                    self.http
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((name.to_string(), port));
                    return Ok(proc);
                }
                Err(e) if attempt < START_ATTEMPTS && port_taken(&log) => {
                    attempt += 1;
                    eprintln!("sdp-e2e: {name}: port {port} was taken, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The HTTP port (on 127.0.0.1) of daemon `name` (`controller`, `deployer`).
    pub fn http_port(&self, name: &str) -> Option<u16> {
        self.http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, port)| *port)
    }

    /// The process ID of daemon `name` (`controller`, `deployer`).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.daemons()
            .iter()
            .find(|p| p.name() == name)
            .map(Proc::pid)
    }

    /// Fails if the controller or the deployer has exited.
    ///
    /// # Errors
    /// A daemon exited.
    pub fn ensure_daemons_running(&self) -> Result<()> {
        self.daemons().iter_mut().try_for_each(Proc::ensure_running)
    }

    /// Stops both daemons with SIGTERM, as an operator would, and requires a clean exit
    /// (status 0) within 60 s.
    ///
    /// # Errors
    /// A daemon that does not stop in time or exits with another status.
    pub async fn shutdown(&self) -> Result<()> {
        let mut daemons = std::mem::take(&mut *self.daemons());
        for proc in &mut daemons {
            proc.signal(Signal::SIGTERM);
        }
        for proc in &mut daemons {
            let status = proc.wait_exit(Duration::from_secs(60)).await?;
            if !status.success() {
                bail!("{} exited with {status} after SIGTERM", proc.name());
            }
        }
        Ok(())
    }

    /// A command running `sdpcfg` against this system's etcd.
    ///
    /// # Errors
    /// The binary cannot be found or built.
    pub fn sdpcfg_spec(&self, args: &[&str]) -> Result<Spec> {
        let mut spec = Spec::new("sdpcfg", binary("sdpcfg")?).envs(self.connection_env());
        for arg in args {
            spec = spec.arg(*arg);
        }
        Ok(spec)
    }

    /// Runs `sdpcfg <args>` and returns its standard output; it must succeed.
    ///
    /// # Errors
    /// A non-zero exit (the error has its stderr).
    pub fn sdpcfg(&self, args: &[&str]) -> Result<String> {
        let (status, out, err) = self.sdpcfg_spec(args)?.output()?;
        if !status.success() {
            bail!("sdpcfg {} failed ({status}): {err}{out}", args.join(" "));
        }
        Ok(out)
    }

    /// Starts a workflow binary (`testdask`, `teststate`…) for `pb_id`, as its pod would
    /// run it, with the system's connection, `SDP_HELM_NAMESPACE` and `extra`.
    ///
    /// # Errors
    /// It cannot be started.
    pub fn workflow(&self, program: &str, pb_id: &str, extra: &[(&str, &str)]) -> Result<Proc> {
        let spec = Spec::new(program, binary(program)?)
            .arg(pb_id)
            .envs(self.connection_env())
            .env("SDP_HELM_NAMESPACE", self.namespace())
            .env("SDP_LOG_LEVEL", "info")
            .envs(extra.iter().copied());
        Proc::spawn(&spec, &self.new_log(&format!("{program}-{pb_id}")))
    }

    /// The raw value of `path`.
    ///
    /// # Errors
    /// etcd fails.
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

    /// Every key of the configuration database (`sdpcfg ls -R /` through the library).
    ///
    /// # Errors
    /// etcd fails.
    pub async fn all_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .db
            .transact(|t| Box::pin(async move { t.list_keys("/", 8).await }))
            .await?)
    }

    /// Waits until `path` has a value for which `accept` holds, and returns it. Fails
    /// early if a daemon dies.
    ///
    /// # Errors
    /// Timeout (the message has the last value seen), or a daemon exited.
    pub async fn wait_value(
        &self,
        path: &str,
        limit: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let what = format!("a matching value of {path}");
        let accept = &accept;
        eventually(limit, &what, move || async move {
            self.ensure_daemons_running()?;
            let value = self.get(path).await?;
            Ok(Outcome::from_option(
                value.clone().filter(|v| accept(v)),
                || format!("{value:?}"),
            ))
        })
        .await
    }

    /// Waits until the JSON value of `path` has `"status": status`.
    ///
    /// # Errors
    /// As [`System::wait_value`].
    pub async fn wait_status(&self, path: &str, status: &str, limit: Duration) -> Result<String> {
        self.wait_value(path, limit, |v| status_of(v).as_deref() == Some(status))
            .await
            .with_context(|| format!("{path} never had status {status}"))
    }

    /// Waits until `path` is absent.
    ///
    /// # Errors
    /// Timeout.
    pub async fn wait_absent(&self, path: &str, limit: Duration) -> Result<()> {
        eventually(
            limit,
            &format!("{path} to be deleted"),
            move || async move {
                self.ensure_daemons_running()?;
                let value = self.get(path).await?;
                Ok(match value {
                    None => Outcome::Done(()),
                    Some(v) => Outcome::NotYet(v),
                })
            },
        )
        .await
    }

    /// `result`, with the end of every process's log and the recorded history added to
    /// an error.
    ///
    /// # Errors
    /// `result`'s error, annotated.
    pub fn report<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| anyhow!("{e:#}\n{}", self.diagnostics()))
    }

    /// The history and the last lines of every log.
    pub fn diagnostics(&self) -> String {
        let mut text = format!(
            "--- history (/pb, /deploy) ---\n{}\n",
            self.history.summary()
        );
        let logs = self
            .logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for log in logs {
            let name = log
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            text.push_str(&format!(
                "--- {name} (last 60 lines) ---\n{}\n",
                log_tail(&log, 60)
            ));
        }
        text
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// The `status` field of a JSON value.
pub fn status_of(value: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(value)
        .ok()?
        .get("status")?
        .as_str()
        .map(String::from)
}

/// The real helm: the project's `.tools/bin/helm` (installed by `scripts/setup.sh`) or
/// `helm` on PATH.
///
/// # Errors
/// Neither exists.
pub fn real_helm() -> Result<PathBuf> {
    let tools = repo_root().join(".tools/bin/helm");
    if tools.is_file() {
        return Ok(tools);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("helm"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("no helm in .tools/bin or on PATH: run scripts/setup.sh"))
}

/// Whether a daemon's log says its HTTP port was in use.
fn port_taken(log: &Path) -> bool {
    let text = log_tail(log, 40).to_lowercase();
    text.contains("address already in use") || text.contains("addrinuse")
}

/// Waits until `GET /readyz` on `port` answers 200 while `proc` keeps running.
async fn wait_ready(proc: &mut Proc, port: u16) -> Result<()> {
    let what = format!("{} to answer /readyz with 200", proc.name());
    let name = proc.name().to_string();
    let proc = &Mutex::new(proc);
    let name = &name;
    eventually(READY_DEADLINE, &what, move || async move {
        let exited = proc
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_status()?;
        if let Some(status) = exited {
            bail!("{name} exited while starting ({status})");
        }
        Ok(match http_get(port, "/readyz").await {
            Ok((200, _)) => Outcome::Done(()),
            Ok((code, body)) => Outcome::NotYet(format!("{code} {}", body.trim())),
            Err(e) => Outcome::NotYet(e.to_string()),
        })
    })
    .await
}

/// `GET path` on 127.0.0.1:`port`: (status, body).
///
/// # Errors
/// Connection failure or a malformed answer.
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow!("GET {path} timed out"))??;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("not an HTTP response: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}
