//! Jittered exponential backoff shared by the reconnect loops.

use std::time::Duration;

use rand::Rng;

/// `d` scaled by a random factor in [0.5, 1.0), so that many clients retrying after the
/// same failure do not retry in lock-step.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// A growing delay: `initial`, doubling on each [`Backoff::next_delay`], capped at `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    current: Duration,
    max: Duration,
}

impl Backoff {
    /// Start at `initial`, never exceed `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            current: initial,
            max,
        }
    }

    /// The next delay (jittered), then double.
    pub fn next_delay(&mut self) -> Duration {
        let d = jitter(self.current);
        self.current = (self.current * 2).min(self.max);
        d
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}
