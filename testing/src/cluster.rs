//! A real etcd cluster of several members on loopback, for failover tests.
//!
//! Each member is an [`EtcdServer`] of its own (free ports, own data directory and log),
//! started together with one `--initial-cluster`. Members can be killed and restarted
//! one at a time; [`EtcdCluster::leader`] says which one leads.
//!
//! ```no_run
//! let mut cluster = sdp_testing::EtcdCluster::start(3)?;
//! let hosts = cluster.hosts(); // "127.0.0.1:P0,127.0.0.1:P1,127.0.0.1:P2"
//! let leader = cluster.leader()?;
//! cluster.kill(leader);
//! cluster.restart(leader)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::sync::Mutex;

use crate::{EtcdOptions, EtcdServer, HOST, Ports, START_ATTEMPTS};

/// A running etcd cluster, every member killed and its data deleted when dropped.
///
/// # Guarantees
///
/// - [`EtcdCluster::start`] returns once every member reports itself healthy (the
///   cluster has a leader).
/// - Killing a member is SIGKILL, as a crash; its data directory is kept for
///   [`EtcdCluster::restart`].
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts `size` members over plain HTTP without authentication.
    ///
    /// # Errors
    ///
    /// If a member cannot be run or the cluster is not healthy within 15 seconds (the
    /// message has the end of that member's log).
    pub fn start(size: usize) -> io::Result<EtcdCluster> {
        EtcdCluster::start_with(size, EtcdOptions::default())
    }

    /// Starts `size` members with the given options (authentication and limits; TLS is
    /// not supported for clusters).
    ///
    /// # Errors
    ///
    /// As [`EtcdCluster::start`]; also with `opts.tls`, or when authentication cannot be
    /// set up.
    pub fn start_with(size: usize, opts: EtcdOptions) -> io::Result<EtcdCluster> {
        if opts.tls {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "EtcdCluster does not serve TLS",
            ));
        }
        let mut attempt = 1;
        loop {
            match EtcdCluster::launch(size, &opts) {
                Ok(cluster) => return Ok(cluster),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < START_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn launch(size: usize, opts: &EtcdOptions) -> io::Result<EtcdCluster> {
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            members.push(EtcdServer {
                opts: opts.clone(),
                ports: Ports::pick()?,
                dir: tempfile::Builder::new().prefix("sdp-etcd-").tempdir()?,
                ca_cert: None,
                child: Mutex::new(None),
                root_password: None,
                name: format!("m{i}"),
                initial_cluster: None,
            });
        }
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = Some(initial.clone());
        }
        // All members must run before any can be healthy: a leader needs a quorum.
        let mut spawned = Vec::with_capacity(size);
        for m in &members {
            spawned.push(m.spawn()?);
        }
        let mut failure = None;
        for (m, (mut child, log_start)) in members.iter().zip(spawned) {
            if failure.is_none()
                && let Err(e) = m.wait_healthy(&mut child)
            {
                failure = Some(m.failed_start(&mut child, log_start, e));
            }
            *m.child
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(child);
        }
        let mut cluster = EtcdCluster { members };
        if let Some(e) = failure {
            return Err(e); // dropping the cluster kills the members that did start
        }
        if let Some((user, password)) = opts.auth.clone() {
            cluster.members[0].enable_auth(&user, &password)?;
            let root = cluster.members[0].root_password.clone();
            for m in &mut cluster.members[1..] {
                m.root_password.clone_from(&root);
            }
        }
        Ok(cluster)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True for a cluster of no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i` (its endpoint, port, metrics, pid…).
    ///
    /// # Panics
    ///
    /// If `i` is not a member's index.
    pub fn member(&self, i: usize) -> &EtcdServer {
        &self.members[i]
    }

    /// `"127.0.0.1:P0,127.0.0.1:P1,…"`: the value of `SDP_CONFIG_HOST` for this cluster.
    pub fn hosts(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{HOST}:{}", m.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// The connection settings listing every member (credentials with auth).
    pub fn connection(&self) -> sdp_config::ConnectionSettings {
        sdp_config::ConnectionSettings {
            host: self.hosts(),
            ..self.members[0].connection()
        }
    }

    /// The `SDP_CONFIG_*` variables that point a child process at the whole cluster.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.members[0].env();
        for (name, value) in &mut env {
            if name == "SDP_CONFIG_HOST" {
                *value = self.hosts();
            }
        }
        env
    }

    /// Kills member `i` with SIGKILL. Does nothing if it is not running.
    ///
    /// # Panics
    ///
    /// If `i` is not a member's index.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again with its data and waits until it is healthy (it rejoins
    /// the cluster).
    ///
    /// # Errors
    ///
    /// As [`EtcdServer::restart`].
    ///
    /// # Panics
    ///
    /// If `i` is not a member's index.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.members[i].restart()
    }

    /// Index of the member that leads the cluster now, as the running members report it.
    ///
    /// # Errors
    ///
    /// If no running member answers or names a leader among the members.
    pub fn leader(&self) -> io::Result<usize> {
        let mut ids = Vec::with_capacity(self.members.len());
        let mut leader = None;
        for m in &self.members {
            let status = if m.is_running() {
                m.etcdctl(["endpoint", "status", "--write-out=json"]).ok()
            } else {
                None
            };
            let status = status
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .map(|v| v[0]["Status"].clone());
            ids.push(
                status
                    .as_ref()
                    .and_then(|s| s["header"]["member_id"].as_u64()),
            );
            if let Some(l) = status.as_ref().and_then(|s| s["leader"].as_u64())
                && l != 0
            {
                leader = Some(l);
            }
        }
        leader
            .and_then(|l| ids.iter().position(|id| *id == Some(l)))
            .ok_or_else(|| io::Error::other(format!("no member names a leader ({ids:?})")))
    }
}
