//! The connection handle: connects (with TLS and authentication), names the endpoint in
//! every error, and hands out transactions, watches, leases and elections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, KvClient, TlsOptions};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::path::KeySpace;
use crate::settings::{ConnectionSettings, Protocol};

/// Largest gRPC message accepted from etcd (a listing of many large values).
const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// Counters a daemon can export as metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Watches re-established after a disconnect.
    pub watch_reconnects: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transaction attempts that conflicted and were re-run.
    pub conflicts: AtomicU64,
}

struct Inner {
    client: Client,
    kv: KvClient,
    keys: KeySpace,
    endpoint: String,
    timeout: Duration,
    stats: Stats,
}

/// A handle on the configuration database. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct Config {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.inner.endpoint)
            .field("prefix", &self.inner.keys.prefix())
            .finish()
    }
}

impl Config {
    /// Connect and check that etcd answers.
    ///
    /// # Errors
    /// [`Error::ConnectFailed`] naming the endpoint when etcd cannot be reached or refuses
    /// the credentials; [`Error::InvalidSettings`] for an unreadable certificate or prefix.
    pub async fn connect(settings: &ConnectionSettings) -> Result<Self> {
        let endpoint = settings.endpoint();
        let keys = KeySpace::new(&settings.prefix)?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if settings.protocol == Protocol::Https {
            let mut tls = TlsOptions::new().domain_name(settings.host.clone());
            if let Some(cert) = &settings.cert {
                let pem = std::fs::read(cert).map_err(|e| {
                    Error::InvalidSettings(format!(
                        "cannot read SDP_CONFIG_CERT {}: {e}",
                        cert.display()
                    ))
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            options = options.with_tls(tls);
        }
        let timeout = settings.timeout();
        let connect = Client::connect([endpoint.as_str()], Some(options));
        let client = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(source)) => return Err(Error::ConnectFailed { endpoint, source }),
            Err(_) => return Err(timeout_error(&endpoint, timeout, true)),
        };
        let kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let config = Config {
            inner: Arc::new(Inner {
                client,
                kv,
                keys,
                endpoint,
                timeout,
                stats: Stats::default(),
            }),
        };
        config.current_revision().await.map_err(|e| match e {
            Error::RequestFailed {
                endpoint, source, ..
            } => Error::ConnectFailed { endpoint, source },
            other => other,
        })?;
        Ok(config)
    }

    /// Connect, retrying with exponential backoff (100 ms to 5 s) until etcd answers or
    /// `cancel` fires. For daemons that must outlive etcd restarts.
    ///
    /// # Errors
    /// [`Error::Cancelled`], or a settings error that retrying cannot fix.
    pub async fn connect_retrying(
        settings: &ConnectionSettings,
        cancel: &CancellationToken,
    ) -> Result<Self> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match Config::connect(settings).await {
                Ok(c) => return Ok(c),
                Err(e @ Error::InvalidSettings(_)) | Err(e @ Error::InvalidPath { .. }) => {
                    return Err(e);
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "configuration database not reachable");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(Error::Cancelled),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// The endpoint, e.g. `http://127.0.0.1:2379`.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Path ↔ key mapping (global prefix included).
    pub fn keys(&self) -> &KeySpace {
        &self.inner.keys
    }

    /// Shared counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub(crate) fn client(&self) -> Client {
        self.inner.client.clone()
    }

    pub(crate) fn kv(&self) -> KvClient {
        self.inner.kv.clone()
    }

    #[allow(dead_code)]
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) fn count_commit(&self) {
        self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_conflict(&self) {
        self.inner.stats.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_watch_reconnect(&self) {
        self.inner
            .stats
            .watch_reconnects
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Run one unary request with the configured timeout, naming the operation and the
    /// endpoint on failure.
    pub(crate) async fn request<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(Error::RequestFailed {
                operation,
                endpoint: self.inner.endpoint.clone(),
                source,
            }),
            Err(_) => Err(Error::RequestFailed {
                operation,
                endpoint: self.inner.endpoint.clone(),
                source: etcd_client::Error::Internal(format!(
                    "no answer within {:?}",
                    self.inner.timeout
                )),
            }),
        }
    }

    /// etcd's current revision (a cheap linearizable request).
    ///
    /// # Errors
    /// [`Error::RequestFailed`].
    pub async fn current_revision(&self) -> Result<i64> {
        let mut kv = self.kv();
        let resp = self
            .request(
                "get",
                kv.get("0", Some(GetOptions::new().with_count_only())),
            )
            .await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }
}

fn timeout_error(endpoint: &str, timeout: Duration, connect: bool) -> Error {
    let source = etcd_client::Error::Internal(format!("no answer within {timeout:?}"));
    if connect {
        Error::ConnectFailed {
            endpoint: endpoint.to_string(),
            source,
        }
    } else {
        Error::RequestFailed {
            operation: "request",
            endpoint: endpoint.to_string(),
            source,
        }
    }
}
