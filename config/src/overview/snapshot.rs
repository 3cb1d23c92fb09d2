//! The published picture of the system at one etcd revision: plain, immutable, cheap to
//! share (entries are reference-counted, so a new snapshot after a change copies
//! pointers, not texts), serialisable for `-o json` and HTTP APIs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::summary::{BlockSummary, DeploymentSummary};

/// Every processing block and deployment at one revision.
///
/// Serialised as `{"revision", "blocks": [..], "deployments": [..], "orphans": [ids],
/// "totals": {..}}`, entries sorted by ID.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The etcd revision the snapshot reflects; 0 until the first listing arrived.
    pub revision: i64,
    /// Every processing block, sorted by ID.
    #[serde(serialize_with = "shared")]
    pub blocks: Vec<Arc<BlockSummary>>,
    /// Every deployment, sorted by ID (those of blocks and the orphans).
    #[serde(serialize_with = "shared")]
    pub deployments: Vec<Arc<DeploymentSummary>>,
    /// IDs of the deployments that belong to no block, sorted.
    pub orphans: Vec<String>,
    /// Counts over the above.
    pub totals: Totals,
}

/// Counts of blocks and deployments, by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Processing blocks.
    pub blocks: usize,
    /// Blocks per status; blocks without a state count under `NONE`.
    pub blocks_by_status: BTreeMap<String, usize>,
    /// Blocks whose owner key exists.
    pub owners_alive: usize,
    /// Deployments.
    pub deployments: usize,
    /// Deployments per release status; not yet reported counts under `NONE`.
    pub deployments_by_status: BTreeMap<String, usize>,
    /// Deployments per workload phase, for those that report one.
    pub workloads_by_phase: BTreeMap<String, usize>,
    /// Deployments of no block.
    pub orphans: usize,
}

/// The key counting an absent status in [`Totals`].
pub const NO_STATUS: &str = "NONE";

fn shared<T: Serialize, S: Serializer>(items: &[Arc<T>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(items.iter().map(|item| &**item))
}

impl Totals {
    /// Count `blocks` and `deployments` (of which `orphans` belong to no block).
    pub fn count<'a>(
        blocks: impl IntoIterator<Item = &'a BlockSummary>,
        deployments: impl IntoIterator<Item = &'a DeploymentSummary>,
    ) -> Totals {
        let mut t = Totals::default();
        let status = |s: &Option<String>| s.clone().unwrap_or_else(|| NO_STATUS.to_string());
        for b in blocks {
            t.blocks += 1;
            *t.blocks_by_status.entry(status(&b.status)).or_default() += 1;
            t.owners_alive += usize::from(b.owner.is_some());
        }
        for d in deployments {
            t.deployments += 1;
            *t.deployments_by_status
                .entry(status(&d.status))
                .or_default() += 1;
            if let Some(phase) = &d.workload_phase {
                *t.workloads_by_phase.entry(phase.clone()).or_default() += 1;
            }
            t.orphans += usize::from(d.block.is_none());
        }
        t
    }
}

impl Snapshot {
    /// A snapshot of these entries, each list sorted by ID here.
    pub fn new(
        revision: i64,
        mut blocks: Vec<Arc<BlockSummary>>,
        mut deployments: Vec<Arc<DeploymentSummary>>,
    ) -> Snapshot {
        blocks.sort_by(|a, b| a.id.cmp(&b.id));
        deployments.sort_by(|a, b| a.id.cmp(&b.id));
        let orphans = deployments
            .iter()
            .filter(|d| d.block.is_none())
            .map(|d| d.id.clone())
            .collect();
        let totals = Totals::count(
            blocks.iter().map(|b| &**b),
            deployments.iter().map(|d| &**d),
        );
        Snapshot {
            revision,
            blocks,
            deployments,
            orphans,
            totals,
        }
    }

    /// The block with this ID.
    pub fn block(&self, id: &str) -> Option<&BlockSummary> {
        let i = self
            .blocks
            .binary_search_by(|b| b.id.as_str().cmp(id))
            .ok()?;
        Some(&self.blocks[i])
    }

    /// The deployment with this ID.
    pub fn deployment(&self, id: &str) -> Option<&DeploymentSummary> {
        let i = self
            .deployments
            .binary_search_by(|d| d.id.as_str().cmp(id))
            .ok()?;
        Some(&self.deployments[i])
    }

    /// The deployments of a block, in ID order.
    pub fn deployments_of<'a>(
        &'a self,
        block: &'a BlockSummary,
    ) -> impl Iterator<Item = &'a DeploymentSummary> + 'a {
        block
            .deployments
            .iter()
            .filter_map(|id| self.deployment(id))
    }

    /// The deployments of no block, in ID order.
    pub fn orphan_deployments(&self) -> impl Iterator<Item = &DeploymentSummary> + '_ {
        self.orphans.iter().filter_map(|id| self.deployment(id))
    }

    /// Only the blocks `keep` accepts, with their deployments; the orphans too when
    /// `orphans` is true. Totals count what is kept.
    pub fn filtered(&self, keep: impl Fn(&BlockSummary) -> bool, orphans: bool) -> Snapshot {
        let blocks: Vec<Arc<BlockSummary>> =
            self.blocks.iter().filter(|b| keep(b)).cloned().collect();
        let deployments = self
            .deployments
            .iter()
            .filter(|d| match &d.block {
                Some(b) => blocks
                    .binary_search_by(|kept| kept.id.as_str().cmp(b))
                    .is_ok(),
                None => orphans,
            })
            .cloned()
            .collect();
        Snapshot::new(self.revision, blocks, deployments)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block(id: &str, status: Option<&str>, deployments: &[&str]) -> Arc<BlockSummary> {
        Arc::new(BlockSummary {
            id: id.into(),
            status: status.map(str::to_string),
            deployments: deployments.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        })
    }

    fn deployment(id: &str, block: Option<&str>) -> Arc<DeploymentSummary> {
        Arc::new(DeploymentSummary {
            id: id.into(),
            block: block.map(str::to_string),
            ..Default::default()
        })
    }

    #[test]
    fn totals_count_by_status_and_orphans() {
        let s = Snapshot::new(
            7,
            vec![block("b", Some("RUNNING"), &["b-w"]), block("a", None, &[])],
            vec![deployment("x", None), deployment("b-w", Some("b"))],
        );
        assert_eq!(s.blocks[0].id, "a");
        assert_eq!(s.orphans, ["x"]);
        assert_eq!(s.totals.blocks, 2);
        assert_eq!(s.totals.blocks_by_status["NONE"], 1);
        assert_eq!(s.totals.blocks_by_status["RUNNING"], 1);
        assert_eq!(s.totals.deployments_by_status["NONE"], 2);
        assert_eq!(s.totals.orphans, 1);
        let b = s.block("b").unwrap();
        assert_eq!(
            s.deployments_of(b)
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>(),
            ["b-w"]
        );
    }

    #[test]
    fn filtering_keeps_the_deployments_of_kept_blocks() {
        let s = Snapshot::new(
            1,
            vec![
                block("a", Some("FAILED"), &["a-w"]),
                block("b", Some("RUNNING"), &["b-w"]),
            ],
            vec![
                deployment("a-w", Some("a")),
                deployment("b-w", Some("b")),
                deployment("x", None),
            ],
        );
        let f = s.filtered(|b| b.status.as_deref() == Some("FAILED"), false);
        assert_eq!(f.blocks.len(), 1);
        assert_eq!(
            f.deployments
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>(),
            ["a-w"]
        );
        assert!(f.orphans.is_empty());
        assert_eq!(f.totals.blocks, 1);
        assert_eq!(s.filtered(|_| true, true), s);
    }

    #[test]
    fn serialises_as_plain_lists() {
        let s = Snapshot::new(3, vec![block("a", None, &[])], vec![]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["revision"], 3);
        assert_eq!(v["blocks"][0]["id"], "a");
        assert_eq!(v["blocks"][0]["status"], serde_json::Value::Null);
        assert_eq!(v["totals"]["blocks"], 1);
    }
}
