//! The connection handle: connects (with TLS and authentication) to one etcd or to the
//! members of an etcd cluster, names the endpoint in every error, fails over to another
//! member when the one in use stops answering, and hands out transactions, watches,
//! leases and elections.
//!
//! # Several members
//!
//! Each member gets its own gRPC connection, made on first use. Every request goes to
//! one member, the *active* one (the first listed that answers, at first). When a
//! request to it fails with a transport error, "unavailable" (etcd has no leader, the
//! leader changed, the member is stopping) or no answer in time, the active member
//! becomes the next one in the list, for every clone of the handle, and:
//!
//! - reads, lease and election requests are sent again to the new member, with a short
//!   backoff, until they succeed or the request's timeout is used up;
//! - a transaction commit cut off in flight is not simply sent again (it might have
//!   been applied): [`crate::Txn::commit`] reads back what it writes and sends it again
//!   only when that shows it was not applied (see there);
//! - watches and lease keep-alives notice their stream breaking and start again on
//!   the new member, from the next revision not yet delivered.
//!
//! etcd-client could balance one channel over all members, but it then sends each
//! request to any of them and retrying a failed request may land on the dead member
//! again; one connection per member makes "another member" a certainty and lets the
//! commit path know which request may have been applied. TLS is verified against each
//! member's own host name.
//!
//! # Authentication
//!
//! With a user name, each member's client re-authenticates when etcd refuses a token
//! (an expired simple token, `--auth-token-ttl`) and sends the request again; watches,
//! whose refusal comes as a cancellation inside the stream, do the same through
//! [`Config::recover`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, KvClient, TlsOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::path::KeySpace;
use crate::settings::{ConnectionSettings, Protocol};

/// Largest gRPC message accepted from etcd (a listing of many large values).
const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// How long to wait for a member's TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Counters a daemon can export as metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Watches re-established after a disconnect.
    pub watch_reconnects: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transaction attempts that conflicted and were re-run.
    pub conflicts: AtomicU64,
    /// Switches from a failed etcd member to the next one.
    pub failovers: AtomicU64,
    /// New authentication tokens fetched after etcd refused one inside a watch.
    pub reauthentications: AtomicU64,
    /// Commits cut off with their outcome unknown, then read back.
    pub unknown_commits: AtomicU64,
}

/// One member's connection: the etcd client and its KV client (with the large message
/// limit). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) kv: KvClient,
    /// Index of the member in the host list.
    pub(crate) member: usize,
}

struct Member {
    url: String,
    options: ConnectOptions,
    /// Made on first use; kept (tonic reconnects it) once made.
    conn: tokio::sync::Mutex<Option<Conn>>,
}

/// Whether a request may be sent again to another member after an unclear failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, and writes whose repetition is harmless (lease grant, revoke, resign).
    Idempotent,
    /// A commit: sent once; the caller decides what an unknown outcome means.
    Once,
}

/// What a message of a watch stream said, from [`Config::watch_message`].
pub(crate) enum WatchMessage {
    /// Events, a progress notification or the watch's creation.
    Response(etcd_client::WatchResponse),
    /// The start revision is compacted (at this revision): what happened in between is
    /// lost; read the current state instead.
    Compacted(i64),
    /// The stream is gone and was recovered from: resume from the next revision.
    Broken,
}

/// How a watch or keep-alive stream ended, for [`Config::recover`].
pub(crate) enum Broken<'a> {
    /// The stream (or its opening) failed.
    Error(&'a etcd_client::Error),
    /// The member ended the stream.
    Ended,
    /// etcd cancelled the watch, saying why.
    Cancelled(&'a str),
}

struct Inner {
    members: Vec<Member>,
    /// Index of the member requests go to.
    active: AtomicUsize,
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
    /// Connect and check that etcd answers. With several hosts, the first member (in
    /// the order listed) that answers becomes the one requests go to.
    ///
    /// # Errors
    /// [`Error::ConnectFailed`] naming the endpoint when etcd cannot be reached or refuses
    /// the credentials (with several hosts: naming them all when none answers);
    /// [`Error::InvalidSettings`] for an unreadable certificate, host list or prefix.
    pub async fn connect(settings: &ConnectionSettings) -> Result<Self> {
        let keys = KeySpace::new(&settings.prefix)?;
        let hosts = settings.members()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        if hosts.len() > 1 {
            // A member cut off from the others answers "no leader" at once instead of
            // holding requests and watches that can never complete: the cue to fail over.
            options = options.with_require_leader(true);
        }
        let ca = match (&settings.cert, settings.protocol) {
            (Some(cert), Protocol::Https) => Some(std::fs::read(cert).map_err(|e| {
                Error::InvalidSettings(format!(
                    "cannot read SDP_CONFIG_CERT {}: {e}",
                    cert.display()
                ))
            })?),
            _ => None,
        };
        let members = hosts
            .iter()
            .map(|host| {
                let mut options = options.clone();
                if settings.protocol == Protocol::Https {
                    // Each member's certificate is checked against that member's name.
                    let mut tls = TlsOptions::new().domain_name(host.host.clone());
                    if let Some(pem) = &ca {
                        tls = tls.ca_certificate(Certificate::from_pem(pem.clone()));
                    }
                    options = options.with_tls(tls);
                }
                Member {
                    url: host.url(settings.protocol),
                    options,
                    conn: tokio::sync::Mutex::new(None),
                }
            })
            .collect::<Vec<_>>();
        let endpoint = settings.endpoint();
        let config = Config {
            inner: Arc::new(Inner {
                members,
                active: AtomicUsize::new(0),
                keys,
                endpoint,
                timeout: settings.timeout(),
                stats: Stats::default(),
            }),
        };
        // Each member in turn; again while one of them answers that the cluster has no
        // leader (an election after a member died: seconds), until the timeout. When no
        // member answers at all, fail at once.
        let deadline = Instant::now() + config.inner.timeout;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
        let mut last = None;
        loop {
            let mut electing = false;
            for member in 0..config.inner.members.len() {
                config.inner.active.store(member, Ordering::Relaxed);
                match config.probe(member).await {
                    Ok(()) => return Ok(config),
                    Err(e) if config.several() && e.member_failure => {
                        electing |= waits_for_a_leader(&e.error);
                        last = Some(e.error);
                    }
                    Err(e) => return Err(e.error),
                }
            }
            let delay = backoff.next_delay();
            if !electing || Instant::now() + delay >= deadline {
                break;
            }
            tracing::debug!(error = ?last, "etcd has no leader yet: trying its members again");
            tokio::time::sleep(delay).await;
        }
        config.inner.active.store(0, Ordering::Relaxed);
        Err(match last {
            Some(Error::ConnectFailed { source, .. }) => Error::ConnectFailed {
                endpoint: config.inner.endpoint.clone(),
                source,
            },
            Some(other) => other,
            None => Error::InvalidSettings("SDP_CONFIG_HOST names no host".into()),
        })
    }

    /// Connect to one member and read the revision, as [`Config::connect`] reports it.
    async fn probe(&self, member: usize) -> std::result::Result<(), ProbeError> {
        let url = self.member_url(member);
        let timeout = self.inner.timeout;
        match tokio::time::timeout(timeout, self.member_conn(member)).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                return Err(ProbeError {
                    member_failure: is_member_failure(&source),
                    error: Error::ConnectFailed {
                        endpoint: url,
                        source,
                    },
                });
            }
            Err(_) => {
                return Err(ProbeError {
                    member_failure: true,
                    error: timeout_error(&url, timeout, true),
                });
            }
        }
        let mut kv = self
            .member_conn(member)
            .await
            .map_err(|source| ProbeError {
                member_failure: true,
                error: Error::ConnectFailed {
                    endpoint: url.clone(),
                    source,
                },
            })?;
        let read = kv.kv.get("0", Some(GetOptions::new().with_count_only()));
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(ProbeError {
                member_failure: is_member_failure(&source),
                error: Error::ConnectFailed {
                    endpoint: url,
                    source,
                },
            }),
            Err(_) => Err(ProbeError {
                member_failure: true,
                error: timeout_error(&url, timeout, false),
            }),
        }
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

    /// The endpoint, e.g. `http://127.0.0.1:2379`; for a cluster every member's URL,
    /// joined with commas.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The URL of the member requests go to now (the endpoint, with one host).
    pub fn current_endpoint(&self) -> &str {
        &self.inner.members[self.active()].url
    }

    /// Path ↔ key mapping (global prefix included).
    pub fn keys(&self) -> &KeySpace {
        &self.inner.keys
    }

    /// Shared counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    fn several(&self) -> bool {
        self.inner.members.len() > 1
    }

    fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed) % self.inner.members.len()
    }

    fn member_url(&self, member: usize) -> String {
        self.inner.members[member].url.clone()
    }

    /// The connection to `member`, made now if this is its first use.
    async fn member_conn(&self, member: usize) -> std::result::Result<Conn, etcd_client::Error> {
        let m = &self.inner.members[member];
        let mut slot = m.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let client = Client::connect([m.url.as_str()], Some(m.options.clone())).await?;
        let kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let conn = Conn { client, kv, member };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// The active member's connection, for a stream (watch, keep-alive). A member that
    /// cannot be connected to within the request timeout is failed over.
    ///
    /// # Errors
    /// [`Error::RequestFailed`] naming the member.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        let member = self.active();
        match tokio::time::timeout(self.inner.timeout, self.member_conn(member)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => {
                if is_member_failure(&source) {
                    self.fail_over(member, &describe_source(&source));
                }
                Err(Error::RequestFailed {
                    operation: "connect",
                    endpoint: self.member_url(member),
                    source,
                })
            }
            Err(_) => {
                self.fail_over(member, "no connection within the timeout");
                Err(timeout_error(
                    &self.member_url(member),
                    self.inner.timeout,
                    false,
                ))
            }
        }
    }

    /// Make the next member the active one, unless another caller already moved on
    /// from `failed`. Nothing happens with a single host.
    fn fail_over(&self, failed: usize, why: &str) {
        let n = self.inner.members.len();
        if n < 2 {
            return;
        }
        let next = (failed + 1) % n;
        if self
            .inner
            .active
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.inner.stats.failovers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                failed = %self.inner.members[failed].url,
                next = %self.inner.members[next].url,
                reason = why,
                "etcd member not answering: switching to the next one"
            );
        }
    }

    /// After a watch or keep-alive stream on `conn` broke: fetch a new token when etcd
    /// refused the old one, switch to another member when this one failed.
    pub(crate) async fn recover(&self, conn: &Conn, broken: Broken<'_>) {
        let auth = match broken {
            Broken::Cancelled(reason) => is_auth_refusal(reason),
            Broken::Error(etcd_client::Error::GRpcStatus(status)) => {
                status.code() == tonic::Code::Unauthenticated || is_auth_refusal(status.message())
            }
            _ => false,
        };
        if auth {
            self.inner
                .stats
                .reauthentications
                .fetch_add(1, Ordering::Relaxed);
            match conn.client.refresh_token().await {
                Ok(()) => {
                    tracing::info!(endpoint = %self.member_url(conn.member), "etcd refused the authentication token: authenticated again")
                }
                Err(e) => {
                    tracing::warn!(error = %describe_source(&e), "etcd refused the authentication token and authenticating again failed")
                }
            }
            return;
        }
        match broken {
            Broken::Error(e) if is_member_failure(e) => {
                self.fail_over(conn.member, &describe_source(e));
            }
            Broken::Ended => self.fail_over(conn.member, "stream ended"),
            _ => {}
        }
    }

    /// Read one message of a watch stream: a response, a start revision compacted
    /// away, or a stream that ended, failed or was cancelled, recovered from (new token,
    /// next member) so that the caller resumes.
    pub(crate) async fn watch_message(
        &self,
        conn: &Conn,
        msg: std::result::Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
    ) -> WatchMessage {
        match msg {
            // Before `canceled`: etcd cancels a watch whose start revision is compacted,
            // and resuming from that revision would be cancelled again, for ever.
            Ok(Some(resp)) if resp.compact_revision() > 0 => {
                WatchMessage::Compacted(resp.compact_revision())
            }
            Ok(Some(resp)) if resp.canceled() => {
                tracing::warn!(
                    reason = resp.cancel_reason(),
                    "watch cancelled by etcd; resuming"
                );
                self.recover(conn, Broken::Cancelled(resp.cancel_reason()))
                    .await;
                WatchMessage::Broken
            }
            Ok(Some(resp)) => WatchMessage::Response(resp),
            Ok(None) => {
                tracing::debug!("watch stream ended; resuming");
                self.recover(conn, Broken::Ended).await;
                WatchMessage::Broken
            }
            Err(e) => {
                tracing::debug!(error = %e, "watch stream failed; resuming");
                self.recover(conn, Broken::Error(&e)).await;
                WatchMessage::Broken
            }
        }
    }

    pub(crate) fn count_commit(&self) {
        self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_unknown_commit(&self) {
        self.inner
            .stats
            .unknown_commits
            .fetch_add(1, Ordering::Relaxed);
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
    /// member on failure. `call` gets the connection of the member to use; with several
    /// hosts and [`Retry::Idempotent`] it runs again on the next member after a member
    /// failure, until it succeeds or the timeout is used up.
    pub(crate) async fn request<T, F, Fut>(
        &self,
        operation: &'static str,
        retry: Retry,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let timeout = self.inner.timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            let member = self.active();
            let attempt = async {
                let conn = self.member_conn(member).await?;
                call(conn).await
            };
            let source = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(source)) => source,
                Err(_) => {
                    self.fail_over(member, "no answer within the timeout");
                    return Err(Error::RequestFailed {
                        operation,
                        endpoint: self.member_url(member),
                        source: etcd_client::Error::Internal(format!(
                            "no answer within {timeout:?}"
                        )),
                    });
                }
            };
            let failed_member = is_member_failure(&source);
            if failed_member {
                self.fail_over(member, &describe_source(&source));
            }
            let delay = backoff.next_delay();
            if !(failed_member && retry == Retry::Idempotent && self.several())
                || Instant::now() + delay >= deadline
            {
                return Err(Error::RequestFailed {
                    operation,
                    endpoint: self.member_url(member),
                    source,
                });
            }
            tracing::debug!(operation, error = %describe_source(&source), "retrying on another etcd member");
            tokio::time::sleep(delay).await;
        }
    }

    /// etcd's current revision (a cheap linearizable request).
    ///
    /// # Errors
    /// [`Error::RequestFailed`].
    pub async fn current_revision(&self) -> Result<i64> {
        let resp = self
            .request("get", Retry::Idempotent, |mut c| async move {
                c.kv.get("0", Some(GetOptions::new().with_count_only()))
                    .await
            })
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

struct ProbeError {
    /// The member is down or unreachable (another may answer).
    member_failure: bool,
    error: Error,
}

fn describe_source(e: &etcd_client::Error) -> String {
    crate::error::describe(e)
}

/// True when a member answered that its cluster has no leader (or just changed it): the
/// cluster lives and is electing one.
fn waits_for_a_leader(e: &Error) -> bool {
    let (Error::ConnectFailed { source, .. } | Error::RequestFailed { source, .. }) = e else {
        return false;
    };
    matches!(source, etcd_client::Error::GRpcStatus(status)
        if status.code() == tonic::Code::Unavailable && status.message().starts_with("etcdserver:"))
}

/// True when the error says the member (or the connection to it) failed, rather than
/// the request: worth trying another member.
pub(crate) fn is_member_failure(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            // Connection refused or reset, no leader, leader changed, request timed out
            // inside etcd, member stopping.
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => true,
            // A connection cut mid-request surfaces without a gRPC code.
            Code::Unknown => {
                let msg = status.message().to_ascii_lowercase();
                [
                    "transport",
                    "connection",
                    "broken pipe",
                    "h2 protocol",
                    "stream",
                ]
                .iter()
                .any(|w| msg.contains(w))
            }
            _ => false,
        },
        _ => false,
    }
}

/// True for etcd's words for a token it no longer accepts: "invalid auth token", "auth
/// token is expired", and the "permission denied" a watch is cancelled with when its
/// token expired (etcd 3.4).
pub(crate) fn is_auth_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("invalid auth token")
        || m.contains("auth token is expired")
        || m.contains("permission denied")
        || m.contains("user name is empty")
}
