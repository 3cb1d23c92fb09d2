//! The in-memory view of the configuration database, fed by watches, and which blocks
//! each change makes worth reconciling.
//!
//! Four watches feed it: blocks (`/pb/<id>`), their states (`/pb/<id>/state`),
//! deployments (`/deploy/<id>`) and database workflow definitions (`/workflow/<key>`).
//! Applying a change returns a [`Wake`]: which block IDs to put on the work queue. Work
//! per change is independent of the number of blocks, except for the rare changes that
//! concern every block (a registry change, a fresh listing).

use std::collections::{BTreeMap, HashMap, HashSet};

use sdp_config::entity::{Deployment, ProcessingBlock, WorkflowDefinition};
use sdp_config::{Entry, WatchEvent};

use crate::deleted::DeletedIds;
use crate::dependents::Dependents;
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
    /// `/pb/<id>/state` (and owners, ignored).
    States = 1,
    /// `/deploy/<id>`.
    Deployments = 2,
    /// `/workflow/<type>:<id>:<version>`.
    Workflows = 3,
}

impl Part {
    /// Every part with its watch prefix and depth.
    pub(crate) const ALL: [(Part, &'static str, usize); 4] = [
        (Part::Blocks, "/pb/", 0),
        (Part::States, "/pb/", 1),
        (Part::Deployments, "/deploy/", 0),
        (Part::Workflows, "/workflow/", 0),
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

/// What the controller knows of etcd: the blocks, their states, the deployments and the
/// registered workflows as the watches last reported them, with the indexes decide needs.
#[derive(Debug)]
pub(crate) struct View {
    /// Blocks by the ID in their key.
    pub blocks: HashMap<String, Block>,
    /// States by block ID.
    pub states: HashMap<String, SeenState>,
    /// Deployments (ID → `mod_revision`), ordered for prefix scans.
    pub deployments: BTreeMap<String, i64>,
    /// Workflow definitions (file and database).
    pub registry: Registry,
    dependents: Dependents,
    deleted: DeletedIds,
    parts: [PartStatus; 4],
}

impl View {
    /// An empty view; see [`Registry::new`] for `file_configured`.
    pub(crate) fn new(file_configured: bool) -> Self {
        View {
            blocks: HashMap::new(),
            states: HashMap::new(),
            deployments: BTreeMap::new(),
            registry: Registry::new(file_configured),
            dependents: Dependents::default(),
            deleted: DeletedIds::default(),
            parts: [PartStatus::default(); 4],
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

    /// Apply a watch event.
    pub(crate) fn apply(&mut self, part: Part, event: WatchEvent) -> Wake {
        let status = &mut self.parts[part as usize];
        status.revision = status.revision.max(event.revision());
        match event {
            WatchEvent::Listed { entries, .. } => {
                self.parts[part as usize].listed = true;
                self.replace(part, entries);
                if self.is_synced() {
                    Wake::Everything
                } else {
                    Wake::Keys(Vec::new())
                }
            }
            WatchEvent::Put(entry) => self.put(part, entry),
            WatchEvent::Deleted { path, .. } => self.delete(part, &path),
        }
    }

    fn replace(&mut self, part: Part, entries: Vec<Entry>) {
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
                    }
                }
            }
            Part::States => {
                self.states.clear();
                for e in entries {
                    self.put(part, e);
                }
            }
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
                let Some(id) = ProcessingBlock::id_from_state_path(&entry.path) else {
                    return Wake::Keys(Vec::new());
                };
                self.states.insert(
                    id.to_string(),
                    SeenState::new(entry.value, entry.mod_revision),
                );
                self.block_and_dependents(id)
            }
            Part::Deployments => {
                let Some(id) = Deployment::id_from_path(&entry.path) else {
                    return Wake::Keys(Vec::new());
                };
                self.deployments.insert(id.to_string(), entry.mod_revision);
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
        }
    }

    fn delete(&mut self, part: Part, path: &str) -> Wake {
        match part {
            Part::Blocks => {
                let Some(id) = ProcessingBlock::id_from_path(path) else {
                    return Wake::Keys(Vec::new());
                };
                self.deleted.insert(id);
                self.set_block(id.to_string(), None)
            }
            Part::States => {
                let Some(id) = ProcessingBlock::id_from_state_path(path) else {
                    return Wake::Keys(Vec::new());
                };
                self.states.remove(id);
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
            self.states
                .insert(id.to_string(), SeenState::new(value.to_string(), revision));
        }
    }

    /// As [`View::record_state`], for a created deployment.
    pub(crate) fn record_deployment(&mut self, deploy_id: &str, revision: i64) {
        if self.parts[Part::Deployments as usize].revision < revision {
            self.deployments.insert(deploy_id.to_string(), revision);
        }
    }

    /// As [`View::record_state`], for a deleted deployment.
    pub(crate) fn record_deployment_deleted(&mut self, deploy_id: &str, revision: i64) {
        if self.parts[Part::Deployments as usize].revision < revision {
            self.deployments.remove(deploy_id);
        }
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
    use crate::fixtures::{batch_block as block, entry, synced_view};

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
        );
        v.apply(
            Part::States,
            WatchEvent::Listed {
                revision: 5,
                entries: Vec::new(),
            },
        );
        v.apply(
            Part::Workflows,
            WatchEvent::Listed {
                revision: 5,
                entries: Vec::new(),
            },
        );
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
        );
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/c", &block("c", &["a", "b"]), 4)),
        );
        let w = v.apply(
            Part::States,
            WatchEvent::Put(entry("/pb/a/state", r#"{"status": "FINISHED"}"#, 5)),
        );
        assert_eq!(keys(&v, w), vec!["a", "b", "c"]);
        // b no longer depends on a.
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/b", &block("b", &[]), 6)),
        );
        let w = v.apply(
            Part::States,
            WatchEvent::Deleted {
                path: "/pb/a/state".into(),
                revision: 7,
            },
        );
        assert_eq!(keys(&v, w), vec!["a", "c"]);
        // Owners are ignored.
        let w = v.apply(Part::States, WatchEvent::Put(entry("/pb/a/owner", "{}", 8)));
        assert_eq!(keys(&v, w), Vec::<String>::new());
    }

    #[test]
    fn deployment_changes_wake_the_owner_or_a_recognised_deleted_block() {
        let mut v = synced();
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/a", &block("a", &[]), 2)),
        );
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/a-b", &block("a-b", &[]), 3)),
        );
        let w = v.apply(
            Part::Deployments,
            WatchEvent::Put(entry("/deploy/a-b-workflow", "{}", 4)),
        );
        assert_eq!(keys(&v, w), vec!["a-b"]);
        v.apply(
            Part::Blocks,
            WatchEvent::Deleted {
                path: "/pb/a-b".into(),
                revision: 5,
            },
        );
        assert!(v.was_deleted("a-b"));
        let w = v.apply(
            Part::Deployments,
            WatchEvent::Put(entry("/deploy/a-b-dask", "{}", 6)),
        );
        assert_eq!(keys(&v, w), vec!["a"]);
        let w = v.apply(
            Part::Deployments,
            WatchEvent::Put(entry("/deploy/mine", "{}", 7)),
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
            );
        }
        let w = v.apply(
            Part::Workflows,
            WatchEvent::Put(entry("/workflow/batch:w:1", r#"{"image": "i"}"#, 4)),
        );
        assert_eq!(keys(&v, w), vec!["failed-by-us", "new", "waiting"]);
    }

    #[test]
    fn own_writes_are_recorded_unless_the_watch_is_ahead() {
        let mut v = synced();
        v.record_deployment("x-workflow", 10);
        v.record_state("x", r#"{"status": "STARTING"}"#, 10);
        assert!(v.deployments.contains_key("x-workflow"));
        assert_eq!(v.states["x"].status.as_deref(), Some("STARTING"));
        v.apply(
            Part::Deployments,
            WatchEvent::Deleted {
                path: "/deploy/x-workflow".into(),
                revision: 12,
            },
        );
        v.record_deployment("x-workflow", 10);
        assert!(!v.deployments.contains_key("x-workflow"));
    }

    #[test]
    fn a_relisting_remembers_blocks_that_vanished() {
        let mut v = synced();
        v.apply(
            Part::Blocks,
            WatchEvent::Put(entry("/pb/gone", &block("gone", &[]), 2)),
        );
        v.apply(
            Part::Blocks,
            WatchEvent::Listed {
                revision: 9,
                entries: Vec::new(),
            },
        );
        assert!(v.was_deleted("gone"));
        assert!(v.blocks.is_empty());
    }
}
