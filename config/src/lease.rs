//! Leases kept alive in the background, for owner keys and leadership.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::{Broken, Config, Retry};
use crate::error::{Error, Result};

/// Default TTL of owner claims, as in the Python tools.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// A granted lease, refreshed every third of its TTL by a background task.
///
/// Dropping it stops the refreshes without revoking, exactly as if the holder died:
/// keys bound to it vanish when the TTL runs out. [`Lease::revoke`] removes them at once.
pub struct Lease {
    id: i64,
    ttl: Duration,
    lost: watch::Receiver<bool>,
    stop: CancellationToken,
    db: Config,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Config {
    /// Grant a lease of `ttl` (whole seconds, at least 2) and keep it alive.
    ///
    /// # Errors
    /// A request failure.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        let secs = ttl.as_secs().max(2) as i64;
        let resp = self
            .request("lease grant", Retry::Idempotent, |mut c| async move {
                c.client.lease_grant(secs, None).await
            })
            .await?;
        let id = resp.id();
        let ttl = Duration::from_secs(secs as u64);
        let (tx, lost) = watch::channel(false);
        let stop = CancellationToken::new();
        tokio::spawn(keep_alive(self.clone(), id, ttl, tx, stop.clone()));
        Ok(Lease {
            id,
            ttl,
            lost,
            stop,
            db: self.clone(),
        })
    }
}

impl Config {
    /// Whether lease `id` still exists: etcd knows it and its time to live has not run
    /// out. A lease that expired or was revoked never comes back, so `false` is final.
    ///
    /// # Errors
    /// A request failure.
    pub async fn lease_exists(&self, id: i64) -> Result<bool> {
        let answer = self
            .request(
                "lease time-to-live",
                Retry::Idempotent,
                |mut c| async move { c.client.lease_time_to_live(id, None).await },
            )
            .await;
        match answer {
            // etcd answers TTL -1 for a lease it does not know.
            Ok(resp) => Ok(resp.ttl() > 0),
            Err(Error::RequestFailed { source, .. })
                if source.to_string().contains("requested lease not found") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Revoke a lease (an already expired one is not an error).
    pub(crate) async fn revoke_lease(&self, id: i64) -> Result<()> {
        let revoked = self
            .request("lease revoke", Retry::Idempotent, |mut c| async move {
                c.client.lease_revoke(id).await
            })
            .await;
        match revoked {
            // Sent again after a member failure, a revoke that was applied finds no lease.
            Err(Error::RequestFailed {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            }) if s.message().contains("lease not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

impl Lease {
    /// The etcd lease ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// True once the lease is known to have expired.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease is lost (expired, or not refreshed within its TTL).
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|lost| *lost).await;
    }

    /// A receiver that turns `true` when the lease is lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Revoke now: keys bound to the lease are deleted at once.
    ///
    /// # Errors
    /// A request failure (the keys then vanish at the end of the TTL anyway).
    pub async fn revoke(self) -> Result<()> {
        self.stop.cancel();
        self.db.revoke_lease(self.id).await
    }

    /// An error describing the loss, for callers that must stop.
    pub fn lost_error(&self) -> Error {
        Error::LeaseLost {
            id: self.id,
            reason: "not refreshed within its TTL".into(),
        }
    }
}

async fn keep_alive(
    db: Config,
    id: i64,
    ttl: Duration,
    lost: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let period = ttl / 3;
    let mut last_ok = Instant::now();
    type Stream = (
        crate::client::Conn,
        etcd_client::LeaseKeeper,
        etcd_client::LeaseKeepAliveStream,
    );
    let mut stream: Option<Stream> = None;
    loop {
        if last_ok.elapsed() >= ttl {
            tracing::warn!(lease = id, "lease expired: not refreshed within its TTL");
            let _ = lost.send(true);
            return;
        }
        if stream.is_none() {
            // A member that does not answer within a third of the TTL is given up on,
            // so that two more tries (on the next members) fit in before the lease expires.
            stream = match tokio::time::timeout(period, db.conn()).await {
                Ok(Ok(conn)) => {
                    let mut client = conn.client.clone();
                    match tokio::time::timeout(period, client.lease_keep_alive(id)).await {
                        Ok(Ok((keeper, responses))) => Some((conn, keeper, responses)),
                        Ok(Err(e)) => {
                            db.recover(&conn, Broken::Error(&e)).await;
                            None
                        }
                        Err(_) => {
                            db.recover(&conn, Broken::Ended).await;
                            None
                        }
                    }
                }
                _ => None,
            };
        }
        let mut refreshed = false;
        if let Some((conn, keeper, responses)) = stream.as_mut() {
            let exchange = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            match tokio::time::timeout(period, exchange).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => refreshed = true,
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease = id, "lease expired (etcd reports TTL 0)");
                    let _ = lost.send(true);
                    return;
                }
                Ok(Err(e)) => {
                    db.recover(conn, Broken::Error(&e)).await;
                    stream = None;
                }
                Ok(Ok(None)) | Err(_) => {
                    db.recover(conn, Broken::Ended).await;
                    stream = None;
                }
            }
        }
        if refreshed {
            last_ok = Instant::now();
        }
        let wait = if refreshed {
            period
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
