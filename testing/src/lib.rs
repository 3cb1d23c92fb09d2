//! Test harness: a real etcd server for each test.
//!
//! [`EtcdServer::start`] runs the `etcd` binary (Debian's etcd 3.4, installed by
//! `scripts/setup.sh`) on loopback with free ports and a temporary data directory, waits
//! until it is healthy and kills it when dropped, also when the test panics. Options add
//! TLS (a throw-away CA made with the `openssl` CLI) and authentication (set up with
//! `etcdctl`). Everything is synchronous, so it works from plain and `#[tokio::test]`
//! tests alike.
//!
//! ```no_run
//! let etcd = sdp_testing::EtcdServer::start()?;
//! let endpoint = etcd.endpoint(); // "http://127.0.0.1:PORT"
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`EtcdServer::connection`] gives the `sdp-config` connection settings of a server, the
//! one way every test and bench connects. `sdp-config` uses this crate only in its
//! integration tests and benches (never in `#[cfg(test)]` unit tests, which would see a
//! second copy of its types).

mod cluster;
pub mod fixtures;
mod http;
pub mod kube;
mod tls;

pub use cluster::EtcdCluster;
pub use kube::KubeApi;

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

const HOST: &str = "127.0.0.1";
/// How long etcd may take to become healthy after it is launched.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// Port sets tried before giving up: another process may grab a port between
/// [`free_port`] releasing it and etcd binding it.
const START_ATTEMPTS: usize = 5;
const ROOT: &str = "root";
/// Root's password when the test asks for another user: tests never log in as root then.
const INTERNAL_ROOT_PASSWORD: &str = "sdp-testing-root";
/// Role that gives a non-root user read and write access to every key.
const READWRITE_ROLE: &str = "sdp-testing-readwrite";

/// How to run the etcd server. `EtcdOptions::default()` is plain HTTP without auth and
/// etcd's own limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Serve clients over TLS with a certificate for `127.0.0.1` and `localhost`, signed
    /// by a fresh CA whose certificate is [`EtcdServer::ca_cert`].
    pub tls: bool,
    /// Enable authentication with this `(user, password)`. The user gets read and write
    /// access to all keys; when it is not `root`, root exists too with a password the
    /// test does not need.
    pub auth: Option<(String, String)>,
    /// `--max-txn-ops`: the most operations etcd accepts in one transaction (etcd's
    /// default is 128).
    pub max_txn_ops: Option<u32>,
    /// `--quota-backend-bytes`: the database size at which etcd raises the NOSPACE
    /// alarm and refuses writes.
    pub quota_bytes: Option<u64>,
    /// `--auto-compaction-retention` in etcd's default periodic mode, e.g. `"1s"` or
    /// `"5m"`; `"revision:N"` switches to revision mode and keeps the last N revisions.
    pub auto_compaction: Option<String>,
    /// `--auth-token-ttl` in seconds (etcd's default is 300): how long an
    /// authentication token stays valid while unused.
    pub auth_token_ttl: Option<u32>,
}

/// The three loopback ports one etcd listens on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
    metrics: u16,
}

impl Ports {
    /// Three distinct free ports: all are held at once, so the kernel cannot hand out
    /// the same one twice.
    fn pick() -> io::Result<Ports> {
        let listeners = [bind_any()?, bind_any()?, bind_any()?];
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
        Ok(Ports {
            client: port(0)?,
            peer: port(1)?,
            metrics: port(2)?,
        })
    }
}

/// A running etcd server for tests, killed and its data deleted when dropped.
///
/// # Guarantees
///
/// - Every method that starts etcd returns only once etcd reports itself healthy (it
///   has a leader and serves requests), or with an error that carries the end of
///   etcd's log.
/// - Dropping the value kills etcd (SIGKILL), reaps the process and deletes the temporary
///   directory, also while a test panics. A value in a `static` is never dropped, so
///   prefer one server per test.
#[derive(Debug)]
pub struct EtcdServer {
    opts: EtcdOptions,
    ports: Ports,
    /// Holds `data/`, `etcd.log` and the TLS files.
    dir: tempfile::TempDir,
    ca_cert: Option<PathBuf>,
    /// A mutex only so that [`EtcdServer::is_running`] can take `&self` and the server
    /// stays `Sync` (shareable between a test's tasks).
    child: Mutex<Option<Child>>,
    /// Root's credentials once auth is enabled; `etcdctl` calls made by the harness use them.
    root_password: Option<String>,
    /// `--name` and `--initial-cluster` (`None`: a cluster of this member alone).
    name: String,
    initial_cluster: Option<String>,
}

impl EtcdServer {
    /// Starts etcd over plain HTTP on `127.0.0.1` with free ports and a temporary data
    /// directory.
    ///
    /// # Errors
    ///
    /// If `etcd` cannot be run, exits, or is not healthy within 15 seconds; the error
    /// message includes the end of etcd's log.
    pub fn start() -> io::Result<EtcdServer> {
        EtcdServer::start_with(EtcdOptions::default())
    }

    /// Starts etcd with the given options (TLS, auth, limits).
    ///
    /// # Errors
    ///
    /// As [`EtcdServer::start`]; also if `openssl` fails to make the certificates or
    /// `etcdctl` fails to set up authentication.
    pub fn start_with(opts: EtcdOptions) -> io::Result<EtcdServer> {
        let dir = tempfile::Builder::new().prefix("sdp-etcd-").tempdir()?;
        let ca_cert = if opts.tls {
            Some(tls::make_certificates(dir.path())?)
        } else {
            None
        };
        let mut server = EtcdServer {
            opts,
            ports: Ports::pick()?,
            dir,
            ca_cert,
            child: Mutex::new(None),
            root_password: None,
            name: "t".into(),
            initial_cluster: None,
        };
        let mut attempt = 1;
        let child = loop {
            match server.launch() {
                Ok(child) => break child,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < START_ATTEMPTS => {
                    attempt += 1;
                    server.ports = Ports::pick()?;
                    // The failed member may have recorded its peer URL; start afresh.
                    remove_dir_if_exists(&server.data_dir())?;
                }
                Err(e) => return Err(e),
            }
        };
        *server
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Some(child);
        if let Some((user, password)) = server.opts.auth.clone() {
            server.enable_auth(&user, &password)?;
        }
        Ok(server)
    }

    /// The host etcd listens on: `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.ports.client
    }

    /// `"http://127.0.0.1:PORT"`, or `"https://127.0.0.1:PORT"` with TLS.
    pub fn endpoint(&self) -> String {
        format!("{}://{HOST}:{}", self.protocol(), self.ports.client)
    }

    /// `"http"` or `"https"`.
    pub fn protocol(&self) -> &str {
        if self.opts.tls { "https" } else { "http" }
    }

    /// The PEM file of the CA that signed the server certificate, with TLS.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The `SDP_CONFIG_*` variables that point a child process at this server:
    /// `HOST`, `PORT` and `PROTOCOL` always, `CERT` with TLS, `USERNAME` and `PASSWORD`
    /// with auth.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("SDP_CONFIG_HOST".to_owned(), HOST.to_owned()),
            ("SDP_CONFIG_PORT".to_owned(), self.ports.client.to_string()),
            ("SDP_CONFIG_PROTOCOL".to_owned(), self.protocol().to_owned()),
        ];
        if let Some(ca) = &self.ca_cert {
            env.push(("SDP_CONFIG_CERT".to_owned(), ca.display().to_string()));
        }
        if let Some((user, password)) = &self.opts.auth {
            env.push(("SDP_CONFIG_USERNAME".to_owned(), user.clone()));
            env.push(("SDP_CONFIG_PASSWORD".to_owned(), password.clone()));
        }
        env
    }

    /// The connection settings of this server: endpoint, and the CA certificate and
    /// credentials when TLS or auth is on; `sdp-config`'s defaults for the rest.
    pub fn connection(&self) -> sdp_config::ConnectionSettings {
        let (username, password) = match &self.opts.auth {
            Some((user, password)) => (Some(user.clone()), Some(password.clone())),
            None => (None, None),
        };
        sdp_config::ConnectionSettings {
            host: HOST.to_owned(),
            port: self.ports.client,
            protocol: if self.opts.tls {
                sdp_config::Protocol::Https
            } else {
                sdp_config::Protocol::Http
            },
            cert: self.ca_cert.clone(),
            username,
            password,
            ..Default::default()
        }
    }

    /// Kills etcd with SIGKILL, as a crash would, and waits for it to exit. The data
    /// directory is kept for [`EtcdServer::restart`]. Does nothing if etcd is not running.
    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut child) = child.take() {
            // Fails only if the process has already been reaped, which is fine.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports with the same data directory (killing it
    /// first if it runs) and waits until it is healthy. Keys, users and the revision
    /// survive.
    ///
    /// # Errors
    ///
    /// As [`EtcdServer::start`], or if another process took one of the ports meanwhile.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let mut attempt = 1;
        let child = loop {
            match self.launch() {
                Ok(child) => break child,
                // A port may still be held by a connection of the killed process; wait.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < START_ATTEMPTS => {
                    attempt += 1;
                    sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        };
        *self.child.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(child);
        Ok(())
    }

    /// Replaces the database with an empty one on the same ports, as an etcd pod on an
    /// `emptyDir` comes back after a reschedule: kills etcd, deletes its data directory
    /// and starts it again. Users and authentication are set up again when enabled.
    ///
    /// # Errors
    ///
    /// As [`EtcdServer::restart`].
    pub fn wipe(&mut self) -> io::Result<()> {
        self.kill();
        remove_dir_if_exists(&self.data_dir())?;
        self.restart()?;
        if let Some((user, password)) = self.opts.auth.clone() {
            self.root_password = None;
            self.enable_auth(&user, &password)?;
        }
        Ok(())
    }

    /// The etcd process's ID while it runs (to freeze it with SIGSTOP in a test).
    pub fn pid(&self) -> Option<u32> {
        let child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.as_ref().map(Child::id)
    }

    /// Whether the etcd process is alive (it may still be starting or unhealthy).
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// etcd's Prometheus metrics as text, from its separate plain-HTTP metrics port
    /// (so this works with TLS and auth too).
    ///
    /// # Errors
    ///
    /// If etcd does not answer with status 200.
    pub fn metrics(&self) -> io::Result<String> {
        let (status, body) = http::get(self.ports.metrics, "/metrics")?;
        if status != 200 {
            return Err(io::Error::other(format!(
                "GET /metrics answered {status}: {body}"
            )));
        }
        Ok(body)
    }

    /// How many gRPC calls of `method` (`"Txn"`, `"Range"`, `"Put"`, `"Watch"`…) etcd
    /// has finished, whatever their outcome: the sum of `grpc_server_handled_total`
    /// over all its series with `grpc_method="<method>"`.
    ///
    /// # Errors
    ///
    /// If the metrics cannot be read, or etcd has no such method (a typo in a test
    /// would otherwise read as zero calls).
    pub fn grpc_requests(&self, method: &str) -> io::Result<u64> {
        http::sum_counter(
            &self.metrics()?,
            "grpc_server_handled_total",
            "grpc_method",
            method,
        )
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("etcd has no gRPC method {method:?} in grpc_server_handled_total"),
            )
        })
    }

    /// Compacts etcd's history up to the current revision, so that reading or watching
    /// from an older revision fails with "required revision has been compacted".
    /// Compacting again without writes in between is not an error.
    ///
    /// # Errors
    ///
    /// If `etcdctl` fails or its status output cannot be read.
    pub fn compact(&self) -> io::Result<()> {
        let status = self.etcdctl(["endpoint", "status", "--write-out=json"])?;
        let revision = serde_json::from_str::<serde_json::Value>(&status)
            .ok()
            .and_then(|v| v[0]["Status"]["header"]["revision"].as_i64())
            .ok_or_else(|| {
                io::Error::other(format!("no revision in etcdctl endpoint status: {status}"))
            })?;
        match self.etcdctl(["compact", &revision.to_string()]) {
            Err(e)
                if e.to_string()
                    .contains("required revision has been compacted") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Runs etcd and waits until it is healthy. Fails with `AddrInUse` if etcd could not
    /// bind one of its ports.
    fn launch(&self) -> io::Result<Child> {
        let (mut child, log_start) = self.spawn()?;
        match self.wait_healthy(&mut child) {
            Ok(()) => Ok(child),
            Err(e) => Err(self.failed_start(&mut child, log_start, e)),
        }
    }

    /// Kills a member that did not become healthy and says why, with the end of its log;
    /// `AddrInUse` when it could not bind a port.
    fn failed_start(&self, child: &mut Child, log_start: u64, e: io::Error) -> io::Error {
        let _ = child.kill();
        let _ = child.wait();
        let log = self.log_tail(log_start);
        let kind = if log.contains("address already in use") {
            io::ErrorKind::AddrInUse
        } else {
            e.kind()
        };
        io::Error::new(kind, format!("{e}; etcd's log ends:\n{log}"))
    }

    fn peer_url(&self) -> String {
        format!("http://{HOST}:{}", self.ports.peer)
    }

    /// Runs etcd without waiting for it; returns the process and where this launch's
    /// lines start in the log.
    fn spawn(&self) -> io::Result<(Child, u64)> {
        let url = |port: u16| format!("http://{HOST}:{port}");
        let client_url = self.endpoint();
        let peer_url = self.peer_url();
        let initial_cluster = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={peer_url}", self.name));
        let mut cmd = Command::new("etcd");
        cmd.arg(format!("--name={}", self.name))
            .arg(flag("data-dir", self.data_dir().as_os_str()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--listen-metrics-urls={}", url(self.ports.metrics)))
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=error"]);
        if self.initial_cluster.is_some() {
            // Members on one loaded machine: a leader is declared lost after 1 s of
            // silence (etcd's default), new elections then take about as long.
            cmd.args(["--heartbeat-interval=100", "--election-timeout=1000"]);
        } else {
            // A lone member has no peer to lose contact with, so a short election
            // timeout only makes it elect itself sooner: 0.1 s instead of 1 s per start.
            cmd.args(["--heartbeat-interval=10", "--election-timeout=100"]);
        }
        if let Some(ttl) = self.opts.auth_token_ttl {
            cmd.arg(format!("--auth-token-ttl={ttl}"));
        }
        if self.opts.tls {
            cmd.arg(flag(
                "cert-file",
                self.dir.path().join(tls::SERVER_CERT).as_os_str(),
            ))
            .arg(flag(
                "key-file",
                self.dir.path().join(tls::SERVER_KEY).as_os_str(),
            ));
        }
        if let Some(n) = self.opts.max_txn_ops {
            cmd.arg(format!("--max-txn-ops={n}"));
        }
        if let Some(n) = self.opts.quota_bytes {
            cmd.arg(format!("--quota-backend-bytes={n}"));
        }
        if let Some(retention) = &self.opts.auto_compaction {
            let (mode, retention) = match retention.split_once(':') {
                Some((mode, retention)) => (mode, retention),
                None => ("periodic", retention.as_str()),
            };
            cmd.arg(format!("--auto-compaction-mode={mode}"))
                .arg(format!("--auto-compaction-retention={retention}"));
        }
        // etcd reads ETCD_* variables as flags and refuses to start when one repeats a flag.
        remove_env_prefixed(&mut cmd, "ETCD_");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        // Earlier launches wrote to the same log; judge this one by its own lines.
        let log_start = log.metadata()?.len();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run etcd ({e}); scripts/setup.sh installs it"),
            )
        })?;
        Ok((child, log_start))
    }

    fn wait_healthy(&self, child: &mut Child) -> io::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!("etcd exited with {status}")));
            }
            // /health answers 503 until there is a leader; connection errors until it listens.
            if let Ok((200, body)) = http::get(self.ports.metrics, "/health")
                && body.contains(r#""health":"true""#)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("etcd not healthy after {START_DEADLINE:?}"),
                ));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// The last lines etcd logged after byte `start` of its log.
    fn log_tail(&self, start: u64) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(log.get(start as usize..).unwrap_or_default());
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Creates root (and the requested user with read-write access to every key), then
    /// enables authentication.
    fn enable_auth(&mut self, user: &str, password: &str) -> io::Result<()> {
        let root_password = if user == ROOT {
            password
        } else {
            INTERNAL_ROOT_PASSWORD
        };
        let new_password = |p: &str| format!("--new-user-password={p}");
        self.etcdctl(["user", "add", ROOT, &new_password(root_password)])?;
        self.etcdctl(["role", "add", ROOT])?;
        self.etcdctl(["user", "grant-role", ROOT, ROOT])?;
        if user != ROOT {
            self.etcdctl(["role", "add", READWRITE_ROLE])?;
            // From the empty key to the end of the key space: every key.
            self.etcdctl([
                "role",
                "grant-permission",
                "--from-key",
                READWRITE_ROLE,
                "readwrite",
                "",
            ])?;
            self.etcdctl(["user", "add", user, &new_password(password)])?;
            self.etcdctl(["user", "grant-role", user, READWRITE_ROLE])?;
        }
        self.etcdctl(["auth", "enable"])?;
        self.root_password = Some(root_password.to_owned());
        Ok(())
    }

    /// Runs `etcdctl` (API v3) against this server, as root once auth is enabled, and
    /// returns its standard output.
    fn etcdctl<'a>(&self, args: impl IntoIterator<Item = &'a str>) -> io::Result<String> {
        let args: Vec<&str> = args.into_iter().collect();
        let mut cmd = Command::new("etcdctl");
        remove_env_prefixed(&mut cmd, "ETCDCTL_");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=10s");
        if let Some(ca) = &self.ca_cert {
            cmd.arg(flag("cacert", ca.as_os_str()));
        }
        if let Some(password) = &self.root_password {
            cmd.arg(format!("--user={ROOT}"))
                .arg(format!("--password={password}"));
        }
        let out = cmd.args(&args).stdin(Stdio::null()).output().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run etcdctl ({e}); scripts/setup.sh installs it"),
            )
        })?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // The temporary directory is removed after this, when the fields drop.
        self.kill();
    }
}

/// A port on `127.0.0.1` that nothing listens on right now (the kernel's pick; it is
/// free again when this returns, so another process may take it before you bind it).
///
/// # Panics
///
/// If no loopback port can be bound at all, which leaves no test able to run.
pub fn free_port() -> u16 {
    #[allow(clippy::expect_used)] // documented: nothing works without loopback ports
    bind_any()
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a port on 127.0.0.1")
}

/// Path of the stand-in `helm` (the `fake-helm` binary of this crate, see
/// `src/bin/fake-helm.rs` and its modules) in the target directory of the running test executable
/// (`target/<profile>/fake-helm`), building it with
/// `cargo build -p sdp-testing --bin fake-helm` first if it is missing or older than its
/// source. Tests put it on PATH or pass it as the deployer's helm binary, with
/// `FAKE_HELM_DIR` set to a directory of their own.
///
/// # Panics
///
/// If the binary cannot be built: no test that needs it could run.
pub fn fake_helm_path() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    // target/<profile>/deps/<test>-<hash> (tests) or target/<profile>/<bin> (binaries).
    let exe = std::env::current_exe().unwrap_or_default();
    let mut profile_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let path = profile_dir.join("fake-helm");
    let bin_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    // The newest of src/bin/fake-helm.rs and its modules in src/bin/fake-helm/.
    let sources = fs::read_dir(bin_dir.join("fake-helm"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([bin_dir.join("fake-helm.rs")]);
    let source = sources.filter_map(|p| modified(&p)).max();
    let stale = match (modified(&path), source) {
        (Some(bin), Some(src)) => bin < src,
        (None, _) => true,
        (Some(_), None) => false,
    };
    if stale {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "sdp-testing", "--bin", "fake-helm"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status();
        #[allow(clippy::panic)] // documented: the tests that call this cannot run without it
        if !status.as_ref().is_ok_and(|s| s.success()) || !path.exists() {
            panic!("cannot build fake-helm at {} ({status:?})", path.display());
        }
    }
    *built = Some(path.clone());
    path
}

fn bind_any() -> io::Result<TcpListener> {
    TcpListener::bind((HOST, 0))
}

/// `--name=value` with a path value that need not be UTF-8.
fn flag(name: &str, value: &OsStr) -> std::ffi::OsString {
    let mut arg = std::ffi::OsString::from(format!("--{name}="));
    arg.push(value);
    arg
}

fn remove_env_prefixed(cmd: &mut Command, prefix: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(key);
        }
    }
}

fn remove_dir_if_exists(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_reported_as_addr_in_use_so_start_retries() -> io::Result<()> {
        let taken = bind_any()?;
        let mut ports = Ports::pick()?;
        ports.client = taken.local_addr()?.port();
        let server = EtcdServer {
            opts: EtcdOptions::default(),
            ports,
            dir: tempfile::tempdir()?,
            ca_cert: None,
            child: Mutex::new(None),
            root_password: None,
            name: "t".into(),
            initial_cluster: None,
        };
        let err = server
            .launch()
            .err()
            .ok_or_else(|| io::Error::other("etcd started"))?;
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("etcd's log ends"), "{err}");
        Ok(())
    }
}
