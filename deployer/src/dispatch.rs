//! One leadership term: watch `/deploy/`, keep the view, and run reconciles per release
//! — never two at once for one release, at most `SDP_HELM_CONCURRENCY` with helm — with
//! retry timers and periodic resyncs against the list of owned releases.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sdp_config::{Config, Leadership, WatchEvent};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::decide::{Memory, Observation, OwnedRelease, Policy};
use crate::helm::{Helm, HelmError, ListQuery, ReleaseInfo, ReleaseStatus};
use crate::metrics::{Metrics, OpLabels};
use crate::reconcile::{Ctx, Outcome, Phase};
use crate::spec::SpecContext;
use crate::store::StateStore;
use crate::view::View;

/// Cheap (no helm) reconciles running at once.
const PREPARE_LIMIT: usize = 32;
/// Retry delay of a failed resync (capped by the resync interval).
const RESYNC_RETRY: Duration = Duration::from_secs(10);

/// What stays the same across leadership terms.
pub struct Base {
    /// Helm (cluster or render).
    pub helm: Arc<dyn Helm>,
    /// How entries are interpreted.
    pub spec: Arc<SpecContext>,
    /// Metrics and health.
    pub metrics: Arc<Metrics>,
    /// Retry limits.
    pub policy: Policy,
    /// First retry delay.
    pub backoff: Duration,
    /// Retry delay cap.
    pub backoff_max: Duration,
    /// Helm workers.
    pub concurrency: usize,
    /// Resync interval.
    pub resync: Duration,
    /// Helm repositories to add and refresh.
    pub repos: Vec<(String, String)>,
    /// Time running helm calls get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("target", &self.helm.target())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct KeyCtl {
    /// `None` while a task has it.
    memory: Option<Memory>,
    running: bool,
    queued: bool,
    /// Changed while running: look again when it ends.
    dirty: bool,
    retry_at: Option<Instant>,
    last_finished: Option<Instant>,
}

enum Done {
    Reconciled {
        release: String,
        phase: Phase,
        memory: Memory,
        outcome: Outcome,
    },
    Resynced {
        started: Instant,
        result: Result<Vec<ReleaseInfo>, HelmError>,
    },
}

struct Dispatcher {
    ctx: Arc<Ctx>,
    resync: Duration,
    repos: Arc<Vec<(String, String)>>,
    keys: HashMap<String, KeyCtl>,
    prepare_queue: VecDeque<String>,
    helm_queue: VecDeque<String>,
    prepare_running: usize,
    helm_running: usize,
    timers: BTreeSet<(Instant, String)>,
    tasks: JoinSet<Done>,
    running: HashMap<Id, (String, Phase)>,
    resync_running: bool,
    resynced_once: bool,
    next_resync: Instant,
}

impl Dispatcher {
    fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    fn mark(&mut self, release: String) {
        let k = self.keys.entry(release.clone()).or_default();
        if k.running {
            k.dirty = true;
            return;
        }
        if k.queued {
            return;
        }
        if let Some(at) = k.retry_at.take() {
            self.timers.remove(&(at, release.clone()));
        }
        k.queued = true;
        self.prepare_queue.push_back(release);
    }

    fn spawn(&mut self, release: String, phase: Phase) {
        let k = self.keys.entry(release.clone()).or_default();
        k.queued = false;
        k.running = true;
        k.dirty = false;
        let mut memory = k.memory.take().unwrap_or_default();
        let ctx = self.ctx.clone();
        let span = tracing::info_span!("reconcile", release = %release, phase = ?phase);
        let name = release.clone();
        let handle = self.tasks.spawn(
            async move {
                let outcome = ctx.reconcile(&name, phase, &mut memory).await;
                Done::Reconciled {
                    release: name,
                    phase,
                    memory,
                    outcome,
                }
            }
            .instrument(span),
        );
        match phase {
            Phase::Prepare => self.prepare_running += 1,
            Phase::Helm => self.helm_running += 1,
        }
        self.running.insert(handle.id(), (release, phase));
    }

    fn start_tasks(&mut self) {
        while self.prepare_running < PREPARE_LIMIT {
            let Some(release) = self.prepare_queue.pop_front() else {
                break;
            };
            self.spawn(release, Phase::Prepare);
        }
        while self.helm_running < self.ctx.concurrency {
            let Some(release) = self.helm_queue.pop_front() else {
                break;
            };
            self.spawn(release, Phase::Helm);
        }
        self.ctx
            .helm_load
            .store(self.helm_running + self.helm_queue.len(), Ordering::Relaxed);
        let depth = self.prepare_queue.len() + self.helm_queue.len();
        self.metrics()
            .queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    fn end_task(&mut self, release: &str, phase: Phase) -> Option<&mut KeyCtl> {
        match phase {
            Phase::Prepare => self.prepare_running = self.prepare_running.saturating_sub(1),
            Phase::Helm => self.helm_running = self.helm_running.saturating_sub(1),
        }
        let k = self.keys.get_mut(release)?;
        k.running = false;
        k.last_finished = Some(Instant::now());
        Some(k)
    }

    fn retry_at(&mut self, release: String, at: Instant) {
        if let Some(k) = self.keys.get_mut(&release) {
            if let Some(old) = k.retry_at.replace(at) {
                self.timers.remove(&(old, release.clone()));
            }
            self.timers.insert((at, release));
        }
    }

    fn reconciled(&mut self, release: String, phase: Phase, memory: Memory, outcome: Outcome) {
        let Some(k) = self.end_task(&release, phase) else {
            return;
        };
        k.memory = Some(memory);
        let dirty = std::mem::take(&mut k.dirty);
        match outcome {
            Outcome::NeedsHelm => {
                k.queued = true;
                self.helm_queue.push_back(release);
            }
            Outcome::Done | Outcome::RetryAt(_) if dirty => self.mark(release),
            Outcome::RetryAt(at) => self.retry_at(release, at),
            Outcome::Done => self.maybe_forget(&release),
        }
    }

    /// Drop what is remembered about a release that has nothing left.
    fn maybe_forget(&mut self, release: &str) {
        let empty = self
            .ctx
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot(release)
            == Default::default();
        let keep = self.keys.get(release).is_some_and(|k| {
            k.running
                || k.queued
                || k.retry_at.is_some()
                || matches!(
                    k.memory.as_ref().map(|m| &m.observed),
                    Some(Observation::Owned(_))
                )
        });
        if empty && !keep {
            self.keys.remove(release);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, release)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(k) = self.keys.get_mut(&release) {
                k.retry_at = None;
            }
            self.mark(release);
        }
    }

    fn spawn_resync(&mut self) {
        self.resync_running = true;
        let helm = self.ctx.helm.clone();
        let ns = self.ctx.spec.namespace.clone();
        let repos = self.repos.clone();
        let stop = self.ctx.hard_stop.clone();
        let metrics = self.ctx.metrics.clone();
        self.tasks.spawn(async move {
            let started = Instant::now();
            if !repos.is_empty() {
                let t = Instant::now();
                let r = helm.refresh_repos(&repos, &stop).await;
                metrics.operation("repo", if r.is_ok() { "ok" } else { "error" }, t.elapsed());
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot refresh the helm repositories");
                }
            }
            let t = Instant::now();
            let result = helm
                .list(
                    &ns,
                    ListQuery {
                        name: None,
                        owned_only: true,
                    },
                    &stop,
                )
                .await;
            metrics.operation(
                "list",
                if result.is_ok() { "ok" } else { "error" },
                t.elapsed(),
            );
            Done::Resynced { started, result }
        });
    }

    fn resynced(&mut self, started: Instant, result: Result<Vec<ReleaseInfo>, HelmError>) {
        self.resync_running = false;
        self.resynced_once = true;
        let list = match result {
            Ok(list) => list,
            Err(e) => {
                if !e.is_cancelled() {
                    tracing::warn!(error = %e, "resync: cannot list the releases; trying again soon");
                }
                self.metrics()
                    .resyncs
                    .get_or_create(&OpLabels {
                        kind: "resync".into(),
                        result: "error".into(),
                    })
                    .inc();
                self.next_resync = Instant::now() + RESYNC_RETRY.min(self.resync);
                return;
            }
        };
        self.metrics()
            .resyncs
            .get_or_create(&OpLabels {
                kind: "resync".into(),
                result: "ok".into(),
            })
            .inc();
        self.next_resync = Instant::now() + self.resync;
        let fresh = |k: &KeyCtl| !k.running && k.last_finished.is_none_or(|f| f < started);
        let listed: HashMap<String, ReleaseInfo> =
            list.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut to_mark = Vec::new();
        for (name, info) in &listed {
            let has_entry = self
                .ctx
                .view
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .has_entry(name);
            let k = self.keys.entry(name.clone()).or_default();
            if !fresh(k) {
                continue;
            }
            let memory = k.memory.get_or_insert_with(Memory::default);
            let keep = match &memory.observed {
                Observation::Owned(o) if o.revision == info.revision && o.status == info.status => {
                    Some(o.clone())
                }
                _ => None,
            };
            memory.observed = Observation::Owned(keep.unwrap_or(OwnedRelease {
                status: info.status.clone(),
                revision: info.revision,
                updated: None,
                digest: None,
                last_good: None,
                detailed: false,
            }));
            if !has_entry || info.status != ReleaseStatus::Deployed {
                to_mark.push(name.clone());
            }
        }
        let with_entries: Vec<String> = {
            let view = self.ctx.view.lock().unwrap_or_else(PoisonError::into_inner);
            view.releases()
                .into_iter()
                .filter(|r| view.has_entry(r) && !listed.contains_key(r))
                .collect()
        };
        for release in with_entries {
            let k = self.keys.entry(release.clone()).or_default();
            if !fresh(k) {
                continue;
            }
            k.memory.get_or_insert_with(Memory::default).observed = Observation::NotListed;
            to_mark.push(release);
        }
        if !to_mark.is_empty() {
            tracing::info!(
                releases = to_mark.len(),
                owned = listed.len(),
                "resync: releases to look at"
            );
        }
        for release in to_mark {
            self.mark(release);
        }
    }

    fn finished(&mut self, joined: Result<(Id, Done), tokio::task::JoinError>) {
        match joined {
            Ok((
                id,
                Done::Reconciled {
                    release,
                    phase,
                    memory,
                    outcome,
                },
            )) => {
                self.running.remove(&id);
                self.reconciled(release, phase, memory, outcome);
            }
            Ok((_, Done::Resynced { started, result })) => self.resynced(started, result),
            Err(e) => {
                // A panicking reconcile must not leave its release marked as running.
                if let Some((release, phase)) = self.running.remove(&e.id()) {
                    tracing::error!(%release, error = %e, "reconcile task failed");
                    if let Some(k) = self.end_task(&release, phase) {
                        k.memory = Some(Memory::default());
                    }
                    self.retry_at(release, Instant::now() + Duration::from_secs(5));
                } else {
                    tracing::error!(error = %e, "resync task failed");
                    self.resync_running = false;
                    self.resynced_once = true;
                    self.next_resync = Instant::now() + RESYNC_RETRY;
                }
            }
        }
    }
}

/// Lead until `shutdown` fires or leadership is lost: watch, dispatch, resync. On
/// shutdown, running helm calls get `shutdown_grace` to finish before they are stopped;
/// when leadership is lost they are stopped at once (another replica takes over).
pub async fn lead(db: &Config, leadership: &Leadership, base: &Base, shutdown: &CancellationToken) {
    let spec = base.spec.clone();
    let names = spec.clone();
    let view = Arc::new(Mutex::new(View::new(move |id| names.release_name(id))));
    let hard_stop = CancellationToken::new();
    let stop_new = CancellationToken::new();
    let ctx = Arc::new(Ctx {
        helm: base.helm.clone(),
        spec: spec.clone(),
        store: StateStore::new(db.clone(), leadership.guard(), view.clone(), spec),
        view,
        policy: base.policy,
        backoff: base.backoff,
        backoff_max: base.backoff_max,
        metrics: base.metrics.clone(),
        stop_new: stop_new.clone(),
        hard_stop: hard_stop.clone(),
        helm_load: Arc::new(AtomicUsize::new(0)),
        concurrency: base.concurrency,
    });
    let (mut entries, mut states) =
        match (db.watch("/deploy/", 0, None), db.watch("/deploy/", 1, None)) {
            (Ok(e), Ok(s)) => (e, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot watch /deploy/");
                return;
            }
        };
    let mut d = Dispatcher {
        ctx: ctx.clone(),
        resync: base.resync,
        repos: Arc::new(base.repos.clone()),
        keys: HashMap::new(),
        prepare_queue: VecDeque::new(),
        helm_queue: VecDeque::new(),
        prepare_running: 0,
        helm_running: 0,
        timers: BTreeSet::new(),
        tasks: JoinSet::new(),
        running: HashMap::new(),
        resync_running: false,
        resynced_once: false,
        next_resync: Instant::now(),
    };
    d.spawn_resync();
    let (mut entries_listed, mut states_listed) = (false, false);
    let mut lost = false;
    loop {
        let started = entries_listed && states_listed && d.resynced_once;
        if started {
            d.start_tasks();
            base.metrics.set_ready(true);
        }
        let next_timer = d.timers.first().map(|(at, _)| *at);
        tokio::select! {
            biased;
            () = leadership.lost() => {
                tracing::warn!("leadership lost: starting no more helm calls");
                lost = true;
                break;
            }
            () = shutdown.cancelled() => break,
            ev = entries.next() => {
                let Some(ev) = ev else { break };
                entries_listed |= matches!(ev, WatchEvent::Listed { .. });
                let (dirty, count) = {
                    let mut v = ctx.view.lock().unwrap_or_else(PoisonError::into_inner);
                    (v.apply_entries(ev), v.entry_count())
                };
                base.metrics.entries.set(i64::try_from(count).unwrap_or(i64::MAX));
                for release in dirty {
                    d.mark(release);
                }
            }
            ev = states.next() => {
                let Some(ev) = ev else { break };
                states_listed |= matches!(ev, WatchEvent::Listed { .. });
                let dirty = ctx.view.lock().unwrap_or_else(PoisonError::into_inner).apply_states(ev);
                for release in dirty {
                    d.mark(release);
                }
            }
            Some(joined) = d.tasks.join_next_with_id(), if !d.tasks.is_empty() => d.finished(joined),
            () = sleep_until(next_timer), if next_timer.is_some() && started => d.fire_timers(),
            () = tokio::time::sleep_until(d.next_resync.into()), if !d.resync_running && started => d.spawn_resync(),
        }
    }
    base.metrics.set_ready(false);
    base.metrics.queue_depth.set(0);
    stop_new.cancel();
    let mut tasks = std::mem::take(&mut d.tasks);
    if lost {
        // Running helm calls finish in the background (each within its timeout): killing
        // them would leave releases stuck in pending-*. Their state writes fail (no longer
        // leader); whoever leads next waits for them and adopts what they did.
        tokio::spawn(async move { while tasks.join_next().await.is_some() {} });
        return;
    }
    let running = tasks.len();
    if running > 0 {
        tracing::info!(
            running,
            grace_s = base.shutdown_grace.as_secs_f64(),
            "stopping: letting running work finish"
        );
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(base.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("grace period over: stopping the helm calls still running");
        }
    }
    hard_stop.cancel();
    while tasks.join_next().await.is_some() {}
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
