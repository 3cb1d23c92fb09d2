//! Counting the attempts of one transaction and pacing re-runs after conflicts.

use std::time::Duration;

use sdp_config::backoff::Backoff;
use sdp_config::{Committed, MAX_ATTEMPTS, Txn};

/// Counts the attempts of one transaction and paces re-runs after conflicts.
pub(crate) struct Attempts {
    attempt: u32,
    backoff: Backoff,
}

impl Attempts {
    pub(crate) fn new() -> Self {
        Attempts {
            attempt: 1,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(100)),
        }
    }

    /// True on the first run of the body (the view may be assumed).
    pub(crate) fn first(&self) -> bool {
        self.attempt == 1
    }

    /// Commit; `Ok(None)` when it conflicted and the body must run again.
    ///
    /// # Errors
    /// Whatever the commit reports besides a conflict, or
    /// [`sdp_config::Error::RetriesExhausted`].
    pub(crate) async fn commit(&mut self, txn: Txn) -> sdp_config::Result<Option<Committed>> {
        match txn.commit().await {
            Ok(c) => Ok(Some(c)),
            Err(sdp_config::Error::Conflict) => {
                if self.attempt >= MAX_ATTEMPTS {
                    return Err(sdp_config::Error::RetriesExhausted {
                        attempts: self.attempt,
                    });
                }
                if self.attempt > 2 {
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
                self.attempt += 1;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
