//! One term of leadership: watch `/deploy/`, keep the view, reconcile releases from the
//! work queue (never two reconciles of one release at once, at most
//! `SDP_HELM_CONCURRENCY` with helm), resync against the list of owned releases, and stop
//! cleanly: on shutdown running helm calls get the grace period; when leadership is lost
//! they finish in the background for at most one lease TTL, then are stopped (what they
//! leave `pending-*` the next leader recovers; their state writes fail, since they are
//! conditional on leadership).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sdp_config::{Config, DatabaseRecord, WatchEvent};
use sdp_runtime::election::Term;
use sdp_runtime::queue::{Lane, LaneSpec, Next, Queue, Retry};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::effects::Effects;
use crate::guard::{Listing, classify};
use crate::helm::{Helm, HelmError, ListQuery, ReleaseInfo};
use crate::memory::Memories;
use crate::metrics::Metrics;
use crate::metrics::OpLabels;
use crate::naming::DbFilter;
use crate::reconcile::{HELM, PREPARE, Reconciler};
use crate::resync;
use crate::setup::{Role, Setup};
use crate::store::StateStore;
use crate::view::View;
use crate::workload::{Dirty, Writer};

/// Releases looked at at once in the cheap lane (no helm there).
const PREPARE_LIMIT: usize = 32;
/// Retry delay of a failed resync (capped by the resync interval).
const RESYNC_RETRY: Duration = Duration::from_secs(10);
/// Delay of the next resync while the database identity is not known yet.
const RESYNC_SOON: Duration = Duration::from_millis(200);

/// Lead until `shutdown` fires or leadership is lost.
pub(crate) async fn lead(db: &Config, term: Term, setup: &Setup, shutdown: &CancellationToken) {
    setup.set_role(Role::Starting);
    let spec = setup.spec.clone();
    let names = spec.clone();
    let view = Arc::new(Mutex::new(View::new(move |id| names.release_name(id))));
    let hard_stop = CancellationToken::new();
    let stop_new = CancellationToken::new();
    let lanes = [
        LaneSpec {
            name: "prepare",
            concurrency: PREPARE_LIMIT,
        },
        LaneSpec {
            name: "helm",
            concurrency: setup.concurrency,
        },
    ];
    let retry = Retry {
        initial: setup.policy.backoff,
        max: setup.policy.backoff_max,
    };
    let queue: Queue<String> = Queue::new(&lanes, retry, setup.queue_metrics.clone());
    let memories = Arc::new(Memories::default());
    let reconciler = Arc::new(Reconciler {
        effects: Effects {
            helm: setup.helm.clone(),
            spec: spec.clone(),
            store: StateStore::new(db.clone(), term.guard.clone(), view.clone(), spec),
            metrics: setup.metrics.clone(),
            hard_stop: hard_stop.clone(),
            direct: setup.direct.clone(),
            guard: setup.guard.clone(),
            db: db.clone(),
        },
        view: view.clone(),
        policy: setup.policy,
        stop_new: stop_new.clone(),
        queue: queue.clone(),
        concurrency: setup.concurrency,
        term_lease: term.lease,
        term_started: Instant::now(),
    });
    let (mut entries, mut states) =
        match (db.watch("/deploy/", 0, None), db.watch("/deploy/", 1, None)) {
            (Ok(e), Ok(s)) => (e, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot watch /deploy/");
                return;
            }
        };
    let workload_dirty = Arc::new(Dirty::default());
    let workloads_stop = CancellationToken::new();
    let workloads = tokio::spawn(
        Writer {
            source: setup.workloads.clone(),
            namespace: setup.spec.namespace.clone(),
            limits: setup.workload_limits,
            view: view.clone(),
            store: reconciler.effects.store.clone(),
            metrics: setup.metrics.clone(),
            dirty: workload_dirty.clone(),
        }
        .run(workloads_stop.clone()),
    );
    setup.guard.reset();
    let mut resync_task = Some(spawn_resync(setup, db, hard_stop.clone()));
    let mut next_resync = Instant::now();
    let (mut entries_listed, mut states_listed, mut resynced_once) = (false, false, false);
    let mut workers: JoinSet<()> = JoinSet::new();
    let mut lost = false;
    let mut sweep = None;
    loop {
        let started = entries_listed && states_listed && resynced_once;
        if started && workers.is_empty() {
            for lane in [PREPARE, HELM] {
                workers.spawn(work(
                    queue.clone(),
                    lane,
                    reconciler.clone(),
                    memories.clone(),
                ));
            }
            setup.set_role(Role::Leading);
            let sweeper = crate::direct::Sweep {
                direct: setup.direct.clone(),
                spec: setup.spec.clone(),
                view: view.clone(),
                memories: memories.clone(),
                queue: queue.clone(),
                every: setup.resync,
            };
            if let Some(old) = sweep.replace(sweeper.spawn(stop_new.clone())) {
                old.abort();
            }
        }
        tokio::select! {
            biased;
            () = term.lost.cancelled() => {
                tracing::warn!("leadership lost: starting no more helm calls");
                lost = true;
                break;
            }
            () = shutdown.cancelled() => break,
            ev = entries.next() => {
                let Some(ev) = ev else { break };
                entries_listed |= matches!(ev, WatchEvent::Listed { .. });
                let (dirty, count, invalid) = {
                    let mut v = view.lock().unwrap_or_else(PoisonError::into_inner);
                    (v.apply_entries(ev), v.entry_count(), v.invalid_count())
                };
                setup.metrics.entries.set(i64::try_from(count).unwrap_or(i64::MAX));
                setup.metrics.invalid_keys.set(i64::try_from(invalid).unwrap_or(i64::MAX));
                workload_dirty.mark(dirty.iter().cloned());
                queue.add_all(dirty);
            }
            ev = states.next() => {
                let Some(ev) = ev else { break };
                states_listed |= matches!(ev, WatchEvent::Listed { .. });
                let (dirty, changed, invalid) = {
                    let mut v = view.lock().unwrap_or_else(PoisonError::into_inner);
                    let changed = v.state_releases(&ev);
                    (v.apply_states(ev), changed, v.invalid_count())
                };
                setup.metrics.invalid_keys.set(i64::try_from(invalid).unwrap_or(i64::MAX));
                // Every state change, this deployer's own included: a release that just
                // got its first state (INSTALLING) has a workload to report from then on.
                workload_dirty.mark(changed);
                queue.add_all(dirty);
            }
            joined = join(&mut resync_task), if resync_task.is_some() => {
                resync_task = None;
                resynced_once = true;
                next_resync = match joined {
                    Ok((started_at, Resynced::Listed(record, listing))) => {
                        let record = match record {
                            Some(r) => Some(r),
                            None if entries_listed => create_record(db, &view).await,
                            None => None,
                        };
                        match record {
                            Some(record) => {
                                count_resync(setup, "ok");
                                let (list, released) = guard_listing(setup, record, listing);
                                let report = {
                                    let v = view.lock().unwrap_or_else(PoisonError::into_inner);
                                    setup.guard.report(|r| v.has_entry(r))
                                };
                                if let Err(e) = setup.guard.publish(db, &term.guard, report).await {
                                    tracing::warn!(error = %e, "guard: cannot write its report at /deployer/guard");
                                }
                                let to_look_at = {
                                    let v = view.lock().unwrap_or_else(PoisonError::into_inner);
                                    resync::apply(list, started_at, &v, &memories)
                                };
                                if !to_look_at.is_empty() {
                                    tracing::info!(releases = to_look_at.len(), "resync: releases to look at");
                                }
                                queue.add_all(to_look_at);
                                queue.add_all(released);
                                Instant::now() + setup.resync
                            }
                            // The entries are not listed yet (the record is created
                            // knowing whether there are any), or etcd failed.
                            None => Instant::now() + RESYNC_SOON.min(setup.resync),
                        }
                    }
                    Ok((_, Resynced::Helm(e))) => {
                        if !e.is_cancelled() {
                            tracing::warn!(error = %e, "resync: cannot list the releases; trying again soon");
                        }
                        count_resync(setup, "error");
                        Instant::now() + RESYNC_RETRY.min(setup.resync)
                    }
                    Ok((_, Resynced::Db(e))) => {
                        tracing::warn!(error = %e, "resync: cannot read the database identity; trying again soon");
                        count_resync(setup, "error");
                        Instant::now() + RESYNC_RETRY.min(setup.resync)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "resync task failed");
                        Instant::now() + RESYNC_RETRY.min(setup.resync)
                    }
                };
            }
            () = tokio::time::sleep_until(next_resync.into()), if resync_task.is_none() && started => {
                resync_task = Some(spawn_resync(setup, db, hard_stop.clone()));
            }
        }
    }
    setup.set_role(Role::Standby);
    workloads_stop.cancel();
    workloads.abort();
    stop_new.cancel();
    queue.close();
    if let Some(task) = resync_task {
        task.abort();
    }
    if let Some(task) = sweep {
        task.abort();
    }
    if lost {
        // The workers finish what runs on their own, for one lease TTL at most: after
        // that they are stopped (SIGTERM, SIGKILL after the kill grace), so that the
        // next leader may recover what they leave `pending-*` within seconds
        // (`Policy::dead_term_wait`) instead of waiting for the helm timeout.
        let (stop, ttl) = (hard_stop.clone(), setup.lost_grace);
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            stop.cancel();
        });
        workers.detach_all();
        return;
    }
    let drain = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(setup.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!("grace period over: stopping the helm calls still running");
    }
    hard_stop.cancel();
    while workers.join_next().await.is_some() {}
}

/// Create the database record: a database holding deployment entries is the one the
/// unlabelled releases came from (they were installed before the guard existed).
async fn create_record(db: &Config, view: &Mutex<View>) -> Option<DatabaseRecord> {
    let has_entries = view
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry_count()
        > 0;
    match db.database_record_or_create(has_entries).await {
        Ok(record) => {
            tracing::info!(database = %record.id, unlabelled_are_ours = record.unlabelled_are_ours, "guard: this configuration database has an identity");
            Some(record)
        }
        Err(e) => {
            tracing::warn!(error = %e, "guard: cannot create the database identity");
            None
        }
    }
}

/// Let the guard sort the listing: this database's releases (for the resync) and the
/// releases that need a look because the guard let go of them.
fn guard_listing(
    setup: &Setup,
    record: DatabaseRecord,
    listing: Listing,
) -> (Vec<ReleaseInfo>, Vec<String>) {
    let classified = classify(listing, &record);
    let released = setup.guard.update(record, &classified);
    setup
        .metrics
        .guard_releases
        .set(i64::try_from(classified.held.len()).unwrap_or(i64::MAX));
    (classified.ours, released)
}

/// The task's result; never resolves without a task.
async fn join<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

fn count_resync(setup: &Setup, result: &str) {
    setup
        .metrics
        .resyncs
        .get_or_create(&OpLabels {
            kind: "resync".into(),
            result: result.into(),
        })
        .inc();
}

/// Reconcile the releases of `lane`, each with its memory, until the queue closes.
async fn work(
    queue: Queue<String>,
    lane: Lane,
    reconciler: Arc<Reconciler>,
    memories: Arc<Memories>,
) {
    queue
        .work(lane, move |release: String| {
            let reconciler = reconciler.clone();
            let memories = memories.clone();
            let span = tracing::info_span!("reconcile", release = %release, lane);
            tracing::Instrument::instrument(
                async move {
                    let mut memory = memories.take(&release);
                    let next = reconciler.reconcile(&release, lane, &mut memory).await;
                    let idle = next == Next::Done
                        && reconciler
                            .view
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .snapshot(&release)
                            == Default::default();
                    memories.put(&release, memory, idle);
                    next
                },
                span,
            )
        })
        .await;
}

/// What a resync task brings back.
enum Resynced {
    /// The database record (if there is one yet) and the listings.
    Listed(Option<DatabaseRecord>, Listing),
    /// helm failed.
    Helm(HelmError),
    /// The database record could not be read.
    Db(sdp_config::Error),
}

/// Read the database record and list this prefix's releases (refreshing the helm
/// repositories first): all of them, those labelled with this database, and, when
/// those two differ, the unlabelled ones.
fn spawn_resync(
    setup: &Setup,
    db: &Config,
    stop: CancellationToken,
) -> JoinHandle<(Instant, Resynced)> {
    let helm = setup.helm.clone();
    let ns = setup.spec.namespace.clone();
    let repos = setup.repos.clone();
    let metrics = setup.metrics.clone();
    let db = db.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        if !repos.is_empty() {
            let t = Instant::now();
            let r = helm.refresh_repos(&repos, &stop).await;
            metrics.operation("repo", if r.is_ok() { "ok" } else { "error" }, t.elapsed());
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot refresh the helm repositories");
            }
        }
        let record = match db.database_record().await {
            Ok(r) => r.map(|(record, _)| record),
            Err(e) => return (started, Resynced::Db(e)),
        };
        let list = |database| list_owned(&*helm, &ns, database, &metrics, &stop);
        let all = match list(DbFilter::Any).await {
            Ok(all) => all,
            Err(e) => return (started, Resynced::Helm(e)),
        };
        let labelled_here = match &record {
            Some(r) => match list(DbFilter::Is(&r.id)).await {
                Ok(l) => names(l),
                Err(e) => return (started, Resynced::Helm(e)),
            },
            None => HashSet::new(),
        };
        let unlabelled = if all.len() > labelled_here.len() {
            match list(DbFilter::Unlabelled).await {
                Ok(l) => names(l),
                Err(e) => return (started, Resynced::Helm(e)),
            }
        } else {
            HashSet::new()
        };
        let listing = Listing {
            all,
            labelled_here,
            unlabelled,
        };
        (started, Resynced::Listed(record, listing))
    })
}

fn names(list: Vec<ReleaseInfo>) -> HashSet<String> {
    list.into_iter().map(|r| r.name).collect()
}

/// `helm list` of this prefix's releases with a database filter, timed.
async fn list_owned(
    helm: &dyn Helm,
    ns: &str,
    database: DbFilter<'_>,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<Vec<ReleaseInfo>, HelmError> {
    let t = Instant::now();
    let query = ListQuery {
        name: None,
        owned_only: true,
        database,
    };
    let result = helm.list(ns, query, stop).await;
    metrics.operation(
        "list",
        if result.is_ok() { "ok" } else { "error" },
        t.elapsed(),
    );
    result
}
