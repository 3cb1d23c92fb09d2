//! The in-memory view of the configuration database, fed by watches, and which blocks
//! each change makes worth reconciling.
//!
//! Five watches feed it: blocks (`/pb/<id>`), their states and owners
//! (`/pb/<id>/state`, `/pb/<id>/owner`), deployments (`/deploy/<id>`), their states
//! (`/deploy/<id>/state`) and database workflow definitions (`/workflow/<key>`).
//! Applying a change returns a [`Wake`]: which block IDs to put on the work queue. Work
//! per change is independent of the number of blocks, except for the rare changes that
//! concern every block (a registry change, a fresh listing).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sdp_config::entity::{Deployment, ProcessingBlock, WorkflowDefinition};
use sdp_config::{Entry, WatchEvent};

use crate::deleted::DeletedIds;
use crate::dependents::Dependents;
use crate::deploy_report::DeployReport;
use crate::ownership;
use crate::registry::Registry;
use crate::state_class::{SeenState, StateClass};
use crate::validate::{Invalid, check_block};
use sdp_config::entity::belongs;

/// One of the watched parts of the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// `/pb/<id>`.
    Blocks = 0,
    /// `/pb/<id>/state` and `/pb/<id>/owner`.
    States = 1,
    /// `/deploy/<id>`.
    Deployments = 2,
    /// `/workflow/<type>:<id>:<version>`.
    Workflows = 3,
    /// `/deploy/<id>/state`.
    DeployStates = 4,
}

/// How many parts there are.
const PARTS: usize = 5;

impl Part {
    /// Every part with its watch prefix and depth.
    pub(crate) const ALL: [(Part, &'static str, usize); PARTS] = [
        (Part::Blocks, "/pb/", 0),
        (Part::States, "/pb/", 1),
        (Part::Deployments, "/deploy/", 0),
        (Part::Workflows, "/workflow/", 0),
        (Part::DeployStates, "/deploy/", 1),
    ];
}

/// A block as last seen.
#[derive(Debug)]
pub(crate) struct Block {
    /// `mod_revision` of `/pb/<id>`.
    pub mod_rev: i64,
    /// The block, or why it is not a valid one.
    pub parsed: Result<ProcessingBlock, Invalid>,
}

/// A deployment as last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeenDeployment {
    /// `mod_revision` of `/deploy/<id>`.
    pub mod_rev: i64,
    /// [`digest`] of its value, `None` when the value is not JSON.
    pub digest: Option<u64>,
}

/// A digest of a JSON value that ignores formatting and key order, for telling whether
/// a deployment is the one the controller would create without keeping every value.
pub(crate) fn digest(value: &serde_json::Value) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    sdp_config::json::to_python_string(value).hash(&mut h);
    h.finish()
}

/// [`digest`] of a stored text, `None` when it is not JSON.
fn digest_text(text: &str) -> Option<u64> {
    serde_json::from_str(text).ok().map(|v| digest(&v))
}

/// Which blocks a change makes worth reconciling.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// These IDs.
    Keys(Vec<String>),
    /// Blocks that have not started (no state, WAITING, FAILED by us): the registry changed.
    NotStarted,
    /// Every block and every orphaned deployment: a fresh listing.
    Everything,
}

#[derive(Debug, Default, Clone, Copy)]
struct PartStatus {
    listed: bool,
    revision: i64,
}

/// What the controller knows of etcd: the blocks, their states and owners, the
/// deployments and their states, and the registered workflows as the watches last
/// reported them, with the indexes decide needs.
#[derive(Debug)]
pub(crate) struct View {
    /// Blocks by the ID in their key.
    pub blocks: HashMap<String, Block>,
    /// States by block ID.
    pub states: HashMap<String, SeenState>,
    /// Deployments by ID, ordered for prefix scans.
    pub deployments: BTreeMap<String, SeenDeployment>,
    /// Deployment states by deployment ID, ordered for prefix scans.
    pub deploy_states: BTreeMap<String, DeployReport>,
    /// Workflow definitions (file and database).
    pub registry: Registry,
    /// Blocks whose owner key exists.
    owners: HashSet<String>,
    /// Blocks whose workflow is missing its owner key, since when: the key was seen and
    /// then deleted, or was absent when first listed while the block's state said it
    /// was running. Forgotten when the owner comes back or the block (re)starts.
    owners_gone: HashMap<String, DateTime<Utc>>,
    dependents: Dependents,
    deleted: DeletedIds,
    parts: [PartStatus; PARTS],
}

impl View {
    /// An empty view; see [`Registry::new`] for `file_configured`.
    pub(crate) fn new(file_configured: bool) -> Self {
        View {
            blocks: HashMap::new(),
            states: HashMap::new(),
            deployments: BTreeMap::new(),
            deploy_states: BTreeMap::new(),
            registry: Registry::new(file_configured),
            owners: HashSet::new(),
            owners_gone: HashMap::new(),
            dependents: Dependents::default(),
            deleted: DeletedIds::default(),
            parts: [PartStatus::default(); PARTS],
        }
    }

    /// True once every part has been listed.
    pub(crate) fn is_synced(&self) -> bool {
        self.parts.iter().all(|p| p.listed)
    }

    /// True when block `id` was deleted while the controller watched.
    pub(crate) fn was_deleted(&self, id: &str) -> bool {
        self.deleted.contains(id)
    }

    /// Blocks that depend on `id`.
    pub(crate) fn dependents(&self, id: &str) -> impl Iterator<Item = &String> {
        self.dependents.of(id)
    }

    /// Since when block `id`'s workflow has been missing its owner key, if it has.
    pub(crate) fn owner_gone_since(&self, id: &str) -> Option<DateTime<Utc>> {
        self.owners_gone.get(id).copied()
    }

    /// Apply a watch event that arrived at `now`.
    pub(crate) fn apply(&mut self, part: Part, event: WatchEvent, now: DateTime<Utc>) -> Wake {
        let status = &mut self.parts[part as usize];
        status.revision = status.revision.max(event.revision());
        match event {
            WatchEvent::Listed { entries, .. } => {
                self.parts[part as usize].listed = true;
                self.replace(part, entries, now);
                if self.is_synced() {
                    Wake::Everything
                } else {
                    Wake::Keys(Vec::new())
                }
            }
            WatchEvent::Put(entry) => self.put(part, entry),
            WatchEvent::Deleted { path, .. } => self.delete(part, &path, now),
        }
    }

    fn replace(&mut self, part: Part, entries: Vec<Entry>, now: DateTime<Utc>) {
        match part {
            Part::Blocks => {
                let old: Vec<String> = self.blocks.keys().cloned().collect();
                self.blocks.clear();
                self.dependents.clear();
                for e in entries {
                    self.put(part, e);
                }
                for id in old {
                    if !self.blocks.contains_key(&id) {
                        self.deleted.insert(&id);
                        self.owners_gone.remove(&id);
                    }
                }
            }
            Part::States => self.replace_states(entries, now),
            Part::Deployments => {
                self.deployments.clear();
                for e in entries {
                    self.put(part, e);
                }
            }
            Part::Workflows => {
                self.registry.clear_db();
                for e in entries {
                    self.put(part, e);
                }
            }
            Part::DeployStates => {
                self.deploy_states.clear();
                for e in entries {
                    self.put(part, e);
                }
            }
        }
    }

    /// A fresh listing of states and owners: an owner that was there and is not counts
    /// as gone now, and so does the owner of a running block that is not there.
    fn replace_states(&mut self, entries: Vec<Entry>, now: DateTime<Utc>) {
        let old_states = std::mem::take(&mut self.states);
        let old_owners = std::mem::take(&mut self.owners);
        for e in entries {
            if let Some(id) = ProcessingBlock::id_from_owner_path(&e.path) {
                self.owners.insert(id.to_string());
                self.owners_gone.remove(id);
            } else if let Some(id) = ProcessingBlock::id_from_state_path(&e.path) {
                let seen = SeenState::new(e.value, e.mod_revision);
                self.set_state(id, Some(seen), old_states.get(id));
            }
        }
        for id in old_states.keys() {
            if !self.states.contains_key(id) {
                self.owners_gone.remove(id);
            }
        }
        for id in old_owners.difference(&self.owners) {
            self.owners_gone.entry(id.clone()).or_insert(now);
        }
        let gone_now: Vec<String> = self
            .states
            .iter()
            .filter(|(id, s)| s.is_running() && !self.owners.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone_now {
            self.owners_gone.entry(id).or_insert(now);
        }
    }

    /// Set (or remove) block `id`'s state, given the state seen before. A block that
    /// (re)starts, or whose state is removed, has no workflow that could have gone yet.
    /// A state that is not a block state is reported once per revision: the controller
    /// never writes over it, so the block stays as it is until someone fixes or
    /// deletes it (`docs/states.md`).
    fn set_state(&mut self, id: &str, new: Option<SeenState>, old: Option<&SeenState>) {
        if let Some(reason) = new.as_ref().and_then(|n| n.unreadable.as_deref())
            && old.is_none_or(|o| new.as_ref().is_some_and(|n| n.mod_rev != o.mod_rev))
        {
            tracing::warn!(
                pb_id = %id,
                %reason,
                "the state of processing block {id} is not a valid block state (a JSON object); \
                 it is left as it is and the block is not started or changed until the state is \
                 corrected or deleted (deleting it starts the block)"
            );
        }
        let restarted = match &new {
            None => true,
            Some(new) => new.is_starting() && !old.is_some_and(SeenState::is_starting),
        };
        if restarted {
            self.owners_gone.remove(id);
        }
        match new {
            Some(new) => {
                self.states.insert(id.to_string(), new);
            }
            None => {
                self.states.remove(id);
            }
        }
    }

    fn put(&mut self, part: Part, entry: Entry) -> Wake {
        match part {
            Part::Blocks => {
                let Some(id) = ProcessingBlock::id_from_path(&entry.path) else {
                    return Wake::Keys(Vec::new());
                };
                let parsed = check_block(id, &entry.value);
                let block = Block {
                    mod_rev: entry.mod_revision,
                    parsed,
                };
                self.set_block(id.to_string(), Some(block))
            }
            Part::States => {
                if let Some(id) = ProcessingBlock::id_from_owner_path(&entry.path) {
                    self.owners.insert(id.to_string());
                    self.owners_gone.remove(id);
                    return Wake::Keys(vec![id.to_string()]);
                }
                let Some(id) = ProcessingBlock::id_from_state_path(&entry.path) else {
                    return Wake::Keys(Vec::new());
                };
                let seen = SeenState::new(entry.value, entry.mod_revision);
                let old = self.states.remove(id);
                self.set_state(id, Some(seen), old.as_ref());
                self.block_and_dependents(id)
            }
            Part::Deployments => {
                let Some(id) = Deployment::id_from_path(&entry.path) else {
                    return Wake::Keys(Vec::new());
                };
                let seen = SeenDeployment {
                    mod_rev: entry.mod_revision,
                    digest: digest_text(&entry.value),
                };
                self.deployments.insert(id.to_string(), seen);
                Wake::Keys(self.deployment_owner(id))
            }
            Part::Workflows => {
                let Some(key) = WorkflowDefinition::key_from_path(&entry.path) else {
                    return Wake::Keys(Vec::new());
                };
                if let Err(reason) = self.registry.set_db(key, &entry.value) {
                    tracing::warn!(path = %entry.path, %reason, "ignoring an invalid workflow definition");
                }
                Wake::NotStarted
            }
            Part::DeployStates => {
                let Some(id) = Deployment::id_from_state_path(&entry.path) else {
                    return Wake::Keys(Vec::new());
                };
                let report = DeployReport::parse(&entry.value, entry.create_revision);
                self.deploy_states.insert(id.to_string(), report);
                Wake::Keys(self.deployment_block(id))
            }
        }
    }

    fn delete(&mut self, part: Part, path: &str, now: DateTime<Utc>) -> Wake {
        match part {
            Part::Blocks => {
                let Some(id) = ProcessingBlock::id_from_path(path) else {
                    return Wake::Keys(Vec::new());
                };
                self.deleted.insert(id);
                self.set_block(id.to_string(), None)
            }
            Part::States => {
                if let Some(id) = ProcessingBlock::id_from_owner_path(path) {
                    // Only an owner seen goes; one deleted with its block is forgotten.
                    if self.owners.remove(id) && self.blocks.contains_key(id) {
                        self.owners_gone.insert(id.to_string(), now);
                    }
                    return Wake::Keys(vec![id.to_string()]);
                }
                let Some(id) = ProcessingBlock::id_from_state_path(path) else {
                    return Wake::Keys(Vec::new());
                };
                let old = self.states.remove(id);
                self.set_state(id, None, old.as_ref());
                self.block_and_dependents(id)
            }
            Part::Deployments => {
                let Some(id) = Deployment::id_from_path(path) else {
                    return Wake::Keys(Vec::new());
                };
                self.deployments.remove(id);
                Wake::Keys(self.deployment_owner(id))
            }
            Part::Workflows => {
                if let Some(key) = WorkflowDefinition::key_from_path(path) {
                    self.registry.remove_db(key);
                }
                Wake::NotStarted
            }
            Part::DeployStates => {
                let Some(id) = Deployment::id_from_state_path(path) else {
                    return Wake::Keys(Vec::new());
                };
                self.deploy_states.remove(id);
                Wake::Keys(self.deployment_block(id))
            }
        }
    }

    fn set_block(&mut self, id: String, block: Option<Block>) -> Wake {
        if let Some(Ok(old)) = self.blocks.get(&id).map(|b| &b.parsed) {
            let deps = old.dependencies.iter().map(|d| d.pb_id.as_str());
            self.dependents.remove(&id, deps);
        }
        match block {
            Some(block) => {
                if let Ok(pb) = &block.parsed {
                    let deps = pb.dependencies.iter().map(|d| d.pb_id.as_str());
                    self.dependents.add(&id, deps);
                }
                self.blocks.insert(id.clone(), block);
            }
            None => {
                self.blocks.remove(&id);
                self.owners_gone.remove(&id);
            }
        }
        self.block_and_dependents(&id)
    }

    fn block_and_dependents(&self, id: &str) -> Wake {
        let mut keys = vec![id.to_string()];
        keys.extend(self.dependents(id).cloned());
        Wake::Keys(keys)
    }

    /// The block a deployment change concerns: its owner, or, when no matching block
    /// exists, a recognised ID whose reconcile deletes it.
    fn deployment_owner(&self, deploy_id: &str) -> Vec<String> {
        let exists = |b: &str| self.blocks.contains_key(b);
        if let Some(owner) = belongs::block_of(deploy_id, exists) {
            return vec![owner.to_string()];
        }
        belongs::candidates(deploy_id)
            .into_iter()
            .find(|b| self.was_deleted(b) || ownership::is_generated_id(b))
            .map(|b| vec![b.to_string()])
            .unwrap_or_default()
    }

    /// The existing block a deployment belongs to (a deployment state change concerns
    /// it alone: states of orphans are the deployer's business).
    fn deployment_block(&self, deploy_id: &str) -> Vec<String> {
        let exists = |b: &str| self.blocks.contains_key(b);
        belongs::block_of(deploy_id, exists)
            .map(|b| vec![b.to_string()])
            .unwrap_or_default()
    }

    /// The IDs a [`Wake`] stands for.
    pub(crate) fn keys(&self, wake: Wake) -> Vec<String> {
        match wake {
            Wake::Keys(keys) => keys,
            Wake::NotStarted => self
                .blocks
                .keys()
                .filter(|id| {
                    self.states
                        .get(*id)
                        .is_none_or(|s| s.class != StateClass::Other)
                })
                .cloned()
                .collect(),
            Wake::Everything => {
                let mut keys: Vec<String> = self.blocks.keys().cloned().collect();
                let mut orphans = HashSet::new();
                for d in self.deployments.keys() {
                    for owner in self.deployment_owner(d) {
                        if !self.blocks.contains_key(&owner) && orphans.insert(owner.clone()) {
                            keys.push(owner);
                        }
                    }
                }
                keys
            }
        }
    }

    /// Record a write this controller committed at `revision`, unless the watch has
    /// already delivered that revision (or a later one) of the part: the view then
    /// does not lag behind the controller's own writes, so the next reconcile of the
    /// block does not act on stale data.
    pub(crate) fn record_state(&mut self, id: &str, value: &str, revision: i64) {
        if self.parts[Part::States as usize].revision < revision {
            let old = self.states.remove(id);
            let new = SeenState::new(value.to_string(), revision);
            self.set_state(id, Some(new), old.as_ref());
        }
    }

    /// As [`View::record_state`], for a created deployment.
    pub(crate) fn record_deployment(&mut self, deployment: &Deployment, revision: i64) {
        if self.parts[Part::Deployments as usize].revision < revision {
            let seen = SeenDeployment {
                mod_rev: revision,
                digest: Some(digest(&deployment.to_value())),
            };
            self.deployments.insert(deployment.id.clone(), seen);
        }
    }

    /// As [`View::record_state`], for a deleted deployment.
    pub(crate) fn record_deployment_deleted(&mut self, deploy_id: &str, revision: i64) {
        if self.parts[Part::Deployments as usize].revision < revision {
            self.deployments.remove(deploy_id);
        }
    }

    /// Deployment states under `prefix` (`<id>-`, `proc-<id>-`).
    pub(crate) fn deploy_states_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a DeployReport)> + 'a {
        self.deploy_states
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Deployments under `prefix` (`<id>-`, `proc-<id>-`).
    pub(crate) fn deployments_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.deployments
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(move |k| k.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{batch_block as block, entry, synced_view, t0};

    fn synced() -> View {
        synced_view(false)
    }

    fn keys(v: &View, w: Wake) -> Vec<String> {
        let mut k = v.keys(w);
        k.sort();
        k
    }

    #[test]
    fn the_last_listing_wakes_everything_including_orphans() {
        let mut v = View::new(false);
        v.apply(
            Part::Blocks,
            WatchEvent::Listed {
                revision: 5,
                entries: vec![entry("/pb/a", &block("a", &[]), 2)],
            },
            t0(),
        );
        v.apply(
            Part::States,
            WatchEvent::Listed {
                revision: 5,
                entries: Vec::new(),
            },
            t0(),
        );
        for part in [Part::Workflows, Part::DeployStates] {
            v.apply(
                part,
                WatchEvent::Listed {
                    revision: 5,
                    entries: Vec::new(),
                },
                t0(),
            );
        }
        assert!(!v.is_synced());
        let deploys = vec![
            entry("/deploy/a-workflow", "{}", 3),
            entry("/deploy/realtime-20191121-0000-workflow", "{}", 4),
            entry("/deploy/mine", "{}", 4),
        ];
        let wake = v.apply(
            Part::Deployments,
            WatchEvent::Listed {
                revision: 5,
                entries: deploys,
            },
            t0(),
        );
        assert!(v.is_synced());
        assert_eq!(wake, Wake::Everything);
        assert_eq!(keys(&v, wake), vec!["a", "realtime-20191121-0000"]);
    }

    #[test]
    fn a_state_change_wakes_the_block_and_its_dependents() {
        let mut v = synced();
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/b", &block("b", &["a"]), 3)),
            t0(),
        );
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/c", &block("c", &["a", "b"]), 4)),
            t0(),
        );
        let w = v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/state", r#"{"status": "FINISHED"}"#, 5)),
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["a", "b", "c"]);
        // b no longer depends on a.
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/b", &block("b", &[]), 6)),
            t0(),
        );
        let w = v.apply(
            Part::States,
            WatchEvent::Deleted {
                path: "/pb/a/state".into(),
                revision: 7,
            },
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["a", "c"]);
        // An owner wakes its block alone.
        let w = v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/owner", "{}", 8)),
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["a"]);
    }

    #[test]
    fn a_deployment_state_wakes_the_block_it_belongs_to_and_nothing_else() {
        let mut v = synced();
        for (id, rev) in [("a", 2), ("a-b", 3)] {
            v.apply(
                Part::Blocks,
                WatchEvent::Put(entry(&format!("/pb/{id}"), &block(id, &[]), rev)),
                t0(),
            );
        }
        let failed = r#"{"status": "FAILED", "message": "no"}"#;
        let w = v.apply(
            Part::DeployStates,
            WatchEvent::Put(entry("/deploy/a-b-dask/state", failed, 4)),
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["a-b"]);
        assert!(v.deploy_states["a-b-dask"].failing.is_some());
        let w = v.apply(
            Part::DeployStates,
            WatchEvent::Put(entry(
                "/deploy/realtime-20191121-0000-workflow/state",
                failed,
                5,
            )),
            t0(),
        );
        assert_eq!(keys(&v, w), Vec::<String>::new());
        let w = v.apply(
            Part::DeployStates,
            WatchEvent::Deleted {
                path: "/deploy/a-b-dask/state".into(),
                revision: 6,
            },
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["a-b"]);
        assert!(!v.deploy_states.contains_key("a-b-dask"));
        let prefixed: Vec<&String> = v
            .deploy_states_with_prefix("realtime-")
            .map(|(k, _)| k)
            .collect();
        assert_eq!(prefixed, ["realtime-20191121-0000-workflow"]);
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        t0() + chrono::TimeDelta::seconds(seconds)
    }

    #[test]
    fn an_owner_seen_and_deleted_is_gone_until_it_comes_back() {
        let mut v = synced();
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/a", &block("a", &[]), 2)),
            t0(),
        );
        v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/owner", "{}", 3)),
            t0(),
        );
        assert_eq!(v.owner_gone_since("a"), None);
        let owner_deleted = |rev| WatchEvent::Deleted {
            path: "/pb/a/owner".into(),
            revision: rev,
        };
        v.apply(Part::States, owner_deleted(4), at(5));
        assert_eq!(v.owner_gone_since("a"), Some(at(5)));
        // A pod restarted in time claims it again.
        v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/owner", "{}", 5)),
            at(6),
        );
        assert_eq!(v.owner_gone_since("a"), None);
        // Deleted with its block: nothing left behind.
        v.apply(
            Part::Blocks,
            WatchEvent::Deleted {
                path: "/pb/a".into(),
                revision: 6,
            },
            at(7),
        );
        v.apply(Part::States, owner_deleted(6), at(7));
        assert_eq!(v.owner_gone_since("a"), None);
    }

    #[test]
    fn a_block_that_starts_again_has_no_workflow_gone_yet() {
        let mut v = synced();
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/a", &block("a", &[]), 2)),
            t0(),
        );
        v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/owner", "{}", 3)),
            t0(),
        );
        v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/state", r#"{"status": "RUNNING"}"#, 4)),
            t0(),
        );
        v.apply(
            Part::States,
            WatchEvent::Deleted {
                path: "/pb/a/owner".into(),
                revision: 5,
            },
            at(1),
        );
        v.record_state(
            "a",
            r#"{"status": "FAILED", "failed_deployment": "a-workflow"}"#,
            6,
        );
        assert_eq!(v.owner_gone_since("a"), Some(at(1)));
        // Retried: the controller's own STARTING is recorded before the watch brings it.
        v.record_state("a", r#"{"status": "STARTING"}"#, 7);
        assert_eq!(v.owner_gone_since("a"), None);
        v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/state", r#"{"status": "STARTING"}"#, 7)),
            at(2),
        );
        assert_eq!(v.owner_gone_since("a"), None);
    }

    #[test]
    fn listings_count_missing_owners_of_running_blocks_and_owners_that_vanished() {
        let mut v = View::new(false);
        let blocks: Vec<Entry> = ["run", "start", "held", "vanish"]
            .iter()
            .map(|id| entry(&format!("/pb/{id}"), &block(id, &[]), 2))
            .collect();
        v.apply(
            Part::Blocks,
            WatchEvent::Listed {
                revision: 9,
                entries: blocks,
            },
            t0(),
        );
        let running = r#"{"status": "RUNNING"}"#;
        let states = |owners: &[&str]| {
            let mut e = vec![
                entry("/pb/run/state", running, 3),
                entry("/pb/start/state", r#"{"status": "STARTING"}"#, 3),
                entry("/pb/held/state", running, 3),
                entry("/pb/vanish/state", r#"{"status": "STARTING"}"#, 3),
            ];
            e.extend(
                owners
                    .iter()
                    .map(|id| entry(&format!("/pb/{id}/owner"), "{}", 3)),
            );
            e
        };
        v.apply(
            Part::States,
            WatchEvent::Listed {
                revision: 9,
                entries: states(&["held", "vanish"]),
            },
            t0(),
        );
        assert_eq!(v.owner_gone_since("run"), Some(t0()));
        assert_eq!(v.owner_gone_since("start"), None);
        assert_eq!(v.owner_gone_since("held"), None);
        assert_eq!(v.owner_gone_since("vanish"), None);
        // Listed again (after a compaction): the time of the first miss is kept.
        v.apply(
            Part::States,
            WatchEvent::Listed {
                revision: 20,
                entries: states(&["held"]),
            },
            at(30),
        );
        assert_eq!(v.owner_gone_since("run"), Some(t0()));
        assert_eq!(v.owner_gone_since("vanish"), Some(at(30)));
        assert_eq!(v.owner_gone_since("held"), None);
    }

    #[test]
    fn deployment_changes_wake_the_owner_or_a_recognised_deleted_block() {
        let mut v = synced();
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/a", &block("a", &[]), 2)),
            t0(),
        );
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/a-b", &block("a-b", &[]), 3)),
            t0(),
        );
        let w = v.apply(
            Part::Deployments,
            WatchEvent::Put(entry("/deploy/a-b-workflow", "{}", 4)),
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["a-b"]);
        v.apply(
            Part::Blocks,
            WatchEvent::Deleted {
                path: "/pb/a-b".into(),
                revision: 5,
            },
            t0(),
        );
        assert!(v.was_deleted("a-b"));
        let w = v.apply(
            Part::Deployments,
            WatchEvent::Put(entry("/deploy/a-b-dask", "{}", 6)),
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["a"]);
        let w = v.apply(
            Part::Deployments,
            WatchEvent::Put(entry("/deploy/mine", "{}", 7)),
            t0(),
        );
        assert_eq!(keys(&v, w), Vec::<String>::new());
    }

    #[test]
    fn registry_changes_wake_only_blocks_that_have_not_started() {
        let mut v = synced();
        for id in [
            "new",
            "waiting",
            "failed-by-us",
            "failed-by-workflow",
            "running",
        ] {
            v.apply(
                Part::Blocks,
                WatchEvent::Put(entry(&format!("/pb/{id}"), &block(id, &[]), 2)),
                t0(),
            );
        }
        let states = [
            ("waiting", r#"{"status": "WAITING"}"#),
            (
                "failed-by-us",
                r#"{"status": "FAILED", "reason": "x", "failed_by": "processing-controller"}"#,
            ),
            (
                "failed-by-workflow",
                r#"{"status": "FAILED", "reason": "x"}"#,
            ),
            ("running", r#"{"status": "RUNNING"}"#),
        ];
        for (id, st) in states {
            v.apply(
                Part::States,
                WatchEvent::Put(entry(&format!("/pb/{id}/state"), st, 3)),
                t0(),
            );
        }
        let w = v.apply(
            Part::Workflows,
            WatchEvent::Put(entry("/workflow/batch:w:1", r#"{"image": "i"}"#, 4)),
            t0(),
        );
        assert_eq!(keys(&v, w), vec!["failed-by-us", "new", "waiting"]);
    }

    #[test]
    fn own_writes_are_recorded_unless_the_watch_is_ahead() {
        let mut v = synced();
        let x_workflow = Deployment::parse(
            r#"{"deploy_id": "x-workflow", "type": "helm", "args": {"chart": "workflow"}}"#,
            None,
        )
        .unwrap();
        v.record_deployment(&x_workflow, 10);
        v.record_state("x", r#"{"status": "STARTING"}"#, 10);
        assert!(v.deployments.contains_key("x-workflow"));
        assert_eq!(v.states["x"].status.as_deref(), Some("STARTING"));
        v.apply(
            Part::Deployments,
            WatchEvent::Deleted {
                path: "/deploy/x-workflow".into(),
                revision: 12,
            },
            t0(),
        );
        v.record_deployment(&x_workflow, 10);
        assert!(!v.deployments.contains_key("x-workflow"));
    }

    #[test]
    fn a_relisting_remembers_blocks_that_vanished() {
        let mut v = synced();
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/gone", &block("gone", &[]), 2)),
            t0(),
        );
        v.apply(
            Part::Blocks,
            WatchEvent::Listed {
                revision: 9,
                entries: Vec::new(),
            },
            t0(),
        );
        assert!(v.was_deleted("gone"));
        assert!(v.blocks.is_empty());
    }
}
