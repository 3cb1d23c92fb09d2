//! A work queue keyed by block ID, as client-go's: a key queued several times is
//! processed once; a key is never processed by two workers at once (added while it
//! runs, it runs again afterwards); failed keys come back after a per-key exponential
//! backoff with jitter.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// First retry delay of a failing key.
const BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Inner {
    ready: VecDeque<String>,
    /// Waiting in `ready`, or to be re-queued when it finishes running.
    queued: HashSet<String>,
    running: HashSet<String>,
    failures: HashMap<String, u32>,
    closed: bool,
}

/// The queue. Share it in an [`Arc`].
#[derive(Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue a key (no effect if it is queued already).
    pub fn add(&self, key: String) {
        self.add_all([key]);
    }

    /// Queue several keys.
    pub fn add_all(&self, keys: impl IntoIterator<Item = String>) {
        let mut woken = 0;
        {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            for key in keys {
                if inner.queued.contains(&key) {
                    continue;
                }
                inner.queued.insert(key.clone());
                if !inner.running.contains(&key) {
                    inner.ready.push_back(key);
                    woken += 1;
                }
            }
        }
        for _ in 0..woken {
            self.notify.notify_one();
        }
    }

    /// The next key to process; `None` once the queue is closed. Call
    /// [`WorkQueue::done`] when finished with it.
    pub async fn next(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so neither `add` nor `close` can slip between.
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if inner.closed {
                    return None;
                }
                if let Some(key) = inner.ready.pop_front() {
                    inner.queued.remove(&key);
                    inner.running.insert(key.clone());
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Finished processing `key`; if it was added meanwhile it is ready again.
    pub fn done(&self, key: &str) {
        let requeued = {
            let mut inner = self.lock();
            inner.running.remove(key);
            if inner.queued.contains(key) && !inner.closed {
                inner.ready.push_back(key.to_string());
                true
            } else {
                false
            }
        };
        if requeued {
            self.notify.notify_one();
        }
    }

    /// `key` succeeded: its next failure starts the backoff afresh.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// `key` failed: queue it again after its backoff; returns the delay and how many
    /// times in a row it has failed.
    pub fn retry(self: &Arc<Self>, key: &str) -> (Duration, u32) {
        let failures = {
            let mut inner = self.lock();
            let n = inner.failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let delay = backoff(failures);
        let queue = Arc::clone(self);
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
        (delay, failures)
    }

    /// Stop handing out keys: [`WorkQueue::next`] returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// Keys waiting to be processed.
    pub fn len(&self) -> usize {
        self.lock().ready.len()
    }

    /// True when no key waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_INITIAL.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    sdp_config::backoff::jitter(exp.min(BACKOFF_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_queued_twice_is_processed_once() {
        let q = WorkQueue::new();
        q.add("a".into());
        q.add("b".into());
        q.add("a".into());
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await.as_deref(), Some("a"));
        assert_eq!(q.next().await.as_deref(), Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_running_runs_again_only_after_done() {
        let q = WorkQueue::new();
        q.add("a".into());
        let k = q.next().await.unwrap();
        q.add("a".into());
        q.add("a".into());
        assert!(q.is_empty(), "must not be handed out while it runs");
        q.done(&k);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await.as_deref(), Some("a"));
        q.done("a");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn waiting_workers_wake_for_new_keys_and_on_close() {
        let q = WorkQueue::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let q = Arc::clone(&q);
                tokio::spawn(async move { q.next().await })
            })
            .collect();
        tokio::task::yield_now().await;
        q.add_all(["x".to_string(), "y".to_string()]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.close();
        let mut got: Vec<Option<String>> = Vec::new();
        for w in waiters {
            got.push(w.await.unwrap());
        }
        got.sort();
        assert_eq!(got, vec![None, Some("x".into()), Some("y".into())]);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_keys_come_back_after_a_growing_backoff() {
        let q = WorkQueue::new();
        q.add("a".into());
        let k = q.next().await.unwrap();
        let (first, n) = q.retry(&k);
        assert_eq!(n, 1);
        q.done(&k);
        assert!(q.is_empty());
        assert!(first <= BACKOFF_INITIAL);
        tokio::time::sleep(first + Duration::from_millis(1)).await;
        assert_eq!(q.next().await.as_deref(), Some("a"));
        let (second, n) = q.retry("a");
        assert_eq!(n, 2);
        q.done("a");
        assert!(second >= BACKOFF_INITIAL && second <= BACKOFF_INITIAL * 2);
        q.forget("a");
        assert!(q.retry("a").0 <= BACKOFF_INITIAL);
    }

    #[test]
    fn backoff_is_capped() {
        assert!(backoff(100) <= BACKOFF_MAX);
        assert!(backoff(100) >= BACKOFF_MAX / 2);
    }
}
