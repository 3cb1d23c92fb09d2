//! What changed between two snapshots, for the page: the blocks and deployments to
//! (re)draw and the IDs to remove. Snapshots share unchanged entries (`Arc`), so the
//! comparison is mostly pointer checks: cheap enough to run on every change with
//! tens of thousands of entries.

use std::cmp::Ordering;
use std::sync::Arc;

use sdp_config::overview::{BlockSummary, DeploymentSummary, Snapshot, Totals};
use serde::Serialize;

/// The difference from one snapshot to the next, serialised as the `delta` event.
#[derive(Debug, Serialize)]
pub(crate) struct Delta<'a> {
    /// Revision of the snapshot this applies to.
    pub from: i64,
    /// Revision of the snapshot it produces.
    pub revision: i64,
    /// Blocks that appeared or changed, whole.
    pub blocks: Vec<&'a BlockSummary>,
    /// IDs of blocks that disappeared.
    pub removed_blocks: Vec<&'a str>,
    /// Deployments that appeared or changed, whole.
    pub deployments: Vec<&'a DeploymentSummary>,
    /// IDs of deployments that disappeared.
    pub removed_deployments: Vec<&'a str>,
    /// The new totals (small, so always sent).
    pub totals: &'a Totals,
}

impl Delta<'_> {
    /// Blocks and deployments it names.
    pub fn entries(&self) -> usize {
        self.blocks.len()
            + self.removed_blocks.len()
            + self.deployments.len()
            + self.removed_deployments.len()
    }
}

/// The delta from `old` to `new`.
pub(crate) fn between<'a>(old: &'a Snapshot, new: &'a Snapshot) -> Delta<'a> {
    let (blocks, removed_blocks) = changed(&old.blocks, &new.blocks, |b| &b.id);
    let (deployments, removed_deployments) = changed(&old.deployments, &new.deployments, |d| &d.id);
    Delta {
        from: old.revision,
        revision: new.revision,
        blocks,
        removed_blocks,
        deployments,
        removed_deployments,
        totals: &new.totals,
    }
}

/// Entries of `new` that are not in `old` or differ, and IDs of `old` not in `new`;
/// both lists are sorted by ID (as snapshots are).
fn changed<'a, T: PartialEq>(
    old: &'a [Arc<T>],
    new: &'a [Arc<T>],
    id: impl Fn(&T) -> &String,
) -> (Vec<&'a T>, Vec<&'a str>) {
    let (mut upserted, mut removed) = (Vec::new(), Vec::new());
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(a), None) => {
                removed.push(id(a).as_str());
                o.next();
            }
            (None, Some(b)) => {
                upserted.push(&***b);
                n.next();
            }
            // The common case: the very same entry, shared by both snapshots.
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {
                o.next();
                n.next();
            }
            (Some(a), Some(b)) => match id(a).cmp(id(b)) {
                Ordering::Less => {
                    removed.push(id(a).as_str());
                    o.next();
                }
                Ordering::Greater => {
                    upserted.push(&***b);
                    n.next();
                }
                Ordering::Equal => {
                    if a != b {
                        upserted.push(&***b);
                    }
                    o.next();
                    n.next();
                }
            },
        }
    }
    (upserted, removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block(id: &str, status: Option<&str>) -> Arc<BlockSummary> {
        Arc::new(BlockSummary {
            id: id.into(),
            status: status.map(str::to_string),
            ..Default::default()
        })
    }

    fn deployment(id: &str, block: &str) -> Arc<DeploymentSummary> {
        Arc::new(DeploymentSummary {
            id: id.into(),
            block: Some(block.into()),
            ..Default::default()
        })
    }

    #[test]
    fn only_added_changed_and_removed_entries_are_sent() {
        let kept = block("b", Some("RUNNING"));
        let old = Snapshot::new(
            4,
            vec![
                block("a", None),
                Arc::clone(&kept),
                block("c", Some("STARTING")),
            ],
            vec![deployment("a-w", "a")],
        );
        let new = Snapshot::new(
            5,
            vec![
                Arc::clone(&kept),
                block("c", Some("RUNNING")),
                block("d", None),
            ],
            vec![deployment("a-w", "a")],
        );
        let d = between(&old, &new);
        assert_eq!((d.from, d.revision), (4, 5));
        let ids: Vec<&str> = d.blocks.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
        assert_eq!(d.removed_blocks, ["a"]);
        // Equal but not shared: still not a change.
        assert!(d.deployments.is_empty());
        assert!(d.removed_deployments.is_empty());
        assert_eq!(d.totals.blocks, 3);
        assert_eq!(d.entries(), 3);
        let same = between(&new, &new);
        assert!(same.blocks.is_empty() && same.removed_blocks.is_empty());
    }

    #[test]
    fn serialises_for_the_page() {
        let old = Snapshot::new(1, vec![], vec![]);
        let new = Snapshot::new(2, vec![block("a", Some("STARTING"))], vec![]);
        let v = serde_json::to_value(between(&old, &new)).unwrap();
        assert_eq!(v["from"], 1);
        assert_eq!(v["revision"], 2);
        assert_eq!(v["blocks"][0]["id"], "a");
        assert_eq!(v["blocks"][0]["status"], "STARTING");
        assert_eq!(v["removed_blocks"], serde_json::json!([]));
        assert_eq!(v["totals"]["blocks"], 1);
    }
}
