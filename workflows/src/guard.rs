//! Transactions conditional on ownership, and their retry loop.
//!
//! Every write a workflow makes reads the owner key and the block in the same
//! transaction as the write: the commit then compares both against the revisions read,
//! so a write never lands after the block was deleted or claimed by someone else. On
//! the first attempt the values come from the monitor's view ([`sdp_config::Txn::assume`],
//! no round trip); a stale view costs one conflict, after which they are read.

use sdp_config::Txn;
use sdp_config::entity::ProcessingBlock;

use crate::ended::Ended;
use crate::error::{Error, Result};
use crate::monitor::{is_owner_value, one_line};
use crate::workflow::Workflow;

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
