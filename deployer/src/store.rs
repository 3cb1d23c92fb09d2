//! Writing `/deploy/<id>/state`: only while the entry exists and still asks for what was
//! acted on, only while leading, and never leaving a state key behind a deleted entry.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use sdp_config::entity::{Deployment, DeploymentState};
use sdp_config::{Config, Error, Guard};

use crate::decide::{Report, render_state};
use crate::spec::SpecContext;
use crate::view::{Item, View};
use crate::workload::{WORKLOAD, Workload, same};

/// Transaction attempts before giving up on one write (each re-run reads fresh data).
const ATTEMPTS: u32 = 10;

/// Writes states for one leadership term.
#[derive(Clone)]
pub(crate) struct StateStore {
    db: Config,
    guard: Guard,
    view: Arc<Mutex<View>>,
    spec: Arc<SpecContext>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

/// What an entry asked for when it was acted on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ActedOn<'a> {
    /// Exactly this text.
    Text,
    /// Any text with this spec digest (a reformatted entry asks for the same release).
    Digest(&'a str),
}

impl StateStore {
    /// A store whose writes require `guard` (leadership).
    pub(crate) fn new(
        db: Config,
        guard: Guard,
        view: Arc<Mutex<View>>,
        spec: Arc<SpecContext>,
    ) -> Self {
        StateStore {
            db,
            guard,
            view,
            spec,
        }
    }

    fn still_wanted(&self, id: &str, acted: &Item, current: &str, acted_on: ActedOn<'_>) -> bool {
        if current == acted.value {
            return true;
        }
        match acted_on {
            ActedOn::Text => false,
            ActedOn::Digest(d) => self.spec.desired(id, current).digest() == Some(d),
        }
    }

    /// Write `report` as the state of `id` in one transaction conditional on the entry
    /// (`entry` as seen by the watch, checked without a round trip), on the state as last
    /// seen, and on leadership. Returns `false` when the entry is gone or changed (the
    /// reconcile that follows the change reports instead).
    ///
    /// # Errors
    /// etcd failures, [`Error::NotLeader`].
    pub(crate) async fn report(
        &self,
        id: &str,
        entry: &Item,
        acted_on: ActedOn<'_>,
        report: &Report,
    ) -> Result<bool, Error> {
        let entry_path = Deployment::path(id);
        let state_path = Deployment::state_path(id);
        let known = self
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot_state(id);
        for attempt in 1..=ATTEMPTS {
            let mut txn = self.db.txn();
            if attempt == 1 {
                txn.assume(&entry_path, Some((&entry.value, entry.mod_revision)))?;
                txn.assume(
                    &state_path,
                    known.as_ref().map(|s| (s.value.as_str(), s.mod_revision)),
                )?;
            }
            let Some(current) = txn.get(&entry_path).await? else {
                return Ok(false);
            };
            if !self.still_wanted(id, entry, &current, acted_on) {
                return Ok(false);
            }
            let previous = txn
                .get(&state_path)
                .await?
                .and_then(|s| DeploymentState::parse(&s).ok());
            let text =
                render_state(previous.as_ref(), report, &self.spec.namespace, Utc::now()).to_json();
            txn.require(&self.guard);
            txn.put(&state_path, &text)?;
            match txn.commit().await {
                Ok(done) => {
                    let item = Item {
                        value: text,
                        mod_revision: done.revision,
                    };
                    self.view
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record_state(id, Some(item));
                    return Ok(true);
                }
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::RetriesExhausted { attempts: ATTEMPTS })
    }

    /// Whether etcd still knows lease `id` (of a leadership term).
    ///
    /// # Errors
    /// etcd failures.
    pub(crate) async fn lease_exists(&self, id: i64) -> Result<bool, Error> {
        self.db.lease_exists(id).await
    }

    /// Delete the state key of `id`, whose entry is gone, unless the entry came back.
    ///
    /// # Errors
    /// etcd failures, [`Error::NotLeader`].
    pub(crate) async fn forget(&self, id: &str, known: &Item) -> Result<(), Error> {
        let entry_path = Deployment::path(id);
        let state_path = Deployment::state_path(id);
        for attempt in 1..=ATTEMPTS {
            let mut txn = self.db.txn();
            if attempt == 1 {
                txn.assume(&entry_path, None)?;
                txn.assume(&state_path, Some((&known.value, known.mod_revision)))?;
            }
            if txn.get(&entry_path).await?.is_some() {
                return Ok(());
            }
            if txn.get(&state_path).await?.is_none() {
                self.view
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record_state(id, None);
                return Ok(());
            }
            txn.require(&self.guard);
            txn.delete(&state_path).await?;
            match txn.commit().await {
                Ok(_) => {
                    self.view
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record_state(id, None);
                    return Ok(());
                }
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::RetriesExhausted { attempts: ATTEMPTS })
    }

    /// Write `workload` into the state of `id`, which reports on `release`, keeping every
    /// other field: conditional on the entry and state as last seen (`entry`, `state`,
    /// checked without a round trip) and on leadership. Returns `false` when there is
    /// nothing to write any more (entry or state gone, the state is about another
    /// release, or it already says this).
    ///
    /// # Errors
    /// etcd failures, [`Error::NotLeader`].
    pub(crate) async fn report_workload(
        &self,
        id: &str,
        release: &str,
        entry: &Item,
        state: &Item,
        workload: &Workload,
    ) -> Result<bool, Error> {
        let entry_path = Deployment::path(id);
        let state_path = Deployment::state_path(id);
        for attempt in 1..=ATTEMPTS {
            let mut txn = self.db.txn();
            if attempt == 1 {
                txn.assume(&entry_path, Some((&entry.value, entry.mod_revision)))?;
                txn.assume(&state_path, Some((&state.value, state.mod_revision)))?;
            }
            if txn.get(&entry_path).await?.is_none() {
                return Ok(false);
            }
            let Some(mut current) = txn
                .get(&state_path)
                .await?
                .and_then(|s| DeploymentState::parse(&s).ok())
            else {
                return Ok(false);
            };
            if current.release.as_deref() != Some(release)
                || same(current.extra.get(WORKLOAD), workload)
            {
                return Ok(false);
            }
            let updated = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            current
                .extra
                .insert(WORKLOAD.into(), workload.to_value(&updated));
            let text = current.to_json();
            txn.require(&self.guard);
            txn.put(&state_path, &text)?;
            match txn.commit().await {
                Ok(done) => {
                    self.view
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record_state(
                            id,
                            Some(Item {
                                value: text,
                                mod_revision: done.revision,
                            }),
                        );
                    return Ok(true);
                }
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::RetriesExhausted { attempts: ATTEMPTS })
    }

    /// Write several workloads in one transaction (one etcd request for a burst), on the
    /// same conditions as [`StateStore::report_workload`]; the count written. Any
    /// condition that fails fails the whole batch with [`Error::Conflict`]: the caller
    /// writes them one by one instead.
    ///
    /// # Errors
    /// [`Error::Conflict`], etcd failures, [`Error::NotLeader`].
    pub(crate) async fn report_workloads(&self, batch: &[WorkloadWrite]) -> Result<usize, Error> {
        let mut txn = self.db.txn();
        let updated = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut written = Vec::new();
        for w in batch {
            let entry_path = Deployment::path(&w.id);
            let state_path = Deployment::state_path(&w.id);
            txn.assume(&entry_path, Some((&w.entry.value, w.entry.mod_revision)))?;
            txn.assume(&state_path, Some((&w.state.value, w.state.mod_revision)))?;
            let Some(mut current) = txn
                .get(&state_path)
                .await?
                .and_then(|s| DeploymentState::parse(&s).ok())
            else {
                continue;
            };
            if current.release.as_deref() != Some(w.release.as_str())
                || same(current.extra.get(WORKLOAD), &w.workload)
            {
                continue;
            }
            current
                .extra
                .insert(WORKLOAD.into(), w.workload.to_value(&updated));
            let text = current.to_json();
            txn.put(&state_path, &text)?;
            written.push((w.id.as_str(), text));
        }
        if written.is_empty() {
            return Ok(0);
        }
        txn.require(&self.guard);
        let done = txn.commit().await?;
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, text) in &written {
            view.record_state(
                id,
                Some(Item {
                    value: text.clone(),
                    mod_revision: done.revision,
                }),
            );
        }
        Ok(written.len())
    }
}

/// One workload to write: into the state of deployment `id` (entry and state as last
/// seen), which reports on `release`.
#[derive(Debug)]
pub(crate) struct WorkloadWrite {
    pub id: String,
    pub release: String,
    pub entry: Item,
    pub state: Item,
    pub workload: Workload,
}
