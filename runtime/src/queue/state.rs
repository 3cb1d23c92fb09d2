//! The queue's bookkeeping, without I/O or clocks (time comes in as an argument), so
//! that every rule is unit-tested.
//!
//! A key is in at most one of three places: scheduled (a time to become ready), ready
//! (in one lane's FIFO) or running (in one lane). That is what makes "never twice at
//! once" and de-duplication hold.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use super::{Lane, Next, Retry};

#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Becomes ready in the first lane at `at` (the timer with this `seq`).
    Scheduled { at: Instant, seq: u64 },
    /// Waiting in a lane's FIFO since `since`.
    Ready { since: Instant },
    /// Running; `again` is the earliest time it was asked for meanwhile.
    Running { again: Option<Instant> },
}

#[derive(Debug)]
struct Entry {
    slot: Slot,
    /// Failed runs in a row ([`Next::Backoff`]).
    failures: u32,
}

struct Timer<K> {
    at: Instant,
    seq: u64,
    key: K,
}

// A min-heap on (at, seq): BinaryHeap is a max-heap, so compare the other way round.
impl<K> Ord for Timer<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl<K> PartialOrd for Timer<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> PartialEq for Timer<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<K> Eq for Timer<K> {}

struct LaneState<K> {
    ready: VecDeque<K>,
    running: usize,
    cap: usize,
}

/// What [`State::finish`] did with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    /// Nothing more to do: forgotten.
    Forgotten,
    /// Ready again (asked for while running, or due at once).
    Ready,
    /// Scheduled in `Duration`; `failures` failed runs in a row so far.
    Scheduled(Duration, u32),
    /// Handed to another lane.
    HandedOff,
}

pub(crate) struct State<K> {
    entries: HashMap<K, Entry>,
    lanes: Vec<LaneState<K>>,
    timers: BinaryHeap<Timer<K>>,
    seq: u64,
    scheduled: usize,
    closed: bool,
    retry: Retry,
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Lanes with these concurrency caps (at least 1 each).
    pub(crate) fn new(caps: &[usize], retry: Retry) -> Self {
        State {
            entries: HashMap::new(),
            lanes: caps
                .iter()
                .map(|cap| LaneState {
                    ready: VecDeque::new(),
                    running: 0,
                    cap: (*cap).max(1),
                })
                .collect(),
            timers: BinaryHeap::new(),
            seq: 0,
            scheduled: 0,
            closed: false,
            retry,
        }
    }

    fn schedule(&mut self, key: K, at: Instant) -> Slot {
        self.seq += 1;
        self.scheduled += 1;
        self.timers.push(Timer {
            at,
            seq: self.seq,
            key,
        });
        Slot::Scheduled { at, seq: self.seq }
    }

    fn make_ready(&mut self, key: K, lane: Lane, now: Instant) -> Slot {
        self.lanes[lane].ready.push_back(key);
        Slot::Ready { since: now }
    }

    /// Ask for `key` to run in the first lane at `at` (now or earlier: at once). The
    /// earliest request wins; a key already ready stays where it is; a running key runs
    /// again after it finishes.
    pub(crate) fn add(&mut self, key: K, at: Instant, now: Instant) {
        if self.closed {
            return;
        }
        let slot = match self.entries.get_mut(&key) {
            None => None,
            Some(Entry {
                slot: Slot::Ready { .. },
                ..
            }) => return,
            Some(Entry {
                slot: Slot::Running { again, .. },
                ..
            }) => {
                *again = Some(again.map_or(at, |a| a.min(at)));
                return;
            }
            Some(Entry {
                slot: Slot::Scheduled { at: old, .. },
                ..
            }) if *old <= at => return,
            Some(Entry {
                slot: Slot::Scheduled { .. },
                ..
            }) => {
                // Its old timer becomes stale (seq no longer matches).
                self.scheduled -= 1;
                Some(())
            }
        };
        let new = if at <= now {
            self.make_ready(key.clone(), 0, now)
        } else {
            self.schedule(key.clone(), at)
        };
        match slot {
            Some(()) => {
                if let Some(e) = self.entries.get_mut(&key) {
                    e.slot = new;
                }
            }
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        slot: new,
                        failures: 0,
                    },
                );
            }
        }
    }

    /// Move keys whose time has come to the first lane.
    pub(crate) fn promote_due(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|t| t.at <= now) {
            let Some(timer) = self.timers.pop() else {
                break;
            };
            let current = matches!(
                self.entries.get(&timer.key).map(|e| e.slot),
                Some(Slot::Scheduled { seq, .. }) if seq == timer.seq
            );
            if current {
                self.scheduled -= 1;
                let slot = self.make_ready(timer.key.clone(), 0, now);
                if let Some(e) = self.entries.get_mut(&timer.key) {
                    e.slot = slot;
                }
            }
        }
    }

    /// The next key of `lane`, if the lane is below its cap; with how long it waited.
    pub(crate) fn take(&mut self, lane: Lane, now: Instant) -> Option<(K, Duration)> {
        if self.closed {
            return None;
        }
        self.promote_due(now);
        let l = &mut self.lanes[lane];
        if l.running >= l.cap {
            return None;
        }
        let key = l.ready.pop_front()?;
        l.running += 1;
        let entry = self.entries.get_mut(&key)?;
        let waited = match entry.slot {
            Slot::Ready { since, .. } => now.saturating_duration_since(since),
            _ => Duration::ZERO,
        };
        entry.slot = Slot::Running { again: None };
        Some((key, waited))
    }

    /// `key`, taken from `lane`, has run; `next` says what comes next.
    pub(crate) fn finish(&mut self, key: &K, lane: Lane, next: Next, now: Instant) -> Finished {
        let l = &mut self.lanes[lane];
        l.running = l.running.saturating_sub(1);
        let Some(entry) = self.entries.get_mut(key) else {
            return Finished::Forgotten;
        };
        let again = match entry.slot {
            Slot::Running { again, .. } => again,
            _ => None,
        };
        let (target, delay_info) = match next {
            Next::Done => {
                entry.failures = 0;
                (again, None)
            }
            Next::At(at) => {
                entry.failures = 0;
                (Some(again.map_or(at, |a| a.min(at))), None)
            }
            Next::Backoff => {
                entry.failures = entry.failures.saturating_add(1);
                let delay =
                    sdp_config::backoff::delay(self.retry.initial, self.retry.max, entry.failures);
                let at = now + delay;
                (
                    Some(again.map_or(at, |a| a.min(at))),
                    Some((delay, entry.failures)),
                )
            }
            Next::Then(to) if !self.closed && to < self.lanes.len() => {
                let slot = self.make_ready(key.clone(), to, now);
                if let Some(e) = self.entries.get_mut(key) {
                    e.slot = slot;
                }
                return Finished::HandedOff;
            }
            Next::Then(_) => (None, None),
        };
        match target {
            _ if self.closed => {
                self.entries.remove(key);
                Finished::Forgotten
            }
            None => {
                self.entries.remove(key);
                Finished::Forgotten
            }
            Some(at) if at <= now => {
                let slot = self.make_ready(key.clone(), 0, now);
                if let Some(e) = self.entries.get_mut(key) {
                    e.slot = slot;
                }
                Finished::Ready
            }
            Some(at) => {
                let slot = self.schedule(key.clone(), at);
                let failures = delay_info.map_or(0, |(_, f)| f);
                if let Some(e) = self.entries.get_mut(key) {
                    e.slot = slot;
                }
                Finished::Scheduled(at - now, failures)
            }
        }
    }

    /// Stop handing out keys and forget everything not running.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.timers.clear();
        self.scheduled = 0;
        for lane in &mut self.lanes {
            lane.ready.clear();
        }
        self.entries
            .retain(|_, e| matches!(e.slot, Slot::Running { .. }));
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// When the earliest scheduled key becomes due (stale timers included: waking up
    /// early is harmless).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|t| t.at)
    }

    /// Failed runs of `key` in a row so far.
    pub(crate) fn failures(&self, key: &K) -> u32 {
        self.entries.get(key).map_or(0, |e| e.failures)
    }

    pub(crate) fn ready_len(&self, lane: Lane) -> usize {
        self.lanes[lane].ready.len()
    }

    pub(crate) fn running(&self, lane: Lane) -> usize {
        self.lanes[lane].running
    }

    pub(crate) fn scheduled(&self) -> usize {
        self.scheduled
    }

    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn state(caps: &[usize]) -> State<&'static str> {
        State::new(
            caps,
            Retry {
                initial: 100 * MS,
                max: 1000 * MS,
            },
        )
    }

    #[test]
    fn a_key_added_twice_runs_once() {
        let now = Instant::now();
        let mut s = state(&[4]);
        s.add("a", now, now);
        s.add("b", now, now);
        s.add("a", now, now);
        assert_eq!(s.ready_len(0), 2);
        assert_eq!(s.take(0, now).map(|(k, _)| k), Some("a"));
        assert_eq!(s.take(0, now).map(|(k, _)| k), Some("b"));
        assert_eq!(s.take(0, now), None);
    }

    #[test]
    fn a_running_key_is_not_handed_out_again_and_reruns_after_it_finishes() {
        let now = Instant::now();
        let mut s = state(&[4]);
        s.add("a", now, now);
        let (k, _) = s.take(0, now).unwrap_or(("?", Duration::ZERO));
        s.add("a", now, now);
        s.add("a", now, now);
        assert_eq!(s.take(0, now), None, "must not run twice at once");
        assert_eq!(s.finish(&k, 0, Next::Done, now), Finished::Ready);
        assert_eq!(s.take(0, now).map(|(k, _)| k), Some("a"));
        assert_eq!(s.finish(&"a", 0, Next::Done, now), Finished::Forgotten);
        assert_eq!(s.take(0, now), None);
    }

    #[test]
    fn the_cap_of_a_lane_bounds_what_runs_in_it() {
        let now = Instant::now();
        let mut s = state(&[2]);
        for k in ["a", "b", "c"] {
            s.add(k, now, now);
        }
        assert!(s.take(0, now).is_some());
        assert!(s.take(0, now).is_some());
        assert_eq!(s.take(0, now), None);
        assert_eq!(s.running(0), 2);
        s.finish(&"a", 0, Next::Done, now);
        assert_eq!(s.take(0, now).map(|(k, _)| k), Some("c"));
    }

    #[test]
    fn the_earliest_requested_time_wins() {
        let now = Instant::now();
        let mut s = state(&[1]);
        s.add("a", now + 500 * MS, now);
        s.add("a", now + 900 * MS, now);
        assert_eq!(s.scheduled(), 1);
        assert_eq!(s.next_due(), Some(now + 500 * MS));
        s.add("a", now + 200 * MS, now);
        assert_eq!(s.scheduled(), 1);
        assert_eq!(s.take(0, now + 199 * MS), None);
        assert_eq!(s.take(0, now + 200 * MS).map(|(k, _)| k), Some("a"));
        // The stale timers at 500 and 900 ms do nothing.
        s.finish(&"a", 0, Next::Done, now + 201 * MS);
        assert_eq!(s.take(0, now + 2000 * MS), None);
        assert_eq!(s.scheduled(), 0);
    }

    #[test]
    fn a_scheduled_key_added_now_is_ready_at_once() {
        let now = Instant::now();
        let mut s = state(&[1]);
        s.add("a", now + 500 * MS, now);
        s.add("a", now, now);
        assert_eq!(s.scheduled(), 0);
        assert_eq!(s.take(0, now).map(|(k, _)| k), Some("a"));
    }

    #[test]
    fn failures_back_off_exponentially_and_a_success_resets_them() {
        let now = Instant::now();
        let mut s = state(&[1]);
        s.add("a", now, now);
        let mut t = now;
        let mut delays = Vec::new();
        for _ in 0..5 {
            let (k, _) = s.take(0, t).unwrap_or(("?", Duration::ZERO));
            match s.finish(&k, 0, Next::Backoff, t) {
                Finished::Scheduled(d, _) => {
                    delays.push(d);
                    t += d;
                }
                other => panic!("expected a retry, got {other:?}"),
            }
        }
        // 100, 200, 400, 800, 1000 ms, each jittered into [½, 1).
        for (d, full) in delays.iter().zip([100, 200, 400, 800, 1000]) {
            assert!(*d >= full * MS / 2 && *d < full * MS, "{d:?} for {full}");
        }
        let (k, _) = s.take(0, t).unwrap_or(("?", Duration::ZERO));
        s.finish(&k, 0, Next::At(t), t);
        let (k, _) = s.take(0, t).unwrap_or(("?", Duration::ZERO));
        match s.finish(&k, 0, Next::Backoff, t) {
            Finished::Scheduled(d, failures) => {
                assert_eq!(failures, 1);
                assert!(d < 100 * MS);
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn a_change_while_running_beats_a_later_retry() {
        let now = Instant::now();
        let mut s = state(&[1]);
        s.add("a", now, now);
        s.take(0, now);
        s.add("a", now, now);
        assert_eq!(s.finish(&"a", 0, Next::Backoff, now), Finished::Ready);
        assert_eq!(s.take(0, now).map(|(k, _)| k), Some("a"));
    }

    #[test]
    fn a_handed_off_key_runs_in_the_other_lane_and_still_only_once() {
        let now = Instant::now();
        let mut s = state(&[8, 1]);
        s.add("a", now, now);
        s.add("b", now, now);
        s.take(0, now);
        s.take(0, now);
        assert_eq!(s.finish(&"a", 0, Next::Then(1), now), Finished::HandedOff);
        assert_eq!(s.finish(&"b", 0, Next::Then(1), now), Finished::HandedOff);
        // Ready in lane 1: a change does not also queue it in lane 0.
        s.add("a", now, now);
        assert_eq!(s.take(0, now), None);
        assert_eq!(s.take(1, now).map(|(k, _)| k), Some("a"));
        assert_eq!(s.take(1, now), None, "lane 1 has room for one");
        s.add("a", now, now);
        assert_eq!(s.take(0, now), None, "a runs in lane 1");
        assert_eq!(s.finish(&"a", 1, Next::Done, now), Finished::Ready);
        assert_eq!(s.take(0, now).map(|(k, _)| k), Some("a"));
        assert_eq!(s.take(1, now).map(|(k, _)| k), Some("b"));
    }

    #[test]
    fn closing_forgets_what_waits_and_hands_out_nothing() {
        let now = Instant::now();
        let mut s = state(&[2]);
        s.add("a", now, now);
        s.add("b", now, now);
        s.add("c", now + MS, now);
        s.take(0, now);
        s.close();
        assert_eq!(s.take(0, now + 10 * MS), None);
        assert_eq!(s.ready_len(0), 0);
        assert_eq!(s.scheduled(), 0);
        s.add("d", now, now);
        assert_eq!(s.finish(&"a", 0, Next::Backoff, now), Finished::Forgotten);
        assert!(s.is_closed());
    }
}
