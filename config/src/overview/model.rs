//! The overview as a value: built from key/value pairs, changed one watch event at a
//! time, without etcd (so it is tested as a pure function). [`super::follow`] feeds it
//! from a watch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::change::{self, Change, ChangeKind, Entity};
use super::parse;
use super::snapshot::Snapshot;
use super::summary::{BlockSummary, DeploymentSummary};
use crate::entity::belongs;
use crate::watch::WatchEvent;

/// What is known of one block ID: which of its keys exist, and their summary.
#[derive(Clone, Debug, Default)]
struct BlockRecord {
    /// `/pb/<id>` exists: only then is the block shown.
    entry: bool,
    /// `/pb/<id>/state` exists.
    state: bool,
    summary: Arc<BlockSummary>,
}

/// What is known of one deployment ID.
#[derive(Clone, Debug, Default)]
struct DeploymentRecord {
    /// `/deploy/<id>` exists: only then is the deployment shown.
    entry: bool,
    /// `/deploy/<id>/state` exists.
    state: bool,
    summary: Arc<DeploymentSummary>,
}

/// A key the overview reads, by what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key<'a> {
    Block(&'a str),
    BlockState(&'a str),
    BlockOwner(&'a str),
    Deployment(&'a str),
    DeploymentState(&'a str),
}

impl<'a> Key<'a> {
    /// The block or deployment the key is part of.
    fn entity(self) -> (Entity, &'a str) {
        match self {
            Key::Block(id) | Key::BlockState(id) | Key::BlockOwner(id) => (Entity::Block, id),
            Key::Deployment(id) | Key::DeploymentState(id) => (Entity::Deployment, id),
        }
    }

    /// `/pb/<id>`, `/pb/<id>/state`, `/pb/<id>/owner`, `/deploy/<id>`,
    /// `/deploy/<id>/state`; any other path is not read.
    fn of(path: &'a str) -> Option<Key<'a>> {
        let (pb, rest) = match path.strip_prefix("/pb/") {
            Some(rest) => (true, rest),
            None => (false, path.strip_prefix("/deploy/")?),
        };
        let (id, leaf) = match rest.split_once('/') {
            Some((id, leaf)) => (id, Some(leaf)),
            None => (rest, None),
        };
        if id.is_empty() {
            return None;
        }
        Some(match (pb, leaf) {
            (true, None) => Key::Block(id),
            (true, Some("state")) => Key::BlockState(id),
            (true, Some("owner")) => Key::BlockOwner(id),
            (false, None) => Key::Deployment(id),
            (false, Some("state")) => Key::DeploymentState(id),
            _ => return None,
        })
    }
}

/// Blocks and deployments, kept up to date from key changes.
#[derive(Clone, Debug, Default)]
pub struct Overview {
    revision: i64,
    blocks: BTreeMap<String, BlockRecord>,
    deployments: BTreeMap<String, DeploymentRecord>,
}

impl Overview {
    /// The overview of these `(path, value)` pairs at `revision`. Paths are
    /// configuration paths (global prefix removed); paths other than blocks,
    /// deployments and their state and owner keys are ignored.
    pub fn from_pairs<'a>(
        revision: i64,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Overview {
        let mut o = Overview {
            revision,
            ..Default::default()
        };
        for (path, value) in pairs {
            if let Some(key) = Key::of(path) {
                o.set(key, Some(value));
            }
        }
        o
    }

    /// The revision of the last change applied.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Apply one watch event; returns what changed for a person (nothing for keys the
    /// overview does not show, or changes of fields it does not show). A
    /// [`WatchEvent::Listed`] replaces everything and reports the differences.
    pub fn apply(&mut self, event: &WatchEvent, now: DateTime<Utc>) -> Vec<Change> {
        self.apply_batch(std::slice::from_ref(event), now)
    }

    /// Apply the events of one etcd response (one transaction, or several) together:
    /// one change record per block or deployment that changed, comparing it before the
    /// first event and after the last.
    pub fn apply_batch(&mut self, events: &[WatchEvent], now: DateTime<Utc>) -> Vec<Change> {
        let mut out = Vec::new();
        let mut touched: Vec<Touched> = Vec::new();
        for event in events {
            let (path, value, revision) = match event {
                WatchEvent::Listed { revision, entries } => {
                    out.extend(self.describe(std::mem::take(&mut touched), now));
                    let fresh = Overview::from_pairs(
                        *revision,
                        entries.iter().map(|e| (e.path.as_str(), e.value.as_str())),
                    );
                    out.extend(self.differences(&fresh, now));
                    *self = fresh;
                    continue;
                }
                WatchEvent::Put(e) => (&e.path, Some(e.value.as_str()), e.mod_revision),
                WatchEvent::Deleted { path, revision } => (path, None, *revision),
            };
            self.revision = self.revision.max(revision);
            let Some(key) = Key::of(path) else { continue };
            let (entity, id) = key.entity();
            match touched
                .iter_mut()
                .find(|t| t.entity == entity && t.id == id)
            {
                Some(t) => t.revision = revision,
                None => touched.push(Touched {
                    entity,
                    id: id.to_string(),
                    revision,
                    before: self.shown(entity, id),
                }),
            }
            self.set(key, value);
        }
        out.extend(self.describe(touched, now));
        out
    }

    /// The current picture.
    pub fn snapshot(&self) -> Snapshot {
        let blocks = self
            .blocks
            .values()
            .filter(|r| r.entry)
            .map(|r| r.summary.clone())
            .collect();
        let deployments = self
            .deployments
            .values()
            .filter(|r| r.entry)
            .map(|r| r.summary.clone())
            .collect();
        Snapshot::new(self.revision, blocks, deployments)
    }

    /// The change records of the touched entities, compared with how they are now.
    fn describe(&self, touched: Vec<Touched>, now: DateTime<Utc>) -> Vec<Change> {
        touched
            .into_iter()
            .filter_map(|t| {
                let after = self.shown(t.entity, &t.id);
                let (kind, summary) = describe(&t.before, &after)?;
                Some(record(now, t.revision, kind, t.entity, &t.id, summary))
            })
            .collect()
    }

    fn shown(&self, entity: Entity, id: &str) -> Shown {
        match entity {
            Entity::Block => Shown::Block(
                self.blocks
                    .get(id)
                    .filter(|r| r.entry)
                    .map(|r| r.summary.clone()),
            ),
            Entity::Deployment => Shown::Deployment(
                self.deployments
                    .get(id)
                    .filter(|r| r.entry)
                    .map(|r| r.summary.clone()),
            ),
        }
    }

    /// Every shown difference between `self` and `fresh`, as changes at `fresh`'s revision.
    fn differences(&self, fresh: &Overview, now: DateTime<Utc>) -> Vec<Change> {
        let blocks: BTreeSet<&String> = self.blocks.keys().chain(fresh.blocks.keys()).collect();
        let deployments: BTreeSet<&String> = self
            .deployments
            .keys()
            .chain(fresh.deployments.keys())
            .collect();
        let ids = blocks
            .into_iter()
            .map(|id| (Entity::Block, id))
            .chain(deployments.into_iter().map(|id| (Entity::Deployment, id)));
        ids.filter_map(|(entity, id)| {
            let (kind, summary) = describe(&self.shown(entity, id), &fresh.shown(entity, id))?;
            Some(record(now, fresh.revision, kind, entity, id, summary))
        })
        .collect()
    }

    /// Store one key's new value (`None`: deleted).
    fn set(&mut self, key: Key<'_>, value: Option<&str>) {
        match key {
            Key::Block(id) => {
                let rec = self.block_record(id);
                let was = std::mem::replace(&mut rec.entry, value.is_some());
                Arc::make_mut(&mut rec.summary).workflow = value.and_then(parse::block_workflow);
                if was != value.is_some() {
                    self.relink_block(id);
                }
                self.prune_block(id);
            }
            Key::BlockState(id) => {
                let rec = self.block_record(id);
                rec.state = value.is_some();
                let st = value.map(parse::block_state).unwrap_or_default();
                let s = Arc::make_mut(&mut rec.summary);
                (s.status, s.reason, s.since) = (st.status, st.reason, st.since);
                self.prune_block(id);
            }
            Key::BlockOwner(id) => {
                let rec = self.block_record(id);
                Arc::make_mut(&mut rec.summary).owner = value.map(parse::owner);
                self.prune_block(id);
            }
            Key::Deployment(id) => {
                let rec = self.deployment_record(id);
                let was = std::mem::replace(&mut rec.entry, value.is_some());
                let (kind, chart) = value.map(parse::deployment).unwrap_or_default();
                let s = Arc::make_mut(&mut rec.summary);
                (s.kind, s.chart) = (kind, chart);
                if was != value.is_some() {
                    self.link_deployment(id);
                }
                self.prune_deployment(id);
            }
            Key::DeploymentState(id) => {
                let rec = self.deployment_record(id);
                rec.state = value.is_some();
                let st = value.map(parse::deployment_state).unwrap_or_default();
                let s = Arc::make_mut(&mut rec.summary);
                (s.status, s.message) = (st.status, st.message);
                (s.workload_phase, s.workload_message) = (st.workload_phase, st.workload_message);
                self.prune_deployment(id);
            }
        }
    }

    fn block_record(&mut self, id: &str) -> &mut BlockRecord {
        self.blocks
            .entry(id.to_string())
            .or_insert_with(|| BlockRecord {
                summary: Arc::new(BlockSummary {
                    id: id.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
    }

    fn deployment_record(&mut self, id: &str) -> &mut DeploymentRecord {
        self.deployments
            .entry(id.to_string())
            .or_insert_with(|| DeploymentRecord {
                summary: Arc::new(DeploymentSummary {
                    id: id.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
    }

    /// Forget a block ID none of whose keys exist and to which nothing links.
    fn prune_block(&mut self, id: &str) {
        if self.blocks.get(id).is_some_and(|r| {
            !r.entry && !r.state && r.summary.owner.is_none() && r.summary.deployments.is_empty()
        }) {
            self.blocks.remove(id);
        }
    }

    fn prune_deployment(&mut self, id: &str) {
        if self
            .deployments
            .get(id)
            .is_some_and(|r| !r.entry && !r.state)
        {
            self.deployments.remove(id);
        }
    }

    /// A block appeared or disappeared: every deployment whose name fits it may now
    /// belong elsewhere.
    fn relink_block(&mut self, block_id: &str) {
        let mut affected = Vec::new();
        for prefix in belongs::name_prefixes(block_id) {
            affected.extend(
                self.deployments
                    .range(prefix.clone()..)
                    .take_while(|(id, _)| id.starts_with(&prefix))
                    .map(|(id, _)| id.clone()),
            );
        }
        for id in affected {
            self.link_deployment(&id);
        }
    }

    /// Put a deployment in the list of the block it belongs to (and out of any other).
    fn link_deployment(&mut self, id: &str) {
        let Some(rec) = self.deployments.get(id) else {
            return;
        };
        let blocks = &self.blocks;
        let target = if rec.entry {
            belongs::block_of(id, |b| blocks.get(b).is_some_and(|r| r.entry)).map(str::to_string)
        } else {
            None
        };
        let current = rec.summary.block.clone();
        if current == target {
            return;
        }
        if let Some(old) = &current {
            if let Some(b) = self.blocks.get_mut(old) {
                let list = &mut Arc::make_mut(&mut b.summary).deployments;
                list.retain(|d| d != id);
            }
            self.prune_block(old);
        }
        if let Some(new) = &target
            && let Some(b) = self.blocks.get_mut(new)
        {
            let list = &mut Arc::make_mut(&mut b.summary).deployments;
            if let Err(i) = list.binary_search_by(|d| d.as_str().cmp(id)) {
                list.insert(i, id.to_string());
            }
        }
        if let Some(rec) = self.deployments.get_mut(id) {
            Arc::make_mut(&mut rec.summary).block = target;
        }
    }
}

/// An entity's summary when shown (`None`: not shown).
enum Shown {
    Block(Option<Arc<BlockSummary>>),
    Deployment(Option<Arc<DeploymentSummary>>),
}

/// An entity changed by a batch: how it was shown before the batch, and the revision
/// of its last change.
struct Touched {
    entity: Entity,
    id: String,
    revision: i64,
    before: Shown,
}

fn describe(before: &Shown, after: &Shown) -> Option<(ChangeKind, String)> {
    match (before, after) {
        (Shown::Block(old), Shown::Block(new)) => change::block(old.as_deref(), new.as_deref()),
        (Shown::Deployment(old), Shown::Deployment(new)) => {
            change::deployment(old.as_deref(), new.as_deref())
        }
        _ => None,
    }
}

fn record(
    time: DateTime<Utc>,
    revision: i64,
    kind: ChangeKind,
    entity: Entity,
    id: &str,
    summary: String,
) -> Change {
    Change {
        time,
        revision,
        kind,
        entity,
        id: id.to_string(),
        summary,
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
