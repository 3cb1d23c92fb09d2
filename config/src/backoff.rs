//! The one backoff rule of the project: exponential, capped, jittered. Reconnect loops,
//! transaction re-runs, work-queue retries and helm retries all use [`delay`].

use std::time::Duration;

use rand::Rng;

/// `d` scaled by a random factor in [0.5, 1.0), so that many clients retrying after the
/// same failure do not retry in lock-step.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// The delay before the next try after `failures` failures in a row (1 for the first):
/// `initial × 2^(failures − 1)`, at most `max`, then [`jitter`]ed.
pub fn delay(initial: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    jitter(initial.saturating_mul(1u32 << doublings).min(max))
}

/// [`delay`] with its own failure count, for a retry loop.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Start at `initial`, never exceed `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            failures: 0,
        }
    }

    /// Count a failure and return how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        delay(self.initial, self.max, self.failures)
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_from_initial_and_stop_at_max() {
        let (initial, max) = (100 * MS, 1000 * MS);
        for (failures, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let d = delay(initial, max, failures);
            assert!(d >= full * MS / 2 && d < full * MS, "{failures}: {d:?}");
        }
        // Zero failures is treated as the first.
        assert!(delay(initial, max, 0) < initial);
    }

    #[test]
    fn a_backoff_resets_to_its_initial_delay() {
        let mut b = Backoff::new(10 * MS, Duration::from_secs(1));
        let first = b.next_delay();
        b.next_delay();
        let third = b.next_delay();
        assert!(first < 10 * MS && third >= 20 * MS);
        b.reset();
        assert!(b.next_delay() < 10 * MS);
    }
}
