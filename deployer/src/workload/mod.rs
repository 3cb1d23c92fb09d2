//! What became of each release in Kubernetes: the deployer follows the pods of the
//! releases it owns (those labelled `app.kubernetes.io/instance: <release>`, which Helm's
//! conventions and every bundled chart set) and writes their summary, the `workload`
//! object of `/deploy/<id>/state` (docs/states.md).
//!
//! Writes are coalesced: pod and state changes mark a release ([`Dirty`]); the writer
//! wakes, lets a burst settle for [`SETTLE`], then for each marked release compares the
//! summary with what the state already says and writes only a difference (conditional on
//! the state's revision, keeping every other field, only while leading). On the render
//! target nothing runs and the workload says so (`NONE`).

mod index;
mod pod;
mod summary;
mod watch;

pub(crate) use watch::client;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sdp_config::entity::{DeploymentState, DeploymentStatus};
use tokio_util::sync::CancellationToken;

pub(crate) use index::Dirty;
use index::PodIndex;
use summary::summarize;
pub(crate) use summary::{Limits, Workload, same};

/// The field of `/deploy/<id>/state` this module owns.
pub(crate) const WORKLOAD: &str = "workload";

use crate::metrics::Metrics;
use crate::store::{StateStore, WorkloadWrite};
use crate::view::{Item, View};

/// How long a burst of changes may settle before the writer looks.
const SETTLE: Duration = Duration::from_millis(10);
/// Workloads written in one transaction.
const BATCH: usize = 32;
/// Batches in flight at once.
const BATCHES_AT_ONCE: usize = 4;
/// Seconds before trying a failed write again.
const DB_RETRY_SECS: i64 = 2;

/// Where workloads come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// Pods of a real cluster, through this kubeconfig (or the environment's).
    Cluster { kubeconfig: Option<PathBuf> },
    /// The render target: manifests in this directory, nothing runs.
    Render { dir: String },
}

/// What the workload writer of one leadership term needs.
pub(crate) struct Writer {
    pub source: Source,
    pub namespace: String,
    pub limits: Limits,
    pub view: Arc<Mutex<View>>,
    pub store: StateStore,
    pub metrics: Arc<Metrics>,
    pub dirty: Arc<Dirty>,
}

/// The deployment whose state reports on `release`, with its entry, state and parsed
/// state: only a state that says this deployer installed (or is installing) the release.
fn reporting(view: &View, release: &str) -> Option<(String, Item, Item, DeploymentState)> {
    let snap = view.snapshot(release);
    snap.entries.iter().find_map(|(id, entry)| {
        let item = snap.state(id)?;
        let state = DeploymentState::parse(&item.value).ok()?;
        let ours = state.release.as_deref() == Some(release)
            && (matches!(
                state.known_status(),
                Some(
                    DeploymentStatus::Deployed
                        | DeploymentStatus::Installing
                        | DeploymentStatus::Upgrading
                        | DeploymentStatus::Uninstalling
                )
            ) || state.revision.is_some());
        ours.then(|| (id.clone(), entry.clone(), item.clone(), state))
    })
}

impl Writer {
    /// Write workloads until `stop` fires.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let index = Arc::new(Mutex::new(PodIndex::default()));
        let follower = match &self.source {
            Source::Render { .. } => None,
            Source::Cluster { kubeconfig } => {
                let Some(client) = watch::client_retrying(kubeconfig.as_deref(), &stop).await
                else {
                    return;
                };
                Some(tokio::spawn(watch::follow(
                    client,
                    self.namespace.clone(),
                    index.clone(),
                    self.dirty.clone(),
                    self.metrics.clone(),
                    stop.clone(),
                )))
            }
        };
        let mut rechecks: HashMap<String, i64> = HashMap::new();
        loop {
            let next = rechecks.values().min().copied();
            let sleep = next.map_or(Duration::from_secs(3600), |at| {
                let secs = at.saturating_sub(Utc::now().timestamp()).max(0);
                Duration::from_secs(u64::try_from(secs).unwrap_or(0))
            });
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.dirty.wait() => {}
                () = tokio::time::sleep(sleep), if next.is_some() => {
                    let now = Utc::now().timestamp();
                    let due: Vec<String> = rechecks.iter().filter(|(_, at)| **at <= now).map(|(r, _)| r.clone()).collect();
                    for r in &due {
                        rechecks.remove(r);
                    }
                    self.dirty.mark(due);
                }
            }
            tokio::time::sleep(SETTLE).await;
            let listed = matches!(self.source, Source::Render { .. })
                || index
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .listed();
            if !listed {
                // Nothing is known until the first listing: keep the marks for it.
                continue;
            }
            let releases = self.dirty.take();
            let done = self.write_all(&index, releases).await;
            for (release, recheck) in done {
                match recheck {
                    Some(at) => rechecks.insert(release, at),
                    None => rechecks.remove(&release),
                };
            }
        }
        if let Some(f) = follower {
            f.abort();
        }
    }

    /// Look at each release, writing what changed (in batches of [`BATCH`], one
    /// transaction each); returns when to look at each again.
    async fn write_all(
        &self,
        index: &Mutex<PodIndex>,
        releases: BTreeSet<String>,
    ) -> Vec<(String, Option<i64>)> {
        let now = Utc::now().timestamp();
        let mut done = Vec::new();
        let mut writes = Vec::new();
        for release in releases {
            match self.plan(index, &release, now) {
                Step::Idle(recheck) => done.push((release, recheck)),
                Step::Write(w) => writes.push(w),
            }
        }
        let mut batches = Vec::new();
        while !writes.is_empty() {
            let rest = writes.split_off(writes.len().min(BATCH));
            batches.push(std::mem::replace(&mut writes, rest));
        }
        let results: Vec<Vec<(String, Option<i64>)>> = futures::stream::iter(batches)
            .map(|batch| self.write_batch(batch))
            .buffer_unordered(BATCHES_AT_ONCE)
            .collect()
            .await;
        done.extend(results.into_iter().flatten());
        done
    }

    /// Write one batch in one transaction, or one by one when that conflicts.
    async fn write_batch(&self, batch: Vec<WorkloadWrite>) -> Vec<(String, Option<i64>)> {
        match self.store.report_workloads(&batch).await {
            Ok(n) => {
                self.metrics.workload_writes.inc_by(n as u64);
                batch
                    .into_iter()
                    .map(|w| (w.release, w.workload.recheck_at))
                    .collect()
            }
            Err(sdp_config::Error::Conflict) => {
                let mut out = Vec::with_capacity(batch.len());
                for w in batch {
                    out.push(self.write_one(w).await);
                }
                out
            }
            Err(e) => {
                tracing::warn!(error = %e, deployments = batch.len(), "cannot write workloads; trying again");
                let again = Utc::now().timestamp() + DB_RETRY_SECS;
                batch
                    .into_iter()
                    .map(|w| (w.release, Some(again)))
                    .collect()
            }
        }
    }

    /// Write one workload; returns when to look at its release again.
    async fn write_one(&self, w: WorkloadWrite) -> (String, Option<i64>) {
        match self
            .store
            .report_workload(&w.id, &w.release, &w.entry, &w.state, &w.workload)
            .await
        {
            Ok(written) => {
                if written {
                    self.metrics.workload_writes.inc();
                }
                (w.release, w.workload.recheck_at)
            }
            Err(e) => {
                tracing::warn!(deploy_id = %w.id, error = %e, "cannot write the workload; trying again");
                (w.release, Some(Utc::now().timestamp() + DB_RETRY_SECS))
            }
        }
    }

    /// What to do for `release` now.
    fn plan(&self, index: &Mutex<PodIndex>, release: &str, now: i64) -> Step {
        let found = reporting(
            &self.view.lock().unwrap_or_else(PoisonError::into_inner),
            release,
        );
        let Some((id, entry, item, state)) = found else {
            return Step::Idle(None);
        };
        let removing = state.known_status() == Some(DeploymentStatus::Uninstalling);
        let workload = match &self.source {
            Source::Render { dir } => Workload::nothing_runs(dir),
            Source::Cluster { .. } => {
                let index = index.lock().unwrap_or_else(PoisonError::into_inner);
                summarize(&index.pods(release), removing, &self.limits, now)
            }
        };
        if same(state.extra.get(WORKLOAD), &workload) {
            return Step::Idle(workload.recheck_at);
        }
        Step::Write(WorkloadWrite {
            id,
            release: release.to_string(),
            entry,
            state: item,
            workload,
        })
    }
}

/// A step for one release.
enum Step {
    /// Nothing to write; look again at this time, if any.
    Idle(Option<i64>),
    /// Write a workload.
    Write(WorkloadWrite),
}
