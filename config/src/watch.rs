//! Change streams for one level of a path prefix, that never miss a change.
//!
//! The watch is a small state machine, as kube-runtime's watcher: list at revision R
//! (emitting [`WatchEvent::Listed`]), watch from R+1; after a disconnect resume from
//! the revision after the last one delivered; if etcd has compacted that revision, list
//! again. Events at or below the last delivered revision are dropped, so each change is
//! delivered once, in revision order.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::client::{Broken, Config, Retry, WatchMessage};
use crate::error::{Error, Result};
use crate::path::{self, prefix_end};
use crate::txn::ReadSet;

/// Keys per range request of a listing.
const LIST_PAGE: i64 = 5_000;

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Configuration path.
    pub path: String,
    /// Raw stored value.
    pub value: String,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Revision the key was created at.
    pub create_revision: i64,
}

/// A change delivered by a [`Watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The complete current contents at `revision` (at start, and again after a
    /// compaction made resuming impossible). Replace any view built so far.
    Listed {
        /// Revision of the listing.
        revision: i64,
        /// Every key in the watched range.
        entries: Vec<Entry>,
    },
    /// A key was created or changed.
    Put(Entry),
    /// A key was deleted.
    Deleted {
        /// Configuration path.
        path: String,
        /// Revision of the deletion.
        revision: i64,
    },
}

impl WatchEvent {
    /// Revision of the event.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Listed { revision, .. } | WatchEvent::Deleted { revision, .. } => *revision,
            WatchEvent::Put(e) => e.mod_revision,
        }
    }
}

/// A running watch. Receive with [`Watch::next`] (or [`Watch::next_batch`]); dropping
/// it stops the watch.
pub struct Watch {
    /// The events of one etcd watch response per message, so that a transaction's
    /// changes (one revision, one response) stay together.
    rx: mpsc::Receiver<Vec<WatchEvent>>,
    /// Events of the last message not handed out yet.
    pending: VecDeque<WatchEvent>,
    stop: CancellationToken,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Watch {
    /// The next event; `None` only after the watch was stopped.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            self.pending = self.rx.recv().await?.into();
        }
    }

    /// The next events, at least one: the rest of the etcd response being handed out,
    /// or the next response whole. Every change of one transaction (one revision) comes
    /// in one batch. `None` only after the watch was stopped.
    pub async fn next_batch(&mut self) -> Option<Vec<WatchEvent>> {
        if !self.pending.is_empty() {
            return Some(self.pending.drain(..).collect());
        }
        loop {
            let batch = self.rx.recv().await?;
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }

    /// As [`Watch::next_batch`], without waiting: `None` when nothing has arrived.
    pub fn try_next_batch(&mut self) -> Option<Vec<WatchEvent>> {
        if !self.pending.is_empty() {
            return Some(self.pending.drain(..).collect());
        }
        self.rx.try_recv().ok()
    }
}

impl Config {
    /// Watch the keys starting with `prefix` at `levels` below the prefix's depth
    /// (`("/pb/", 0)`: every block; `("/pb/", 1)`: every owner and state).
    ///
    /// With `start_revision` `None`, the watch first lists the range; otherwise it
    /// delivers changes from that revision on (and lists if it was compacted).
    ///
    /// # Errors
    /// An invalid prefix.
    pub fn watch(&self, prefix: &str, levels: usize, start_revision: Option<i64>) -> Result<Watch> {
        path::validate_prefix(prefix)?;
        let start = self.keys().key_prefix(prefix, levels).into_bytes();
        let end = prefix_end(&start);
        Ok(self.watch_range(start, end, Vec::new(), start_revision))
    }

    /// Watch the etcd keys in `[start, end)` (already tagged and prefixed), as
    /// [`Config::watch`] does for one level of a prefix. Keys in the range that are not
    /// configuration paths of this key space are skipped. A listing is read in parts cut
    /// at `splits`, side by side, at one revision.
    pub(crate) fn watch_range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        splits: Vec<Vec<u8>>,
        start_revision: Option<i64>,
    ) -> Watch {
        let (tx, rx) = mpsc::channel(1024);
        let stop = CancellationToken::new();
        let task = WatchTask {
            db: self.clone(),
            start,
            end,
            splits,
            tx,
            stop: stop.clone(),
        };
        tokio::spawn(task.run(start_revision));
        Watch {
            rx,
            pending: VecDeque::new(),
            stop,
        }
    }

    /// Wait until anything `reads` covers changes after the revision it was read at
    /// (the Python library's `txn.loop(wait=True)`), or `cancel` fires.
    ///
    /// # Errors
    /// [`Error::Cancelled`], or a watch that cannot be set up.
    pub async fn wait_for_change(&self, reads: &ReadSet, cancel: &CancellationToken) -> Result<()> {
        if reads.is_empty() {
            cancel.cancelled().await;
            return Err(Error::Cancelled);
        }
        // One watch over the span covering everything read, filtered here.
        let lo = reads
            .keys
            .iter()
            .chain(reads.ranges.iter().map(|r| &r.0))
            .min()
            .cloned()
            .unwrap_or_default();
        let hi = reads
            .keys
            .iter()
            .map(|k| {
                let mut e = k.clone();
                e.push(0);
                e
            })
            .chain(reads.ranges.iter().map(|r| r.1.clone()))
            .max()
            .unwrap_or_default();
        let covers = |key: &[u8]| {
            reads.keys.iter().any(|k| k.as_slice() == key)
                || reads
                    .ranges
                    .iter()
                    .any(|(s, e)| key >= s.as_slice() && key < e.as_slice())
        };
        let mut from = reads.revision + 1;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            let opts = WatchOptions::new()
                .with_range(hi.clone())
                .with_start_revision(from);
            let conn = tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled),
                c = self.conn() => c,
            };
            if let Ok(conn) = conn {
                let mut client = conn.client.clone();
                let stream = tokio::select! {
                    () = cancel.cancelled() => return Err(Error::Cancelled),
                    s = client.watch(lo.clone(), Some(opts)) => s,
                };
                match stream {
                    Err(e) => self.recover(&conn, Broken::Error(&e)).await,
                    Ok(mut stream) => loop {
                        let msg = tokio::select! {
                            () = cancel.cancelled() => return Err(Error::Cancelled),
                            m = stream.message() => m,
                        };
                        let resp = match self.watch_message(&conn, msg).await {
                            WatchMessage::Response(resp) => resp,
                            // History gone: something may have changed.
                            WatchMessage::Compacted(_) => return Ok(()),
                            WatchMessage::Broken => break,
                        };
                        backoff.reset();
                        for ev in resp.events() {
                            if let Some(kv) = ev.kv() {
                                from = from.max(kv.mod_revision() + 1);
                                if covers(kv.key()) {
                                    return Ok(());
                                }
                            }
                        }
                    },
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(Error::Cancelled),
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}

impl Config {
    /// Every entry in `[start, end)` at one revision, and that revision. With `splits`
    /// (keys inside the range), the parts between them are read side by side at one
    /// revision: etcd serves them on several cores, and together they are one
    /// consistent listing.
    pub(crate) async fn list_range(
        &self,
        start: &[u8],
        end: &[u8],
        splits: &[Vec<u8>],
    ) -> Result<(Vec<Entry>, i64)> {
        if splits.is_empty() {
            return self.list_part(start, end, None).await;
        }
        let revision = self.current_revision().await?;
        let mut bounds = vec![start.to_vec()];
        bounds.extend(
            splits
                .iter()
                .filter(|k| k.as_slice() > start && k.as_slice() < end)
                .cloned(),
        );
        bounds.push(end.to_vec());
        let parts = futures::future::try_join_all(
            bounds
                .windows(2)
                .map(|w| self.list_part(&w[0], &w[1], Some(revision))),
        )
        .await?;
        Ok((parts.into_iter().flat_map(|(e, _)| e).collect(), revision))
    }

    /// The entries in `[start, end)` at `revision` (`None`: the current one), and the
    /// revision read at.
    async fn list_part(
        &self,
        start: &[u8],
        end: &[u8],
        mut revision: Option<i64>,
    ) -> Result<(Vec<Entry>, i64)> {
        let mut entries = Vec::new();
        let mut from = start.to_vec();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.to_vec())
                .with_limit(LIST_PAGE);
            if let Some(r) = revision {
                opts = opts.with_revision(r);
            }
            let resp = self
                .request("list", Retry::Idempotent, |mut c| {
                    let (from, opts) = (from.clone(), opts.clone());
                    async move { c.kv.get(from, Some(opts)).await }
                })
                .await?;
            revision = revision.or(resp.header().map(|h| h.revision()));
            for item in resp.kvs() {
                if let Some(path) = self.keys().path(item.key()) {
                    entries.push(Entry {
                        path,
                        value: String::from_utf8_lossy(item.value()).into_owned(),
                        mod_revision: item.mod_revision(),
                        create_revision: item.create_revision(),
                    });
                }
            }
            match (resp.more(), resp.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok((entries, revision.unwrap_or(0)))
    }
}

struct WatchTask {
    db: Config,
    start: Vec<u8>,
    end: Vec<u8>,
    /// Keys inside the range at which a listing is cut into parts read side by side.
    splits: Vec<Vec<u8>>,
    tx: mpsc::Sender<Vec<WatchEvent>>,
    stop: CancellationToken,
}

enum Step {
    List,
    Watch(i64),
    Stop,
}

impl WatchTask {
    async fn run(self, start_revision: Option<i64>) {
        let mut step = match start_revision {
            Some(r) => Step::Watch(r),
            None => Step::List,
        };
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            step = match step {
                Step::Stop => return,
                Step::List => match self.list().await {
                    Ok(Some(next)) => {
                        backoff.reset();
                        Step::Watch(next)
                    }
                    Ok(None) => Step::Stop,
                    Err(e) => {
                        tracing::warn!(error = %e, "watch: listing failed, retrying");
                        if self.pause(&mut backoff).await {
                            Step::List
                        } else {
                            Step::Stop
                        }
                    }
                },
                Step::Watch(from) => self.watch_from(from, &mut backoff).await,
            };
        }
    }

    async fn pause(&self, backoff: &mut Backoff) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(backoff.next_delay()) => true,
        }
    }

    /// Watch again from `from` after a pause, unless stopped meanwhile.
    async fn resume(&self, from: i64, backoff: &mut Backoff) -> Step {
        if self.pause(backoff).await {
            Step::Watch(from)
        } else {
            Step::Stop
        }
    }

    async fn send(&self, ev: Vec<WatchEvent>) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            r = self.tx.send(ev) => r.is_ok(),
        }
    }

    /// List the range; returns the revision to watch from, or `None` to stop.
    async fn list(&self) -> Result<Option<i64>> {
        let (entries, revision) = self
            .db
            .list_range(&self.start, &self.end, &self.splits)
            .await?;
        if !self
            .send(vec![WatchEvent::Listed { revision, entries }])
            .await
        {
            return Ok(None);
        }
        Ok(Some(revision + 1))
    }

    async fn watch_from(&self, mut from: i64, backoff: &mut Backoff) -> Step {
        let opts = WatchOptions::new()
            .with_range(self.end.clone())
            .with_start_revision(from)
            .with_progress_notify();
        let conn = tokio::select! {
            () = self.stop.cancelled() => return Step::Stop,
            c = self.db.conn() => c,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "watch: no etcd member to watch on, retrying");
                self.db.count_watch_reconnect();
                return self.resume(from, backoff).await;
            }
        };
        let mut client = conn.client.clone();
        let stream = tokio::select! {
            () = self.stop.cancelled() => return Step::Stop,
            s = client.watch(self.start.clone(), Some(opts)) => s,
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "watch: cannot start, retrying");
                self.db.count_watch_reconnect();
                self.db.recover(&conn, Broken::Error(&e)).await;
                return self.resume(from, backoff).await;
            }
        };
        loop {
            let msg = tokio::select! {
                () = self.stop.cancelled() => return Step::Stop,
                m = stream.message() => m,
            };
            let resp = match self.db.watch_message(&conn, msg).await {
                WatchMessage::Response(resp) => resp,
                WatchMessage::Compacted(compacted) => {
                    tracing::info!(from, compacted, "watch: revision compacted, listing again");
                    return Step::List;
                }
                WatchMessage::Broken => {
                    self.db.count_watch_reconnect();
                    return self.resume(from, backoff).await;
                }
            };
            backoff.reset();
            let mut next = from;
            if resp.events().is_empty() && !resp.created() {
                // A progress notification: everything up to the header revision is sent.
                if let Some(h) = resp.header() {
                    next = next.max(h.revision() + 1);
                }
            }
            let mut batch = Vec::with_capacity(resp.events().len());
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let rev = kv.mod_revision();
                if rev < from {
                    continue; // already delivered before a reconnect
                }
                next = next.max(rev + 1);
                let Some(path) = self.db.keys().path(kv.key()) else {
                    continue;
                };
                let event = match ev.event_type() {
                    EventType::Put => WatchEvent::Put(Entry {
                        path,
                        value: String::from_utf8_lossy(kv.value()).into_owned(),
                        mod_revision: rev,
                        create_revision: kv.create_revision(),
                    }),
                    EventType::Delete => WatchEvent::Deleted {
                        path,
                        revision: rev,
                    },
                };
                batch.push(event);
            }
            if !batch.is_empty() && !self.send(batch).await {
                return Step::Stop;
            }
            from = next;
        }
    }
}
