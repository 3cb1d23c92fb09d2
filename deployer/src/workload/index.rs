//! The pods of every release, as the watch last reported them, and which releases a
//! change concerns. A re-list (after a lost watch) is collected on the side and swapped in
//! whole when complete, so a release is never summarised from half a listing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use super::pod::PodFacts;

/// Pod facts by release.
#[derive(Debug, Default)]
pub(crate) struct PodIndex {
    by_release: HashMap<String, BTreeMap<String, PodFacts>>,
    release_of: HashMap<String, String>,
    relisting: Option<HashMap<String, PodFacts>>,
    listed: bool,
}

impl PodIndex {
    /// Whether a complete listing has been seen (before it, nothing is known).
    pub(crate) fn listed(&self) -> bool {
        self.listed
    }

    /// Pods known.
    pub(crate) fn len(&self) -> usize {
        self.release_of.len()
    }

    /// The pods of `release`, by name.
    pub(crate) fn pods(&self, release: &str) -> Vec<&PodFacts> {
        self.by_release
            .get(release)
            .map(|pods| pods.values().collect())
            .unwrap_or_default()
    }

    /// A pod was added or changed; returns the releases whose pods changed.
    pub(crate) fn apply(&mut self, facts: PodFacts) -> Vec<String> {
        let known = self
            .release_of
            .get(&facts.name)
            .and_then(|r| self.by_release.get(r))
            .and_then(|pods| pods.get(&facts.name));
        if known == Some(&facts) {
            return Vec::new();
        }
        let mut changed = self.delete(&facts.name);
        let release = facts.release.clone();
        self.insert(facts);
        if !changed.contains(&release) {
            changed.push(release);
        }
        changed
    }

    fn insert(&mut self, facts: PodFacts) {
        self.release_of
            .insert(facts.name.clone(), facts.release.clone());
        self.by_release
            .entry(facts.release.clone())
            .or_default()
            .insert(facts.name.clone(), facts);
    }

    /// A pod is gone; returns the release it belonged to.
    pub(crate) fn delete(&mut self, name: &str) -> Vec<String> {
        let Some(release) = self.release_of.remove(name) else {
            return Vec::new();
        };
        if let Some(pods) = self.by_release.get_mut(&release) {
            pods.remove(name);
            if pods.is_empty() {
                self.by_release.remove(&release);
            }
        }
        vec![release]
    }

    /// A listing starts.
    pub(crate) fn begin_relist(&mut self) {
        self.relisting = Some(HashMap::new());
    }

    /// A pod of the listing.
    pub(crate) fn relisted(&mut self, facts: PodFacts) {
        self.relisting
            .get_or_insert_with(HashMap::new)
            .insert(facts.name.clone(), facts);
    }

    /// The listing is complete: it replaces what was known. Returns every release whose
    /// pods changed (all of them on the first listing).
    pub(crate) fn end_relist(&mut self) -> Vec<String> {
        let fresh = self.relisting.take().unwrap_or_default();
        let mut before = std::mem::take(&mut self.by_release);
        self.release_of.clear();
        for facts in fresh.into_values() {
            self.insert(facts);
        }
        let releases: BTreeSet<String> = before
            .keys()
            .chain(self.by_release.keys())
            .cloned()
            .collect();
        let first = !self.listed;
        self.listed = true;
        releases
            .into_iter()
            .filter(|r| first || before.remove(r).as_ref() != self.by_release.get(r))
            .collect()
    }
}

/// Releases to look at, and a wake-up for whoever writes their workloads.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    set: Mutex<BTreeSet<String>>,
    notify: Notify,
}

impl Dirty {
    /// Mark `releases`.
    pub(crate) fn mark<I: IntoIterator<Item = String>>(&self, releases: I) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        set.extend(releases);
        // Always wake the writer when something is marked, even if it was marked before:
        // the writer may have looked and put the marks back (nothing listed yet).
        if !set.is_empty() {
            self.notify.notify_one();
        }
    }

    /// Wake the writer even with nothing new marked (a listing completed: what was
    /// marked before it can be written now).
    pub(crate) fn poke(&self) {
        self.notify.notify_one();
    }

    /// Take every marked release.
    pub(crate) fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.set.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Wait until something is marked.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, release: &str, phase: &str) -> PodFacts {
        PodFacts {
            name: name.into(),
            release: release.into(),
            phase: phase.into(),
            ready: false,
            restarts: 0,
            problem: None,
            unschedulable: None,
            terminating: false,
        }
    }

    #[test]
    fn changes_name_their_release_and_repeats_none() {
        let mut i = PodIndex::default();
        assert_eq!(i.apply(pod("a", "r1", "Pending")), vec!["r1"]);
        assert_eq!(i.apply(pod("a", "r1", "Pending")), Vec::<String>::new());
        assert_eq!(i.apply(pod("a", "r1", "Running")), vec!["r1"]);
        assert_eq!(i.apply(pod("a", "r2", "Running")), vec!["r1", "r2"]);
        assert_eq!(i.pods("r1").len(), 0);
        assert_eq!(i.pods("r2").len(), 1);
        assert_eq!(i.delete("a"), vec!["r2"]);
        assert_eq!(i.delete("a"), Vec::<String>::new());
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn a_relist_swaps_in_whole_and_names_what_changed() {
        let mut i = PodIndex::default();
        i.begin_relist();
        i.relisted(pod("a", "r1", "Running"));
        i.relisted(pod("b", "r2", "Running"));
        assert!(!i.listed());
        assert_eq!(i.end_relist(), vec!["r1", "r2"]);
        assert!(i.listed());
        // A lost watch: meanwhile b changed, a is gone, c appeared.
        i.begin_relist();
        i.relisted(pod("b", "r2", "Succeeded"));
        assert_eq!(
            i.pods("r1").len(),
            1,
            "the old view stays until the listing ends"
        );
        i.relisted(pod("c", "r3", "Pending"));
        assert_eq!(i.end_relist(), vec!["r1", "r2", "r3"]);
        assert_eq!(i.pods("r1").len(), 0);
        assert_eq!(i.pods("r2")[0].phase, "Succeeded");
        // Nothing changed: nothing to look at.
        i.begin_relist();
        i.relisted(pod("b", "r2", "Succeeded"));
        i.relisted(pod("c", "r3", "Pending"));
        assert_eq!(i.end_relist(), Vec::<String>::new());
    }

    #[test]
    fn dirty_collects_until_taken() {
        let d = Dirty::default();
        d.mark(["a".to_string(), "b".to_string()]);
        d.mark(["a".to_string()]);
        assert_eq!(d.take().len(), 2);
        assert!(d.take().is_empty());
    }
}
