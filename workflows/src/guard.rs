//! Transactions conditional on ownership, and their retry loop.
//!
//! Every write a workflow makes reads the owner key and the block in the same
//! transaction as the write: the commit then compares both against the revisions read,
//! so a write never lands after the block was deleted or claimed by someone else. On
//! the first attempt the values come from the monitor's view ([`sdp_config::Txn::assume`],
//! no round trip); a stale view costs one conflict, after which they are read.

use std::time::Duration;

use sdp_config::backoff::Backoff;
use sdp_config::entity::ProcessingBlock;
use sdp_config::{Committed, MAX_ATTEMPTS, Txn};

use crate::error::{Error, Result};
use crate::events::Ended;
use crate::monitor::{is_owner_value, one_line};
use crate::workflow::Workflow;

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

impl Workflow {
    /// Make `txn` conditional on this workflow owning the block: the owner key holds our
    /// value and the block exists.
    ///
    /// # Errors
    /// [`Error::NotOwner`], [`Error::BlockDeleted`], or a request failure.
    pub(crate) async fn require_owner(&self, txn: &mut Txn, first: bool) -> Result<()> {
        let owner_path = ProcessingBlock::owner_path(self.pb_id());
        let block_path = ProcessingBlock::path(self.pb_id());
        if first {
            let view = self.view.borrow().clone();
            match view.ended {
                Some(Ended::BlockDeleted) => {
                    return Err(Error::BlockDeleted {
                        pb_id: self.pb_id().into(),
                    });
                }
                Some(Ended::OwnershipLost { reason }) => {
                    return Err(Error::NotOwner {
                        pb_id: self.pb_id().into(),
                        reason,
                    });
                }
                None => {}
            }
            if let Some(s) = &view.owner_stored {
                txn.assume(&owner_path, Some((&s.text, s.revision)))?;
            }
            if let Some(s) = &view.block_stored {
                txn.assume(&block_path, Some((&s.text, s.revision)))?;
            }
        }
        match txn.get(&owner_path).await? {
            Some(text) if is_owner_value(&self.owner, &text) => {}
            Some(text) => {
                return Err(Error::NotOwner {
                    pb_id: self.pb_id().into(),
                    reason: format!("claimed by {}", one_line(&text)),
                });
            }
            None => {
                return Err(Error::NotOwner {
                    pb_id: self.pb_id().into(),
                    reason: "the owner key is gone".into(),
                });
            }
        }
        if txn.get(&block_path).await?.is_none() {
            return Err(Error::BlockDeleted {
                pb_id: self.pb_id().into(),
            });
        }
        Ok(())
    }

    /// Make `txn` conditional on nobody else owning the block: the owner key is ours or
    /// absent (the block may be gone). Clean-up after the block was deleted or the lease
    /// expired is allowed; undoing the work of a new owner is not.
    ///
    /// # Errors
    /// [`Error::NotOwner`] when another owner holds the block, or a request failure.
    pub(crate) async fn require_no_other_owner(&self, txn: &mut Txn) -> Result<()> {
        let owner_path = ProcessingBlock::owner_path(self.pb_id());
        match txn.get(&owner_path).await? {
            Some(text) if !is_owner_value(&self.owner, &text) => Err(Error::NotOwner {
                pb_id: self.pb_id().into(),
                reason: format!("claimed by {}", one_line(&text)),
            }),
            _ => Ok(()),
        }
    }
}
