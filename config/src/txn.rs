//! Optimistic transactions, at least as strict as the Python library's.
//!
//! Reads happen at one snapshot revision and are recorded; at commit every recorded
//! read becomes an etcd compare (`mod_revision` equal, or `version == 0` for a key read
//! as absent) and every listed range a compare that no key in it was created (keys-only
//! listing) or changed (listing with values) after the snapshot. If any compare fails,
//! nothing is written and the body is re-run on fresh data ([`Config::transact`]).
//!
//! # Guarantees
//! No request sent to etcd carries more than [`MAX_TXN_OPS`] compares or operations.
//! Writes beyond that are refused before anything is sent ([`Error::TooManyOperations`]).
//! Reads beyond [`MAX_COMPARES`] are checked as covering key ranges (`mod_revision`
//! of every key in the range): creation or change of any key read is still detected,
//! but deletion of a key read inside such a range is not, and unrelated keys in the
//! range can cause a spurious (harmless) re-run.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn as EtcdTxn, TxnOp,
};
use futures::future::BoxFuture;

use crate::client::{Config, Retry};
use crate::error::{Error, Result};
use crate::path::{self, MAX_DEPTH, prefix_end};

/// etcd's default `--max-txn-ops`: the most compares, and the most operations, one
/// transaction request may carry.
pub const MAX_TXN_OPS: usize = 128;

/// Compares we allow before coalescing reads into ranges (leaves room for guards).
pub const MAX_COMPARES: usize = 112;

/// Times [`Config::transact`] runs a conflicting body before giving up.
pub const MAX_ATTEMPTS: u32 = 200;

/// Keys fetched per range request when listing.
const PAGE: i64 = 5_000;

#[derive(Clone, Debug)]
enum Write {
    Put { value: String, lease: Option<i64> },
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeCheck {
    /// No key created in the range after the snapshot.
    Created,
    /// No key created or modified in the range after the snapshot.
    Modified,
}

/// A leadership condition added to a transaction's commit.
#[derive(Clone, Debug)]
pub struct Guard {
    pub(crate) key: Vec<u8>,
    pub(crate) create_revision: i64,
    pub(crate) election: String,
}

/// Everything a committed transaction read: keys with the revision read, and ranges.
/// Used to wait until any of it changes ([`Config::wait_for_change`]).
#[derive(Clone, Debug, Default)]
pub struct ReadSet {
    pub(crate) revision: i64,
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ReadSet {
    /// Revision the reads were made at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// True when nothing was read.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }
}

/// Result of a successful commit.
#[derive(Clone, Debug)]
pub struct Committed {
    /// Revision after the commit (the snapshot revision if nothing was written).
    pub revision: i64,
    /// What the transaction read.
    pub reads: ReadSet,
}

/// One optimistic transaction. Build with [`Config::txn`]; read, write, then
/// [`Txn::commit`]. Writes are buffered and visible to later reads of the same
/// transaction.
pub struct Txn {
    db: Config,
    revision: Option<i64>,
    reads: BTreeMap<Vec<u8>, (i64, Option<String>)>,
    ranges: Vec<(Vec<u8>, Vec<u8>, RangeCheck)>,
    writes: BTreeMap<Vec<u8>, Write>,
    range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
    guards: Vec<Guard>,
    /// Keys created without reading them first: their absence is checked at commit.
    blind_creates: BTreeMap<Vec<u8>, String>,
    /// Read before creating, so `create` itself reports an existing key.
    checked_creates: bool,
    /// 1 on the first run of a body, 2 on the first re-run, …
    attempt: u32,
}

impl Config {
    /// A new, empty transaction.
    pub fn txn(&self) -> Txn {
        Txn {
            db: self.clone(),
            revision: None,
            reads: BTreeMap::new(),
            ranges: Vec::new(),
            writes: BTreeMap::new(),
            range_deletes: Vec::new(),
            guards: Vec::new(),
            blind_creates: BTreeMap::new(),
            checked_creates: false,
            attempt: 1,
        }
    }

    /// Run `body` in a transaction and commit; on conflict run it again on fresh data,
    /// up to [`MAX_ATTEMPTS`] times. The body must only act through the transaction
    /// (it may run several times).
    ///
    /// ```ignore
    /// let n = db.transact(|txn| Box::pin(async move {
    ///     let n: i64 = txn.get("/counter").await?.map_or(0, |v| v.parse().unwrap_or(0));
    ///     txn.put("/counter", &(n + 1).to_string())?;
    ///     Ok(n + 1)
    /// })).await?;
    /// ```
    ///
    /// # Errors
    /// The body's own error (nothing committed), a request failure, or
    /// [`Error::RetriesExhausted`].
    pub async fn transact<T, F>(&self, body: F) -> Result<T>
    where
        F: for<'t> FnMut(&'t mut Txn) -> BoxFuture<'t, Result<T>>,
    {
        self.transact_reads(body).await.map(|(v, _)| v)
    }

    /// As [`Config::transact`], also returning what the successful attempt read, for
    /// [`Config::wait_for_change`].
    ///
    /// # Errors
    /// See [`Config::transact`].
    pub async fn transact_reads<T, F>(&self, mut body: F) -> Result<(T, Committed)>
    where
        F: for<'t> FnMut(&'t mut Txn) -> BoxFuture<'t, Result<T>>,
    {
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(1), Duration::from_millis(100));
        let mut checked_creates = false;
        for attempt in 1..=MAX_ATTEMPTS {
            let mut txn = self.txn();
            txn.checked_creates = checked_creates;
            txn.attempt = attempt;
            let value = body(&mut txn).await?;
            match txn.commit().await {
                Ok(committed) => return Ok((value, committed)),
                Err(Error::AlreadyExists { .. }) if !checked_creates => {
                    // A blind create hit an existing key: run the body again reading
                    // before creating, so it sees `AlreadyExists` from `create` itself
                    // and can handle it, exactly as if it had read first.
                    checked_creates = true;
                }
                Err(Error::Conflict) => {
                    self.count_conflict();
                    if attempt > 2 {
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::RetriesExhausted {
            attempts: MAX_ATTEMPTS,
        })
    }
}

impl Txn {
    /// The configuration handle this transaction uses.
    pub fn config(&self) -> &Config {
        &self.db
    }

    /// Which run of the body this is (1 first, 2 after one conflict, …).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Record that `path` currently holds `current` (value and `mod_revision`, or
    /// absent), as known from a watch, without reading it: the commit checks it
    /// exactly like a read, and a later [`Txn::get`] returns it.
    ///
    /// Only the first attempt uses it. On a re-run after a conflict this does
    /// nothing and `get` reads etcd, so a stale view costs one conflict, never a loop.
    ///
    /// # Errors
    /// Invalid path.
    pub fn assume(&mut self, path: &str, current: Option<(&str, i64)>) -> Result<()> {
        let key = self.key(path)?;
        if self.attempt > 1 || self.reads.contains_key(&key) || self.pending(&key).is_some() {
            return Ok(());
        }
        let record = match current {
            Some((value, rev)) => (rev, Some(value.to_string())),
            None => (0, None),
        };
        self.reads.insert(key, record);
        Ok(())
    }

    /// Snapshot revision (after the first read).
    pub fn revision(&self) -> Option<i64> {
        self.revision
    }

    fn key(&self, path: &str) -> Result<Vec<u8>> {
        path::validate(path)?;
        Ok(self.db.keys().key(path).into_bytes())
    }

    fn deleted_by_range(&self, key: &[u8]) -> bool {
        self.range_deletes
            .iter()
            .any(|(s, e)| key >= s.as_slice() && key < e.as_slice())
    }

    fn pending(&self, key: &[u8]) -> Option<Option<String>> {
        match self.writes.get(key) {
            Some(Write::Put { value, .. }) => Some(Some(value.clone())),
            Some(Write::Delete) => Some(None),
            None if self.deleted_by_range(key) => Some(None),
            None => None,
        }
    }

    fn get_options(&self) -> GetOptions {
        match self.revision {
            Some(r) => GetOptions::new().with_revision(r),
            None => GetOptions::new(),
        }
    }

    fn set_revision(&mut self, header: Option<&etcd_client::ResponseHeader>) {
        if self.revision.is_none() {
            self.revision = header.map(|h| h.revision());
        }
    }

    /// Read a value (the raw stored text), or `None` if the key is absent.
    ///
    /// # Errors
    /// Invalid path or request failure.
    pub async fn get(&mut self, path: &str) -> Result<Option<String>> {
        Ok(self.get_with_revision(path).await?.map(|(v, _)| v))
    }

    /// Read a value with its `mod_revision`.
    ///
    /// # Errors
    /// Invalid path or request failure.
    pub async fn get_with_revision(&mut self, path: &str) -> Result<Option<(String, i64)>> {
        let key = self.key(path)?;
        if let Some(p) = self.pending(&key) {
            return Ok(p.map(|v| (v, 0)));
        }
        if let Some((rev, value)) = self.reads.get(&key) {
            return Ok(value.clone().map(|v| (v, *rev)));
        }
        let opts = self.get_options();
        let resp = self
            .db
            .request("get", Retry::Idempotent, |mut c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.kv.get(key, Some(opts)).await }
            })
            .await?;
        self.set_revision(resp.header());
        let found = resp.kvs().first().map(|kv| {
            (
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
            )
        });
        self.reads.insert(
            key,
            (
                found.as_ref().map_or(0, |f| f.1),
                found.as_ref().map(|f| f.0.clone()),
            ),
        );
        Ok(found)
    }

    async fn range(&mut self, start: Vec<u8>, keys_only: bool) -> Result<Vec<(Vec<u8>, String)>> {
        let end = prefix_end(&start);
        let mut out = Vec::new();
        let mut from = start.clone();
        loop {
            let mut opts = self.get_options().with_range(end.clone()).with_limit(PAGE);
            if keys_only {
                opts = opts.with_keys_only();
            }
            let resp = self
                .db
                .request("list", Retry::Idempotent, |mut c| {
                    let (from, opts) = (from.clone(), opts.clone());
                    async move { c.kv.get(from, Some(opts)).await }
                })
                .await?;
            self.set_revision(resp.header());
            for item in resp.kvs() {
                out.push((
                    item.key().to_vec(),
                    String::from_utf8_lossy(item.value()).into_owned(),
                ));
            }
            match (resp.more(), resp.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        let check = if keys_only {
            RangeCheck::Created
        } else {
            RangeCheck::Modified
        };
        self.ranges.push((start.clone(), end.clone(), check));
        // Read-your-writes: merge this transaction's pending puts and deletes.
        let mut merged: BTreeMap<Vec<u8>, String> = out
            .into_iter()
            .filter(|(k, _)| !matches!(self.pending(k), Some(None)))
            .collect();
        for (k, w) in self.writes.range(start..end) {
            if let Write::Put { value, .. } = w {
                merged.insert(k.clone(), value.clone());
            }
        }
        Ok(merged.into_iter().collect())
    }

    async fn list(
        &mut self,
        prefix: &str,
        recurse: usize,
        keys_only: bool,
    ) -> Result<Vec<(String, String)>> {
        path::validate_prefix(prefix)?;
        let mut out = Vec::new();
        for level in 0..=recurse.min(MAX_DEPTH) {
            let start = self.db.keys().key_prefix(prefix, level).into_bytes();
            for (key, value) in self.range(start, keys_only).await? {
                if let Some(p) = self.db.keys().path(&key) {
                    out.push((p, value));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Paths starting with `prefix` at the prefix's depth and up to `recurse` levels
    /// below it, sorted. `list_keys("/pb/", 0)` lists the blocks; `("/pb/", 1)` also
    /// their owners and states.
    ///
    /// # Errors
    /// Invalid prefix or request failure.
    pub async fn list_keys(&mut self, prefix: &str, recurse: usize) -> Result<Vec<String>> {
        Ok(self
            .list(prefix, recurse, true)
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    }

    /// As [`Txn::list_keys`], with the values.
    ///
    /// # Errors
    /// Invalid prefix or request failure.
    pub async fn list_values(
        &mut self,
        prefix: &str,
        recurse: usize,
    ) -> Result<Vec<(String, String)>> {
        self.list(prefix, recurse, false).await
    }

    /// Create a key that must not exist yet.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], invalid path, request failure.
    pub async fn create(&mut self, path: &str, value: &str) -> Result<()> {
        self.create_leased(path, value, None).await
    }

    /// Create a key bound to a lease (it vanishes when the lease expires).
    ///
    /// # Errors
    /// See [`Txn::create`].
    /// A key this transaction has not read is not fetched: its absence becomes a
    /// condition of the commit (one round trip in all), and an existing key is then
    /// reported by [`Txn::commit`] as [`Error::AlreadyExists`]. [`Config::transact`]
    /// re-runs the body so that `create` itself returns the error.
    pub async fn create_leased(
        &mut self,
        path: &str,
        value: &str,
        lease: Option<i64>,
    ) -> Result<()> {
        let key = self.key(path)?;
        let known = self.pending(&key).is_some() || self.reads.contains_key(&key);
        if known || self.checked_creates {
            if self.get(path).await?.is_some() {
                return Err(Error::AlreadyExists {
                    path: path.to_string(),
                });
            }
        } else {
            self.reads.insert(key.clone(), (0, None));
            self.blind_creates.insert(key.clone(), path.to_string());
        }
        self.writes.insert(
            key,
            Write::Put {
                value: value.to_string(),
                lease,
            },
        );
        Ok(())
    }

    /// Replace the value of a key that must exist.
    ///
    /// # Errors
    /// [`Error::NotFound`], invalid path, request failure.
    pub async fn update(&mut self, path: &str, value: &str) -> Result<()> {
        if self.get(path).await?.is_none() {
            return Err(Error::NotFound {
                path: path.to_string(),
            });
        }
        let key = self.key(path)?;
        self.writes.insert(
            key,
            Write::Put {
                value: value.to_string(),
                lease: None,
            },
        );
        Ok(())
    }

    /// Write a key whatever its current state (no read recorded).
    ///
    /// # Errors
    /// Invalid path.
    pub fn put(&mut self, path: &str, value: &str) -> Result<()> {
        let key = self.key(path)?;
        self.writes.insert(
            key,
            Write::Put {
                value: value.to_string(),
                lease: None,
            },
        );
        Ok(())
    }

    /// Delete a key that must exist.
    ///
    /// # Errors
    /// [`Error::NotFound`], invalid path, request failure.
    pub async fn delete(&mut self, path: &str) -> Result<()> {
        if self.get(path).await?.is_none() {
            return Err(Error::NotFound {
                path: path.to_string(),
            });
        }
        let key = self.key(path)?;
        self.writes.insert(key, Write::Delete);
        Ok(())
    }

    /// Delete a key (if present) and every key below it, down to [`MAX_DEPTH`] levels.
    /// `/pb/a` never touches `/pb/ab`. Costs one operation per level.
    ///
    /// # Errors
    /// Invalid path.
    pub fn delete_tree(&mut self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        self.writes.insert(key, Write::Delete);
        let below = format!("{}/", path.trim_end_matches('/'));
        for level in 0..MAX_DEPTH {
            let start = self.db.keys().key_prefix(&below, level).into_bytes();
            let end = prefix_end(&start);
            self.range_deletes.push((start, end));
        }
        Ok(())
    }

    /// Make the commit conditional on still holding a leadership.
    pub fn require(&mut self, guard: &Guard) {
        self.guards.push(guard.clone());
    }

    /// Number of operations the commit will send.
    pub fn operation_count(&self) -> usize {
        self.writes.len() + self.range_deletes.len()
    }

    /// True when the transaction has nothing to write.
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty() && self.range_deletes.is_empty()
    }

    fn compares(&self) -> Vec<Compare> {
        let next = self.revision.unwrap_or(0) + 1;
        let mut compares: Vec<Compare> = self
            .guards
            .iter()
            .map(|g| Compare::create_revision(g.key.clone(), CompareOp::Equal, g.create_revision))
            .collect();
        for (start, end, check) in &self.ranges {
            compares.push(
                match check {
                    RangeCheck::Created => {
                        Compare::create_revision(start.clone(), CompareOp::Less, next)
                    }
                    RangeCheck::Modified => {
                        Compare::mod_revision(start.clone(), CompareOp::Less, next)
                    }
                }
                .with_range(end.clone()),
            );
        }
        let budget = MAX_COMPARES.saturating_sub(compares.len()).max(1);
        if self.reads.len() <= budget {
            for (key, (rev, _)) in &self.reads {
                compares.push(if *rev == 0 {
                    Compare::version(key.clone(), CompareOp::Equal, 0)
                } else {
                    Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)
                });
            }
        } else {
            // Too many single reads: check covering ranges instead (see module docs).
            let keys: Vec<&Vec<u8>> = self.reads.keys().collect();
            let per = keys.len().div_ceil(budget);
            for chunk in keys.chunks(per) {
                let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
                let mut end = last.clone();
                end.push(0);
                compares.push(
                    Compare::mod_revision(first.clone(), CompareOp::Less, next).with_range(end),
                );
            }
        }
        compares
    }

    /// What this transaction has read so far.
    pub fn read_set(&self) -> ReadSet {
        ReadSet {
            revision: self.revision.unwrap_or(0),
            keys: self.reads.keys().cloned().collect(),
            ranges: self
                .ranges
                .iter()
                .map(|(s, e, _)| (s.clone(), e.clone()))
                .collect(),
        }
    }

    /// Commit: apply the writes if nothing read has changed since.
    ///
    /// # Errors
    /// [`Error::Conflict`] (re-run the body), [`Error::NotLeader`] when a guard failed,
    /// [`Error::TooManyOperations`], or a request failure.
    pub async fn commit(self) -> Result<Committed> {
        let reads = self.read_set();
        if self.is_read_only() {
            return Ok(Committed {
                revision: reads.revision,
                reads,
            });
        }
        let ops = self.operation_count().max(self.blind_creates.len());
        if ops > MAX_TXN_OPS {
            return Err(Error::TooManyOperations {
                operations: ops,
                limit: MAX_TXN_OPS,
            });
        }
        let compares = self.compares();
        debug_assert!(compares.len() <= MAX_TXN_OPS);
        let mut txn_ops = Vec::with_capacity(ops);
        for (key, write) in &self.writes {
            txn_ops.push(match write {
                Write::Put { value, lease } => {
                    let opts = lease.map(|l| PutOptions::new().with_lease(l));
                    TxnOp::put(key.clone(), value.clone(), opts)
                }
                Write::Delete => TxnOp::delete(key.clone(), None),
            });
        }
        for (start, end) in &self.range_deletes {
            txn_ops.push(TxnOp::delete(
                start.clone(),
                Some(DeleteOptions::new().with_range(end.clone())),
            ));
        }
        // On failure, report which blindly created keys exist (count-only reads).
        let blind: Vec<(&Vec<u8>, &String)> = self.blind_creates.iter().collect();
        let on_failure: Vec<TxnOp> = blind
            .iter()
            .map(|(k, _)| TxnOp::get((*k).clone(), Some(GetOptions::new().with_count_only())))
            .collect();
        let txn = EtcdTxn::new()
            .when(compares)
            .and_then(txn_ops)
            .or_else(on_failure);
        let mut rounds = 0;
        let resp = loop {
            rounds += 1;
            let sent = self
                .db
                .request("txn", Retry::Once, |mut c| {
                    let txn = txn.clone();
                    async move { c.kv.txn(txn).await }
                })
                .await;
            let error = match sent {
                Ok(resp) => break resp,
                Err(e) if outcome_unknown(&e) => e,
                Err(e) => return Err(e),
            };
            match self.resolve(&error).await {
                Resolution::Committed(revision) => {
                    self.db.count_commit();
                    return Ok(Committed { revision, reads });
                }
                Resolution::NotApplied if rounds < MAX_RESENDS => {
                    tracing::info!(error = %error, "commit outcome unknown and not applied: sending it again");
                    tokio::time::sleep(crate::backoff::delay(
                        Duration::from_millis(20),
                        Duration::from_millis(500),
                        rounds,
                    ))
                    .await;
                }
                Resolution::Changed => return Err(Error::Conflict),
                Resolution::NotApplied | Resolution::Unknown => return Err(error),
            }
        };
        if resp.succeeded() {
            self.db.count_commit();
            let revision = resp.header().map_or(0, |h| h.revision());
            return Ok(Committed { revision, reads });
        }
        for ((_, path), op) in blind.iter().zip(resp.op_responses()) {
            if let etcd_client::TxnOpResponse::Get(get) = op
                && get.count() > 0
            {
                return Err(Error::AlreadyExists {
                    path: (*path).clone(),
                });
            }
        }
        for guard in &self.guards {
            let resp = self
                .db
                .request("get", Retry::Idempotent, |mut c| {
                    let key = guard.key.clone();
                    async move { c.kv.get(key, None).await }
                })
                .await?;
            if resp.kvs().first().map(|kv| kv.create_revision()) != Some(guard.create_revision) {
                return Err(Error::NotLeader {
                    election: guard.election.clone(),
                });
            }
        }
        Err(Error::Conflict)
    }

    /// The commit request failed in a way that leaves its outcome unknown (the member
    /// died or timed out after it may have been applied). Sending it blindly again could
    /// apply it twice (a `put` not covered by a compare would succeed again), and calling
    /// it a conflict would be a lie to callers that wait for the change a conflict
    /// implies. So read back, at one revision and from whichever member answers, every
    /// key it writes, and use that a transaction applies all its writes at one new
    /// revision or none:
    ///
    /// - a written key this transaction read (or assumed, or created blindly) still
    ///   has the `mod_revision` it was read at, or is still absent when it was absent
    ///   and this writes it: not applied. [`Txn::commit`] sends it again (its compares
    ///   decide, as for any commit).
    /// - otherwise, every put key holds this transaction's value and lease, every
    ///   deleted key and range is empty: applied. Committed, at the revision of the put
    ///   keys (the read's revision when it only deletes).
    /// - otherwise a key it read and writes was changed by another writer since:
    ///   [`Error::Conflict`], as the compare on that key would now fail.
    /// - otherwise (only blind puts, overwritten): unknown; the original error.
    ///
    /// # Guarantees
    /// A commit is never applied twice, except when another writer deletes a key this
    /// transaction created within the moment between the cut-off commit and the read
    /// back (the key then looks never created, and is created again).
    async fn resolve(&self, original: &Error) -> Resolution {
        self.db.count_unknown_commit();
        let mut ops: Vec<TxnOp> = self
            .writes
            .keys()
            .map(|k| TxnOp::get(k.clone(), None))
            .collect();
        ops.extend(self.range_deletes.iter().map(|(start, end)| {
            TxnOp::get(
                start.clone(),
                Some(GetOptions::new().with_range(end.clone()).with_count_only()),
            )
        }));
        let read = EtcdTxn::new().and_then(ops);
        let resp = match self
            .db
            .request("txn", Retry::Idempotent, |mut c| {
                let read = read.clone();
                async move { c.kv.txn(read).await }
            })
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                tracing::warn!(error = %e, original = %original, "commit outcome unknown and cannot be read back");
                return Resolution::Unknown;
            }
        };
        let mut untouched = false;
        let mut in_place = true;
        let mut covered = false;
        let mut revision = 0;
        let writes = self
            .writes
            .iter()
            .map(Some)
            .chain(self.range_deletes.iter().map(|_| None));
        for (write, op) in writes.zip(resp.op_responses()) {
            let etcd_client::TxnOpResponse::Get(get) = op else {
                return Resolution::Unknown;
            };
            let found = get.kvs().first();
            let Some((key, write)) = write else {
                in_place &= get.count() == 0;
                continue;
            };
            if let Some((read_rev, _)) = self.reads.get(key) {
                covered = true;
                untouched |= match found {
                    Some(kv) => *read_rev != 0 && kv.mod_revision() == *read_rev,
                    None => *read_rev == 0 && matches!(write, Write::Put { .. }),
                };
            }
            in_place &= match (write, found) {
                (Write::Put { value, lease }, Some(kv)) => {
                    revision = revision.max(kv.mod_revision());
                    kv.value() == value.as_bytes() && kv.lease() == lease.unwrap_or(0)
                }
                (Write::Put { .. }, None) => false,
                (Write::Delete, found) => found.is_none(),
            };
        }
        if untouched {
            Resolution::NotApplied
        } else if in_place {
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            tracing::info!(error = %original, revision, "commit outcome was unknown; it was applied");
            Resolution::Committed(revision)
        } else if covered {
            Resolution::Changed
        } else {
            Resolution::Unknown
        }
    }
}

/// Times a commit whose outcome was unknown, and found not applied, is sent.
const MAX_RESENDS: u32 = 5;

/// What reading back a commit cut off in flight showed.
enum Resolution {
    /// Applied, at this revision.
    Committed(i64),
    /// Not applied: safe to send again.
    NotApplied,
    /// Another writer changed a key it read and writes: a conflict.
    Changed,
    /// Cannot tell.
    Unknown,
}

/// True when a commit may or may not have been applied: the member failed, or no
/// answer came in time.
fn outcome_unknown(e: &Error) -> bool {
    match e {
        Error::RequestFailed { source, .. } => {
            crate::client::is_member_failure(source)
                || matches!(source, etcd_client::Error::Internal(m) if m.starts_with("no answer within"))
        }
        _ => false,
    }
}

/// Convenience for bodies: `Box::pin(async move { … })` with the right type.
pub type TxnFuture<'t, T> = BoxFuture<'t, Result<T>>;
