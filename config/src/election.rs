//! Leader election for daemons with several replicas, on etcd's election service.
//!
//! A candidate campaigns with a lease; the oldest live candidate leads. Leadership is
//! lost when the lease is lost or the leader key disappears. Writes can be made
//! conditional on leadership with [`Leadership::guard`] and [`crate::Txn::require`], so
//! a deposed leader that has not noticed yet cannot write.

use std::time::Duration;

use etcd_client::{EventType, LeaderKey, ResignOptions, WatchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::client::{Broken, Config, Retry, WatchMessage};
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::txn::Guard;

/// An election among replicas of one daemon.
#[derive(Clone, Debug)]
pub struct Election {
    db: Config,
    name: String,
    raw_name: Vec<u8>,
}

/// Held leadership. Dropping it stops refreshing its lease (another candidate takes
/// over within the TTL); [`Leadership::resign`] hands over at once.
pub struct Leadership {
    election: Election,
    lease: Lease,
    leader: LeaderKey,
    lost: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Config {
    /// The election called `name` (e.g. `processing-controller`), under the global prefix.
    /// Its keys are not configuration paths, so `sdpcfg ls` never shows them.
    pub fn election(&self, name: &str) -> Election {
        let raw_name = format!("election{}/{}", self.keys().prefix(), name).into_bytes();
        Election {
            db: self.clone(),
            name: name.to_string(),
            raw_name,
        }
    }
}

impl Election {
    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Campaign until elected (or `cancel` fires), proclaiming `value` (e.g. the host
    /// name). Survives etcd restarts by campaigning again with a new lease.
    ///
    /// # Errors
    /// [`Error::Cancelled`].
    pub async fn campaign(
        &self,
        value: &str,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Result<Leadership> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(3));
        loop {
            match self.try_campaign(value, ttl, cancel).await {
                Ok(l) => return Ok(l),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e) => {
                    tracing::warn!(election = %self.name, error = %e, "campaign failed, retrying")
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled),
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn try_campaign(
        &self,
        value: &str,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Result<Leadership> {
        let lease = self.db.grant_lease(ttl).await?;
        let conn = match self.db.conn().await {
            Ok(conn) => conn,
            Err(e) => {
                let _ = lease.revoke().await;
                return Err(e);
            }
        };
        let mut client = conn.client.clone();
        // Campaigning waits (without a timeout) until this candidate leads. If the member
        // fails meanwhile, the lease is revoked (its candidate key with it) and the next
        // try campaigns on another member.
        let outcome = tokio::select! {
            () = cancel.cancelled() => None,
            () = lease.lost() => Some(Err(Error::LeaseLost { id: lease.id(), reason: "expired while campaigning".into() })),
            r = client.campaign(self.raw_name.clone(), value.as_bytes().to_vec(), lease.id()) => Some(match r {
                Ok(resp) => Ok(resp),
                Err(source) => {
                    self.db.recover(&conn, Broken::Error(&source)).await;
                    Err(Error::RequestFailed {
                        operation: "campaign",
                        endpoint: self.db.current_endpoint().to_string(),
                        source,
                    })
                }
            }),
        };
        let resp = match outcome {
            None => {
                let _ = lease.revoke().await;
                return Err(Error::Cancelled);
            }
            Some(Err(e)) => {
                let _ = lease.revoke().await;
                return Err(e);
            }
            Some(Ok(resp)) => resp,
        };
        let Some(leader) = resp.leader().cloned() else {
            let id = lease.id();
            let _ = lease.revoke().await;
            return Err(Error::LeaseLost {
                id,
                reason: "campaign returned no leader key".into(),
            });
        };
        let (tx, lost) = watch::channel(false);
        let stop = CancellationToken::new();
        tokio::spawn(watch_leadership(
            self.db.clone(),
            leader.key().to_vec(),
            leader.rev(),
            lease.subscribe(),
            tx,
            stop.clone(),
        ));
        tracing::info!(election = %self.name, "became leader");
        Ok(Leadership {
            election: self.clone(),
            lease,
            leader,
            lost,
            stop,
        })
    }

    /// The current leader's proclaimed value, if there is a leader.
    ///
    /// # Errors
    /// A request failure other than "no leader".
    pub async fn leader(&self) -> Result<Option<String>> {
        match self
            .db
            .request("leader", Retry::Idempotent, |mut c| {
                let name = self.raw_name.clone();
                async move { c.client.leader(name).await }
            })
            .await
        {
            Ok(resp) => Ok(resp
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            Err(Error::RequestFailed {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            }) if s.message().contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follow leadership changes: the receiver holds the current leader's value
    /// (`None` while there is none) and changes as leaders come and go.
    ///
    /// etcd's own Observe stream never reports "no leader", so this watches the
    /// election's candidate keys instead and asks for the leader after every change.
    pub fn observe(&self) -> watch::Receiver<Option<String>> {
        let (tx, rx) = watch::channel(None);
        let election = self.clone();
        tokio::spawn(async move {
            let mut prefix = election.raw_name.clone();
            prefix.push(b'/');
            let end = crate::path::prefix_end(&prefix);
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(3));
            while !tx.is_closed() {
                // Read the leader, then watch for any candidate change after that read.
                let from = match election.db.current_revision().await {
                    Ok(rev) => rev + 1,
                    Err(_) => {
                        tokio::select! {
                            () = tx.closed() => return,
                            () = tokio::time::sleep(backoff.next_delay()) => continue,
                        }
                    }
                };
                let publish = |value: Option<String>| {
                    tx.send_if_modified(|cur| {
                        let changed = *cur != value;
                        *cur = value;
                        changed
                    });
                };
                if let Ok(value) = election.leader().await {
                    publish(value);
                }
                let opts = WatchOptions::new()
                    .with_range(end.clone())
                    .with_start_revision(from);
                if let Ok(conn) = election.db.conn().await {
                    let mut client = conn.client.clone();
                    match client.watch(prefix.clone(), Some(opts)).await {
                        Err(e) => election.db.recover(&conn, Broken::Error(&e)).await,
                        Ok(mut stream) => {
                            backoff.reset();
                            loop {
                                let m = tokio::select! {
                                    () = tx.closed() => return,
                                    m = stream.message() => m,
                                };
                                match election.db.watch_message(&conn, m).await {
                                    WatchMessage::Response(resp) => {
                                        if !resp.events().is_empty()
                                            && let Ok(value) = election.leader().await
                                        {
                                            publish(value);
                                        }
                                    }
                                    // Read the leader again and watch from then.
                                    WatchMessage::Compacted(_) | WatchMessage::Broken => break,
                                }
                            }
                        }
                    }
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        });
        rx
    }
}

impl Leadership {
    /// A condition for [`crate::Txn::require`]: the commit fails with
    /// [`Error::NotLeader`] once this leadership is gone.
    pub fn guard(&self) -> Guard {
        Guard {
            key: self.leader.key().to_vec(),
            create_revision: self.leader.rev(),
            election: self.election.name.clone(),
        }
    }

    /// True once leadership is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when leadership is lost.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// The lease backing this leadership.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Give up leadership at once.
    ///
    /// # Errors
    /// A request failure (leadership then ends with the lease TTL).
    pub async fn resign(self) -> Result<()> {
        self.stop.cancel();
        let opts = ResignOptions::new().with_leader(self.leader.clone());
        let result = self
            .election
            .db
            .request("resign", Retry::Idempotent, |mut c| {
                let opts = opts.clone();
                async move { c.client.resign(Some(opts)).await }
            })
            .await
            .map(|_| ());
        let _ = self.election.db.revoke_lease(self.lease.id()).await;
        result
    }
}

async fn watch_leadership(
    db: Config,
    key: Vec<u8>,
    rev: i64,
    mut lease_lost: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut from = rev + 1;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let opts = WatchOptions::new().with_start_revision(from);
        let conn = tokio::select! {
            () = stop.cancelled() => return,
            c = db.conn() => c,
        };
        if let Ok(conn) = conn {
            let mut client = conn.client.clone();
            let stream = tokio::select! {
                () = stop.cancelled() => return,
                _ = lease_lost.wait_for(|l| *l) => { let _ = lost.send(true); return; }
                s = client.watch(key.clone(), Some(opts)) => s,
            };
            match stream {
                Err(e) => db.recover(&conn, Broken::Error(&e)).await,
                Ok(mut stream) => loop {
                    let msg = tokio::select! {
                        () = stop.cancelled() => return,
                        _ = lease_lost.wait_for(|l| *l) => { let _ = lost.send(true); return; }
                        m = stream.message() => m,
                    };
                    let resp = match db.watch_message(&conn, msg).await {
                        WatchMessage::Response(resp) => resp,
                        WatchMessage::Broken => break,
                        WatchMessage::Compacted(compacted) => {
                            // Cannot tell what happened in between: check the key
                            // directly; still ours, watch on from the oldest revision
                            // etcd keeps (not from the compacted one, again and again).
                            let read = db
                                .request("get", Retry::Idempotent, |mut c| {
                                    let key = key.clone();
                                    async move { c.kv.get(key, None).await }
                                })
                                .await;
                            match read {
                                Ok(r)
                                    if r.kvs().first().map(|k| k.create_revision())
                                        != Some(rev) =>
                                {
                                    let _ = lost.send(true);
                                    return;
                                }
                                Ok(_) => from = from.max(compacted),
                                Err(_) => {}
                            }
                            break;
                        }
                    };
                    for ev in resp.events() {
                        if let Some(kv) = ev.kv() {
                            from = from.max(kv.mod_revision() + 1);
                        }
                        if ev.event_type() == EventType::Delete {
                            tracing::warn!("leadership lost: leader key deleted");
                            let _ = lost.send(true);
                            return;
                        }
                    }
                },
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}
