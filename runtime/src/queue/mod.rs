//! One keyed work queue for every daemon, in the manner of kube-runtime's scheduler and
//! runner: generic over the key; a key asked for several times runs once; a key never
//! runs twice at once (asked for while running, it runs again afterwards); retries at a
//! time, or after a failure with the project's backoff
//! ([`sdp_config::backoff::delay`]); a concurrency cap per lane; metrics for depth,
//! in-flight and latency.
//!
//! Lanes let one key move through phases with different caps without ever running in
//! two at once: the deployer looks at every release in a wide, cheap lane and hands the
//! few that need helm to a narrow one ([`Next::Then`]). New work and retries always
//! enter the first lane.

mod metrics;
mod state;

use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use metrics::QueueMetrics;
use metrics::{LaneLabel, RunLabels};
use state::{Finished, State};

/// A lane, by its index in the specs given to [`Queue::new`].
pub type Lane = usize;

/// A lane's name (a metrics label) and how many keys may run in it at once.
#[derive(Clone, Copy, Debug)]
pub struct LaneSpec {
    /// Name, e.g. `reconcile`, `helm`.
    pub name: &'static str,
    /// Most keys running in this lane at once (at least 1).
    pub concurrency: usize,
}

/// Backoff after failed runs: `initial` doubling to `max`, jittered.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

/// What a run says should come next for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the key is added again.
    Done,
    /// Run again at this time (a success: the failure count is reset).
    At(Instant),
    /// The run failed: run again after the key's next backoff delay.
    Backoff,
    /// Continue in this lane (e.g. the one that may call helm).
    Then(Lane),
}

/// A key handed out by [`Queue::next`]; give it back with [`Queue::finish`].
#[derive(Debug)]
pub struct Job<K> {
    /// The key.
    pub key: K,
    /// The lane it runs in.
    pub lane: Lane,
    started: Instant,
}

struct Shared<K> {
    state: Mutex<State<K>>,
    notify: Notify,
    lanes: Vec<LaneSpec>,
    metrics: QueueMetrics,
}

/// The queue. Clones share it.
pub struct Queue<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> std::fmt::Debug for Queue<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("lanes", &self.shared.lanes)
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Queue<K> {
    /// A queue with these lanes (at least one), retry backoff and metrics.
    pub fn new(lanes: &[LaneSpec], retry: Retry, metrics: QueueMetrics) -> Self {
        let lanes: Vec<LaneSpec> = if lanes.is_empty() {
            vec![LaneSpec {
                name: "work",
                concurrency: 1,
            }]
        } else {
            lanes.to_vec()
        };
        let caps: Vec<usize> = lanes.iter().map(|l| l.concurrency).collect();
        Queue {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(&caps, retry)),
                notify: Notify::new(),
                lanes,
                metrics,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Ask for `key` to run as soon as possible.
    pub fn add(&self, key: K) {
        self.add_all([key]);
    }

    /// Ask for several keys to run as soon as possible.
    pub fn add_all(&self, keys: impl IntoIterator<Item = K>) {
        let now = Instant::now();
        {
            let mut state = self.lock();
            for key in keys {
                state.add(key, now, now);
            }
            self.observe(&state);
        }
        self.shared.notify.notify_waiters();
    }

    /// Ask for `key` to run at `at` (an earlier request wins).
    pub fn add_at(&self, key: K, at: Instant) {
        {
            let mut state = self.lock();
            state.add(key, at, Instant::now());
            self.observe(&state);
        }
        self.shared.notify.notify_waiters();
    }

    /// The next key to run in `lane`, waiting for one (and for room under the lane's
    /// cap); `None` once the queue is closed.
    pub async fn next(&self, lane: Lane) -> Option<Job<K>> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so that no add, finish or close is missed.
            notified.as_mut().enable();
            let due = {
                let now = Instant::now();
                let mut state = self.lock();
                if state.is_closed() {
                    return None;
                }
                if let Some((key, waited)) = state.take(lane, now) {
                    self.observe(&state);
                    let name = self.lane_name(lane);
                    self.shared
                        .metrics
                        .wait
                        .get_or_create(&LaneLabel { lane: name })
                        .observe(waited.as_secs_f64());
                    return Some(Job {
                        key,
                        lane,
                        started: now,
                    });
                }
                state.next_due()
            };
            match due {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Give back a key [`Queue::next`] handed out. Returns the retry delay and the
    /// failure count when `next` was [`Next::Backoff`] (for logging).
    pub fn finish(&self, job: Job<K>, next: Next) -> Option<(Duration, u32)> {
        let now = Instant::now();
        let name = self.lane_name(job.lane);
        self.shared
            .metrics
            .work
            .get_or_create(&LaneLabel { lane: name })
            .observe(now.saturating_duration_since(job.started).as_secs_f64());
        let label = match next {
            Next::Done => "done",
            Next::At(_) => "retry",
            Next::Backoff => "backoff",
            Next::Then(_) => "handoff",
        };
        self.shared
            .metrics
            .runs
            .get_or_create(&RunLabels {
                lane: name,
                next: label,
            })
            .inc();
        let finished = {
            let mut state = self.lock();
            let f = state.finish(&job.key, job.lane, next, now);
            self.observe(&state);
            f
        };
        self.shared.notify.notify_waiters();
        match finished {
            Finished::Scheduled(delay, failures) if next == Next::Backoff => {
                Some((delay, failures))
            }
            _ => None,
        }
    }

    /// Stop: [`Queue::next`] returns `None` from now on; what waits is forgotten; what
    /// runs may finish.
    pub fn close(&self) {
        {
            let mut state = self.lock();
            state.close();
            self.observe(&state);
        }
        self.shared.notify.notify_waiters();
    }

    /// How many runs of `key` in a row have failed ([`Next::Backoff`]) so far: lets a
    /// run log the first failure of an outage loudly and the following ones quietly.
    pub fn failures(&self, key: &K) -> u32 {
        self.lock().failures(key)
    }

    /// Keys ready to run in `lane`.
    pub fn depth(&self, lane: Lane) -> usize {
        self.lock().ready_len(lane)
    }

    /// Keys running in `lane`.
    pub fn in_flight(&self, lane: Lane) -> usize {
        self.lock().running(lane)
    }

    fn lane_name(&self, lane: Lane) -> &'static str {
        self.shared.lanes.get(lane).map_or("?", |l| l.name)
    }

    fn observe(&self, state: &State<K>) {
        let m = &self.shared.metrics;
        for lane in 0..state.lanes() {
            let label = LaneLabel {
                lane: self.lane_name(lane),
            };
            m.depth
                .get_or_create(&label)
                .set(i64::try_from(state.ready_len(lane)).unwrap_or(i64::MAX));
            m.in_flight
                .get_or_create(&label)
                .set(i64::try_from(state.running(lane)).unwrap_or(i64::MAX));
        }
        m.scheduled
            .set(i64::try_from(state.scheduled()).unwrap_or(i64::MAX));
    }

    /// Run `handler` for every key of `lane`, up to the lane's cap at once, each in its
    /// own task, until the queue is closed and the runs in flight have finished. A run
    /// that panics counts as failed ([`Next::Backoff`]).
    pub async fn work<F, Fut>(&self, lane: Lane, mut handler: F)
    where
        F: FnMut(K) -> Fut,
        Fut: Future<Output = Next> + Send + 'static,
    {
        let mut tasks: JoinSet<Next> = JoinSet::new();
        let mut jobs = std::collections::HashMap::new();
        let mut open = true;
        while open || !tasks.is_empty() {
            tokio::select! {
                job = self.next(lane), if open => match job {
                    Some(job) => {
                        let id = tasks.spawn(handler(job.key.clone())).id();
                        jobs.insert(id, job);
                    }
                    None => open = false,
                },
                Some(joined) = tasks.join_next_with_id() => {
                    let (id, next) = match joined {
                        Ok((id, next)) => (id, next),
                        Err(e) => {
                            tracing::error!(error = %e, lane = self.lane_name(lane), "a run panicked; retrying its key later");
                            (e.id(), Next::Backoff)
                        }
                    };
                    if let Some(job) = jobs.remove(&id) {
                        self.finish(job, next);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn queue(lanes: &[LaneSpec]) -> Queue<String> {
        Queue::new(
            lanes,
            Retry {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            QueueMetrics::new(),
        )
    }

    const ONE: [LaneSpec; 1] = [LaneSpec {
        name: "work",
        concurrency: 2,
    }];

    #[tokio::test]
    async fn waiting_for_a_key_wakes_on_add_and_on_close() {
        let q = queue(&ONE);
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next(0).await.map(|j| j.key) })
        };
        tokio::task::yield_now().await;
        q.add("x".into());
        assert_eq!(waiter.await.ok().flatten().as_deref(), Some("x"));
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.next(0).await.map(|j| j.key) })
        };
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(waiter.await.ok().flatten(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_for_later_comes_at_its_time() {
        let q = queue(&ONE);
        let start = Instant::now();
        q.add_at("later".into(), start + Duration::from_secs(5));
        let job = q.next(0).await;
        assert_eq!(job.as_ref().map(|j| j.key.as_str()), Some("later"));
        assert!(Instant::now() >= start + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn workers_respect_the_cap_and_never_run_a_key_twice_at_once() {
        let q = queue(&ONE);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let worker = {
            let q = q.clone();
            let (running, most, runs) = (running.clone(), most.clone(), runs.clone());
            tokio::spawn(async move {
                q.work(0, move |_key: String| {
                    let (running, most, runs) = (running.clone(), most.clone(), runs.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        runs.fetch_add(1, Ordering::SeqCst);
                        Next::Done
                    }
                })
                .await;
            })
        };
        for i in 0..10 {
            q.add(format!("k{i}"));
            q.add(format!("k{i}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 10, "each key once");
        assert_eq!(most.load(Ordering::SeqCst), 2, "at most the cap");
        q.close();
        let _ = worker.await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_run_is_retried_with_backoff() {
        let q = queue(&ONE);
        let attempts = Arc::new(AtomicUsize::new(0));
        let worker = {
            let q = q.clone();
            let attempts = attempts.clone();
            tokio::spawn(async move {
                q.work(0, move |_key: String| {
                    let attempts = attempts.clone();
                    async move {
                        if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                            panic!("first run fails");
                        }
                        Next::Done
                    }
                })
                .await;
            })
        };
        q.add("p".into());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        q.close();
        let _ = worker.await;
    }

    #[tokio::test]
    async fn metrics_show_depth_and_in_flight() {
        let metrics = QueueMetrics::new();
        let mut registry = prometheus_client::registry::Registry::with_prefix("t");
        metrics.register(&mut registry);
        let q: Queue<String> = Queue::new(
            &ONE,
            Retry {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            metrics,
        );
        q.add_all(["a".to_string(), "b".to_string(), "c".to_string()]);
        let job = q.next(0).await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        assert!(text.contains("t_queue_depth{lane=\"work\"} 2"), "{text}");
        assert!(
            text.contains("t_queue_in_flight{lane=\"work\"} 1"),
            "{text}"
        );
        if let Some(job) = job {
            q.finish(job, Next::Done);
        }
        assert_eq!(q.in_flight(0), 0);
        assert_eq!(q.depth(0), 2);
    }
}
