//! What a workflow hears about its block after the claim: changes, deletion, loss of
//! ownership.

use sdp_config::entity::ProcessingBlock;
use tokio::sync::watch;

use crate::ended::Ended;
use crate::monitor::{BlockView, View};

/// A change of the workflow's situation.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The block's value changed; this is the new block.
    BlockChanged(Box<ProcessingBlock>),
    /// The block's value changed to something that is not a valid processing block.
    /// The workflow still owns the block; a later valid value comes as `BlockChanged`.
    BlockInvalid {
        /// What is wrong with the new value.
        reason: String,
    },
    /// The block was deleted (final).
    BlockDeleted,
    /// Ownership was lost (final): the owner key was deleted or replaced, or the lease
    /// could not be kept alive.
    OwnershipLost {
        /// What happened, in words.
        reason: String,
    },
}

impl Event {
    /// True for the final events, after which the workflow must stop changing anything.
    pub fn is_end(&self) -> bool {
        matches!(self, Event::BlockDeleted | Event::OwnershipLost { .. })
    }
}

impl From<Ended> for Event {
    fn from(end: Ended) -> Self {
        match end {
            Ended::BlockDeleted => Event::BlockDeleted,
            Ended::OwnershipLost { reason } => Event::OwnershipLost { reason },
        }
    }
}

/// A stream of [`Event`]s, from [`crate::Workflow::events`].
///
/// # Guarantees
/// Level-triggered: when the block changes several times before [`Events::next`] is
/// called, only the latest value is reported, and a block that changes and is then
/// deleted is reported as deleted. A change equal in value to the last one reported
/// (the same block re-formatted) is not reported. After the final event (deleted or
/// ownership lost) `next` returns `None`.
pub struct Events {
    rx: watch::Receiver<View>,
    last: BlockView,
    done: bool,
}

impl Events {
    pub(crate) fn new(mut rx: watch::Receiver<View>) -> Self {
        let last = rx.borrow_and_update().block.clone();
        Events {
            rx,
            last,
            done: false,
        }
    }

    /// The next event; `None` after the final one, or once the workflow has finished.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if self.done {
                return None;
            }
            let view = self.rx.borrow_and_update().clone();
            if let Some(end) = view.ended {
                self.done = true;
                return Some(end.into());
            }
            if view.block != self.last {
                self.last = view.block.clone();
                match view.block {
                    BlockView::Valid(block) => return Some(Event::BlockChanged(block)),
                    BlockView::Invalid(reason) => return Some(Event::BlockInvalid { reason }),
                    BlockView::Deleted => {} // always comes with `ended`
                }
            }
            if self.rx.changed().await.is_err() {
                self.done = true;
                return None;
            }
        }
    }
}

/// Wait until the view says the workflow has ended.
pub(crate) async fn ended(mut rx: watch::Receiver<View>) -> Ended {
    match rx.wait_for(|v| v.ended.is_some()).await {
        Ok(view) => view.ended.clone().unwrap_or(Ended::OwnershipLost {
            reason: "unknown".into(),
        }),
        Err(_) => Ended::OwnershipLost {
            reason: "the workflow stopped following its block".into(),
        },
    }
}
