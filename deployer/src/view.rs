//! The in-memory view of `/deploy/`: entries and their state keys, grouped by release
//! name (the unit of work: never two operations on one release at once).
//!
//! Keys another tool wrote under a path the configuration library refuses (`/deploy/a b`,
//! `/deploy/ä`) are kept out: no state can be written for them (every write would fail
//! and be retried for ever), so they are reported once in the log and counted
//! ([`View::invalid_count`]), nothing more.

use std::collections::{BTreeSet, HashMap};

use sdp_config::entity::Deployment;
use sdp_config::{Entry, WatchEvent};

/// A stored value with its `mod_revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    /// Raw text.
    pub value: String,
    /// Revision of its last change.
    pub mod_revision: i64,
}

/// Entries and states of the deployments mapping to one release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// `(deploy_id, entry)`, sorted by ID.
    pub entries: Vec<(String, Item)>,
    /// `(deploy_id, state)`, sorted by ID.
    pub states: Vec<(String, Item)>,
}

impl Snapshot {
    /// The state of `id`, if any.
    pub(crate) fn state(&self, id: &str) -> Option<&Item> {
        self.states.iter().find(|(i, _)| i == id).map(|(_, s)| s)
    }

    /// State keys whose entry is gone.
    pub(crate) fn orphan_states(&self) -> Vec<(String, Item)> {
        self.states
            .iter()
            .filter(|(id, _)| !self.entries.iter().any(|(e, _)| e == id))
            .cloned()
            .collect()
    }
}

/// The deployment entries and their state keys as the watches last reported them, indexed
/// by the release each maps to (two entries may map to one release).
pub(crate) struct View {
    release_of: Box<dyn Fn(&str) -> String + Send + Sync>,
    entries: HashMap<String, Item>,
    states: HashMap<String, Item>,
    by_release: HashMap<String, BTreeSet<String>>,
    /// Paths refused as configuration paths, already reported.
    invalid: BTreeSet<String>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("entries", &self.entries.len())
            .field("states", &self.states.len())
            .finish()
    }
}

impl View {
    /// An empty view; `release_of` maps a deployment ID to its release name.
    pub(crate) fn new(release_of: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        View {
            release_of: Box::new(release_of),
            entries: HashMap::new(),
            states: HashMap::new(),
            by_release: HashMap::new(),
            invalid: BTreeSet::new(),
        }
    }

    /// Whether `id` (from `path`) can be worked on: its entry and state paths are valid
    /// configuration paths. Reports a refused path once.
    fn usable(&mut self, id: &str, path: &str) -> bool {
        match sdp_config::path::validate(&Deployment::state_path(id)) {
            Ok(()) => true,
            Err(e) => {
                if self.invalid.insert(path.to_string()) {
                    tracing::warn!(path, error = %e, "ignoring a key under /deploy/ that is not a valid configuration path: no state can be written for it; delete or rename it");
                }
                false
            }
        }
    }

    /// A key with a refused path is gone.
    fn forget_invalid(&mut self, path: &str) {
        self.invalid.remove(path);
    }

    /// Keys under `/deploy/` left alone because their path is invalid.
    pub(crate) fn invalid_count(&self) -> usize {
        self.invalid.len()
    }

    fn index(&mut self, id: &str) -> String {
        let release = (self.release_of)(id);
        let present = self.entries.contains_key(id) || self.states.contains_key(id);
        if present {
            self.by_release
                .entry(release.clone())
                .or_default()
                .insert(id.to_string());
        } else if let Some(ids) = self.by_release.get_mut(&release) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_release.remove(&release);
            }
        }
        release
    }

    fn item(e: &Entry) -> Item {
        Item {
            value: e.value.clone(),
            mod_revision: e.mod_revision,
        }
    }

    /// Apply an event of the entries watch (`/deploy/`, level 0); returns the releases
    /// that need a look.
    pub(crate) fn apply_entries(&mut self, event: WatchEvent) -> Vec<String> {
        let mut dirty = Vec::new();
        match event {
            WatchEvent::Listed { entries, .. } => {
                let mut fresh: HashMap<String, Item> = HashMap::new();
                self.invalid
                    .retain(|p| Deployment::id_from_path(p).is_none());
                for e in &entries {
                    if let Some(id) = Deployment::id_from_path(&e.path)
                        && self.usable(id, &e.path)
                    {
                        fresh.insert(id.to_string(), Self::item(e));
                    }
                }
                let old = std::mem::take(&mut self.entries);
                let changed: BTreeSet<String> = old
                    .iter()
                    .filter(|(id, item)| fresh.get(*id) != Some(item))
                    .map(|(id, _)| id.clone())
                    .chain(
                        fresh
                            .iter()
                            .filter(|(id, item)| old.get(*id) != Some(item))
                            .map(|(id, _)| id.clone()),
                    )
                    .collect();
                self.entries = fresh;
                for id in changed {
                    dirty.push(self.index(&id));
                }
            }
            WatchEvent::Put(e) => {
                if let Some(id) = Deployment::id_from_path(&e.path)
                    && self.usable(id, &e.path)
                {
                    self.entries.insert(id.to_string(), Self::item(&e));
                    dirty.push(self.index(id));
                }
            }
            WatchEvent::Deleted { path, .. } => {
                self.forget_invalid(&path);
                if let Some(id) = Deployment::id_from_path(&path) {
                    self.entries.remove(id);
                    dirty.push(self.index(id));
                }
            }
        }
        dirty
    }

    /// The releases whose state an event of the states watch changes (before it is
    /// applied): what the workload writer must look at again, own writes included (their
    /// events come after the view already holds them, so [`View::apply_states`] does not
    /// name them).
    pub(crate) fn state_releases(&self, event: &WatchEvent) -> BTreeSet<String> {
        let ids: Vec<&str> = match event {
            WatchEvent::Listed { entries, .. } => entries
                .iter()
                .filter_map(|e| Deployment::id_from_state_path(&e.path))
                .chain(self.states.keys().map(String::as_str))
                .collect(),
            WatchEvent::Put(e) => Deployment::id_from_state_path(&e.path)
                .into_iter()
                .collect(),
            WatchEvent::Deleted { path, .. } => {
                Deployment::id_from_state_path(path).into_iter().collect()
            }
        };
        ids.into_iter().map(|id| (self.release_of)(id)).collect()
    }

    /// Apply an event of the states watch (`/deploy/`, level 1). Only states without an
    /// entry (to delete), or deleted while their entry exists (to report again), need a
    /// look; changes made by this deployer are already in the view.
    pub(crate) fn apply_states(&mut self, event: WatchEvent) -> Vec<String> {
        let mut dirty = Vec::new();
        match event {
            WatchEvent::Listed { entries, .. } => {
                self.states.clear();
                self.invalid
                    .retain(|p| Deployment::id_from_state_path(p).is_none());
                let mut ids = BTreeSet::new();
                for e in &entries {
                    if let Some(id) = Deployment::id_from_state_path(&e.path)
                        && self.usable(id, &e.path)
                    {
                        self.states.insert(id.to_string(), Self::item(e));
                        ids.insert(id.to_string());
                    }
                }
                self.by_release.clear();
                let all: Vec<String> = self
                    .entries
                    .keys()
                    .chain(self.states.keys())
                    .cloned()
                    .collect();
                for id in all {
                    let release = self.index(&id);
                    if ids.contains(&id) && !self.entries.contains_key(&id) {
                        dirty.push(release);
                    }
                }
            }
            WatchEvent::Put(e) => {
                if let Some(id) = Deployment::id_from_state_path(&e.path)
                    && self.usable(id, &e.path)
                {
                    let newer = self
                        .states
                        .get(id)
                        .is_none_or(|s| s.mod_revision < e.mod_revision);
                    if newer {
                        self.states.insert(id.to_string(), Self::item(&e));
                    }
                    let release = self.index(id);
                    if !self.entries.contains_key(id) {
                        dirty.push(release);
                    }
                }
            }
            WatchEvent::Deleted { path, revision } => {
                self.forget_invalid(&path);
                if let Some(id) = Deployment::id_from_state_path(&path) {
                    if self
                        .states
                        .get(id)
                        .is_some_and(|s| s.mod_revision < revision)
                    {
                        self.states.remove(id);
                    }
                    let release = self.index(id);
                    if self.entries.contains_key(id) && !self.states.contains_key(id) {
                        dirty.push(release);
                    }
                }
            }
        }
        dirty
    }

    /// Record this deployer's own write of a state (`None`: deleted), so that the next
    /// reconcile sees it before the watch delivers it.
    pub(crate) fn record_state(&mut self, id: &str, state: Option<Item>) {
        match state {
            Some(item) => {
                if self
                    .states
                    .get(id)
                    .is_none_or(|s| s.mod_revision <= item.mod_revision)
                {
                    self.states.insert(id.to_string(), item);
                }
            }
            None => {
                self.states.remove(id);
            }
        }
        self.index(id);
    }

    /// Entries and states of the deployments mapping to `release`.
    pub(crate) fn snapshot(&self, release: &str) -> Snapshot {
        let mut snap = Snapshot::default();
        for id in self.by_release.get(release).into_iter().flatten() {
            if let Some(e) = self.entries.get(id) {
                snap.entries.push((id.clone(), e.clone()));
            }
            if let Some(s) = self.states.get(id) {
                snap.states.push((id.clone(), s.clone()));
            }
        }
        snap
    }

    /// The state of `id` as last seen or written.
    pub(crate) fn snapshot_state(&self, id: &str) -> Option<Item> {
        self.states.get(id).cloned()
    }

    /// Whether any entry maps to `release`.
    pub(crate) fn has_entry(&self, release: &str) -> bool {
        self.by_release
            .get(release)
            .is_some_and(|ids| ids.iter().any(|id| self.entries.contains_key(id)))
    }

    /// Releases with an entry or a state.
    pub(crate) fn releases(&self) -> Vec<String> {
        self.by_release.keys().cloned().collect()
    }

    /// Number of entries.
    pub(crate) fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::entry;

    fn view() -> View {
        View::new(|id| id.to_ascii_lowercase())
    }

    #[test]
    fn entries_mark_their_release_dirty_and_listings_only_what_changed() {
        let mut v = view();
        let d = v.apply_entries(WatchEvent::Listed {
            revision: 5,
            entries: vec![entry("/deploy/a", "1", 2), entry("/deploy/B", "2", 3)],
        });
        assert_eq!(d.len(), 2);
        assert_eq!(
            v.apply_entries(WatchEvent::Put(entry("/deploy/a", "3", 6))),
            vec!["a"]
        );
        let d = v.apply_entries(WatchEvent::Listed {
            revision: 9,
            entries: vec![entry("/deploy/a", "3", 6), entry("/deploy/c", "4", 8)],
        });
        assert_eq!(
            d.into_iter().collect::<BTreeSet<_>>(),
            ["b".to_string(), "c".to_string()].into()
        );
        assert!(v.has_entry("c") && !v.has_entry("b"));
    }

    #[test]
    fn only_orphan_or_lost_states_need_a_look() {
        let mut v = view();
        v.apply_entries(WatchEvent::Listed {
            revision: 1,
            entries: vec![entry("/deploy/a", "x", 1)],
        });
        let d = v.apply_states(WatchEvent::Listed {
            revision: 3,
            entries: vec![
                entry("/deploy/a/state", "s", 2),
                entry("/deploy/gone/state", "s", 3),
            ],
        });
        assert_eq!(d, vec!["gone"]);
        assert!(
            v.apply_states(WatchEvent::Put(entry("/deploy/a/state", "t", 4)))
                .is_empty()
        );
        assert_eq!(
            v.apply_states(WatchEvent::Deleted {
                path: "/deploy/a/state".into(),
                revision: 5
            }),
            vec!["a"]
        );
        let snap = v.snapshot("gone");
        assert_eq!(snap.orphan_states().len(), 1);
    }

    #[test]
    fn keys_with_invalid_paths_are_left_out_and_counted_until_deleted() {
        let mut v = view();
        let d = v.apply_entries(WatchEvent::Listed {
            revision: 3,
            entries: vec![
                entry("/deploy/a b", "x", 1),
                entry("/deploy/\u{e4}", "x", 2),
                entry("/deploy/ok", "x", 3),
            ],
        });
        assert_eq!(d, vec!["ok"]);
        assert_eq!(v.invalid_count(), 2);
        assert!(
            v.apply_states(WatchEvent::Put(entry("/deploy/a b/state", "s", 4)))
                .is_empty()
        );
        assert_eq!(v.invalid_count(), 3);
        // Seen again (a new listing): still counted once.
        v.apply_entries(WatchEvent::Put(entry("/deploy/a b", "y", 5)));
        assert_eq!(v.invalid_count(), 3);
        v.apply_entries(WatchEvent::Deleted {
            path: "/deploy/a b".into(),
            revision: 6,
        });
        assert_eq!(v.invalid_count(), 2);
        assert!(v.releases().iter().all(|r| r == "ok"));
    }

    #[test]
    fn own_writes_are_seen_at_once_and_older_watch_events_do_not_undo_them() {
        let mut v = view();
        v.apply_entries(WatchEvent::Put(entry("/deploy/a", "x", 1)));
        v.record_state(
            "a",
            Some(Item {
                value: "new".into(),
                mod_revision: 10,
            }),
        );
        v.apply_states(WatchEvent::Put(entry("/deploy/a/state", "old", 9)));
        assert_eq!(
            v.snapshot("a").state("a").map(|s| s.value.as_str()),
            Some("new")
        );
    }

    #[test]
    fn every_state_change_names_its_release_for_the_workload_writer() {
        let mut v = view();
        v.apply_entries(WatchEvent::Put(entry("/deploy/a", "x", 1)));
        // This deployer's own write, then its watch event: nothing for the reconciler,
        // but the workload writer must look (the release now has a state to report in).
        let own = Item {
            value: "s".into(),
            mod_revision: 2,
        };
        v.record_state("a", Some(own));
        let put = WatchEvent::Put(entry("/deploy/a/state", "s", 2));
        assert_eq!(v.state_releases(&put), ["a".to_string()].into());
        assert!(v.apply_states(put).is_empty());
        let deleted = WatchEvent::Deleted {
            path: "/deploy/a/state".into(),
            revision: 3,
        };
        assert_eq!(v.state_releases(&deleted), ["a".to_string()].into());
        // A listing names the states it holds and those it drops.
        let listed = WatchEvent::Listed {
            revision: 4,
            entries: vec![entry("/deploy/B/state", "s", 4)],
        };
        assert_eq!(
            v.state_releases(&listed),
            ["a".to_string(), "b".to_string()].into()
        );
        assert!(
            v.state_releases(&WatchEvent::Put(entry("/deploy/a", "y", 5)))
                .is_empty()
        );
    }
}
