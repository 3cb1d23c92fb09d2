//! The background task that follows the block and the owner key after the claim.
//!
//! It watches `/pb/<id>` and `/pb/<id>/owner` from the revision after the claim (the
//! library's watch resumes after disconnects and re-lists after compaction), and the
//! lease. Its conclusions are published as a [`View`] on a `tokio::sync::watch`
//! channel, from which [`crate::Events`] and [`crate::Workflow::ended`] read. It stops
//! once the workflow has ended (block deleted or ownership lost): both are final.

use sdp_config::entity::{Owner, ProcessingBlock};
use sdp_config::{Config, WatchEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ended::Ended;

/// The block as last seen.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum BlockView {
    /// A valid block.
    Valid(Box<ProcessingBlock>),
    /// A value that is not a valid block, and why.
    Invalid(String),
    /// The key is gone.
    Deleted,
}

/// A stored value with its `mod_revision`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stored {
    pub text: String,
    pub revision: i64,
}

/// Everything the monitor knows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct View {
    pub block: BlockView,
    /// The block's stored value (absent once deleted).
    pub block_stored: Option<Stored>,
    /// The owner key's stored value while it is ours.
    pub owner_stored: Option<Stored>,
    /// Set once, when the workflow has ended.
    pub ended: Option<Ended>,
}

/// What the monitor follows.
pub(crate) struct Target {
    pub db: Config,
    pub pb_id: String,
    pub owner: Owner,
    pub lease_lost: watch::Receiver<bool>,
}

/// Start following from `from_revision` (the revision after the claim).
///
/// # Errors
/// A watch that cannot be set up (invalid path: cannot happen for a valid ID).
pub(crate) fn spawn(
    target: Target,
    initial: View,
    from_revision: i64,
    stop: CancellationToken,
) -> sdp_config::Result<watch::Receiver<View>> {
    let block_path = ProcessingBlock::path(&target.pb_id);
    let owner_path = ProcessingBlock::owner_path(&target.pb_id);
    // Prefix watches: `/pb/<id>` also matches `/pb/<id>x`, so paths are compared exactly.
    let blocks = target.db.watch(&block_path, 0, Some(from_revision))?;
    let owners = target.db.watch(&owner_path, 0, Some(from_revision))?;
    let (tx, rx) = watch::channel(initial);
    let task = Monitor {
        target,
        block_path,
        owner_path,
        tx,
    };
    tokio::spawn(task.run(blocks, owners, stop));
    Ok(rx)
}

struct Monitor {
    target: Target,
    block_path: String,
    owner_path: String,
    tx: watch::Sender<View>,
}

impl Monitor {
    async fn run(
        self,
        mut blocks: sdp_config::Watch,
        mut owners: sdp_config::Watch,
        stop: CancellationToken,
    ) {
        let mut lease_lost = self.target.lease_lost.clone();
        let mut view = self.tx.borrow().clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                ev = blocks.next() => match ev {
                    Some(ev) => self.on_block_event(&mut view, ev),
                    None => return,
                },
                ev = owners.next() => match ev {
                    Some(ev) => self.on_owner_event(&mut view, ev),
                    None => return,
                },
                lost = lease_lost.wait_for(|lost| *lost) => {
                    if lost.is_ok() {
                        view.owner_stored = None;
                        view.ended.get_or_insert(Ended::OwnershipLost {
                            reason: "the lease of the owner key expired (not refreshed within its TTL)".into(),
                        });
                    } else {
                        return; // the lease was dropped or revoked: the workflow is finishing
                    }
                }
            }
            if matches!(view.ended, Some(Ended::OwnershipLost { .. }))
                && view.block != BlockView::Deleted
            {
                // Deleting a block usually deletes its owner in the same change; the two
                // watches may report it in either order. Say "deleted" when it is.
                if self.block_is_gone().await {
                    view.block = BlockView::Deleted;
                    view.block_stored = None;
                    view.ended = Some(Ended::BlockDeleted);
                }
            }
            self.tx.send_if_modified(|published| {
                let changed = *published != view;
                if changed {
                    *published = view.clone();
                }
                changed
            });
            if view.ended.is_some() {
                tracing::debug!(pb_id = %self.target.pb_id, ended = ?view.ended, "monitor: workflow ended");
                return;
            }
        }
    }

    async fn block_is_gone(&self) -> bool {
        let mut txn = self.target.db.txn();
        matches!(txn.get(&self.block_path).await, Ok(None))
    }

    fn on_block_event(&self, view: &mut View, ev: WatchEvent) {
        let current = match ev {
            WatchEvent::Put(e) if e.path == self.block_path => Some(Stored {
                text: e.value,
                revision: e.mod_revision,
            }),
            WatchEvent::Deleted { path, .. } if path == self.block_path => None,
            WatchEvent::Listed { entries, .. } => entries
                .into_iter()
                .find(|e| e.path == self.block_path)
                .map(|e| Stored {
                    text: e.value,
                    revision: e.mod_revision,
                }),
            _ => return,
        };
        match current {
            Some(stored) => {
                view.block = match ProcessingBlock::parse(&stored.text, Some(&self.target.pb_id)) {
                    Ok(block) => BlockView::Valid(Box::new(block)),
                    Err(e) => BlockView::Invalid(e.to_string()),
                };
                view.block_stored = Some(stored);
            }
            None => {
                view.block = BlockView::Deleted;
                view.block_stored = None;
                view.ended = Some(Ended::BlockDeleted);
            }
        }
    }

    fn on_owner_event(&self, view: &mut View, ev: WatchEvent) {
        let current = match ev {
            WatchEvent::Put(e) if e.path == self.owner_path => Some(Stored {
                text: e.value,
                revision: e.mod_revision,
            }),
            WatchEvent::Deleted { path, .. } if path == self.owner_path => None,
            WatchEvent::Listed { entries, .. } => entries
                .into_iter()
                .find(|e| e.path == self.owner_path)
                .map(|e| Stored {
                    text: e.value,
                    revision: e.mod_revision,
                }),
            _ => return,
        };
        match current {
            Some(stored) if is_owner_value(&self.target.owner, &stored.text) => {
                view.owner_stored = Some(stored)
            }
            Some(stored) => {
                view.owner_stored = None;
                view.ended.get_or_insert(Ended::OwnershipLost {
                    reason: format!("claimed by {}", one_line(&stored.text)),
                });
            }
            None => {
                view.owner_stored = None;
                view.ended.get_or_insert(Ended::OwnershipLost {
                    reason: "the owner key was deleted".into(),
                });
            }
        }
    }
}

/// "Is owner": the stored owner value equals ours (as JSON, whatever its formatting).
pub(crate) fn is_owner_value(owner: &Owner, text: &str) -> bool {
    Owner::parse(text).is_ok_and(|o| o == *owner)
}

/// A stored value on one line, for messages.
pub(crate) fn one_line(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.to_string(),
        Err(_) => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_compare_as_values_not_as_text() {
        let me = Owner::this_process();
        assert!(is_owner_value(&me, &me.to_json()));
        let compact = serde_json::Value::Object(me.value.clone()).to_string();
        assert!(is_owner_value(&me, &compact));
        assert!(!is_owner_value(
            &me,
            r#"{"command": ["x"], "hostname": "h", "pid": 1}"#
        ));
        assert!(!is_owner_value(&me, "not json"));
    }

    #[test]
    fn values_are_shown_on_one_line() {
        assert_eq!(one_line("{\n  \"pid\": 1\n}"), r#"{"pid":1}"#);
        assert_eq!(one_line("a\n  b"), "a b");
    }
}
