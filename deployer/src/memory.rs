//! What the deployer remembers about each release between reconciles (lost on restart:
//! the state keys carry what must survive one). A reconcile takes a release's memory
//! out and puts it back; the work queue guarantees that no two reconciles of one release
//! run at once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::decide::{Memory, Observation};

#[derive(Default)]
struct Slot {
    /// `None` while a reconcile has it.
    memory: Option<Memory>,
    last_finished: Option<Instant>,
}

/// Memories by release name.
#[derive(Default)]
pub(crate) struct Memories {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Memories {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take the memory of `release` for a reconcile (a fresh one if none).
    pub(crate) fn take(&self, release: &str) -> Memory {
        let mut slots = self.lock();
        let slot = slots.entry(release.to_string()).or_default();
        slot.memory.take().unwrap_or_default()
    }

    /// Give it back after the reconcile. `idle`: nothing is left to do for the release
    /// and it has no entry or state; then a memory that knows of no release of ours is
    /// dropped, so that memories do not grow with every deployment ever seen.
    pub(crate) fn put(&self, release: &str, memory: Memory, idle: bool) {
        let mut slots = self.lock();
        // A kubernetes-direct object still to delete is a release of ours too.
        if idle && !matches!(memory.observed, Observation::Owned(_)) && memory.direct.is_none() {
            slots.remove(release);
            return;
        }
        let slot = slots.entry(release.to_string()).or_default();
        slot.memory = Some(memory);
        slot.last_finished = Some(Instant::now());
    }

    /// Change the memory of `release` unless a reconcile has it or finished after
    /// `since` (its knowledge is newer than whatever `since` refers to). Returns whether
    /// it was changed.
    pub(crate) fn update_if_older(
        &self,
        release: &str,
        since: Instant,
        change: impl FnOnce(&mut Memory),
    ) -> bool {
        let mut slots = self.lock();
        let slot = slots.entry(release.to_string()).or_insert_with(|| Slot {
            memory: Some(Memory::default()),
            last_finished: None,
        });
        let Some(memory) = slot.memory.as_mut() else {
            return false;
        };
        if slot.last_finished.is_some_and(|f| f >= since) {
            return false;
        }
        change(memory);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::owned_release;
    use crate::helm::ReleaseStatus;

    fn owned() -> Observation {
        Observation::Owned(owned_release(ReleaseStatus::Deployed))
    }

    #[test]
    fn a_memory_taken_by_a_reconcile_is_not_changed_behind_its_back() {
        let m = Memories::default();
        let before = Instant::now();
        let mut taken = m.take("r");
        assert!(!m.update_if_older("r", before, |mem| mem.attempts = 9));
        taken.attempts = 1;
        m.put("r", taken, false);
        // Finished after the listing started: the listing is older.
        assert!(!m.update_if_older("r", before, |mem| mem.attempts = 9));
        assert_eq!(m.take("r").attempts, 1);
    }

    #[test]
    fn idle_memories_are_dropped_unless_they_know_an_owned_release() {
        let m = Memories::default();
        let mut mem = m.take("gone");
        mem.attempts = 3;
        m.put("gone", mem, true);
        assert_eq!(m.take("gone").attempts, 0, "forgotten");
        let mem = Memory {
            observed: owned(),
            ..Memory::default()
        };
        m.put("kept", mem, true);
        assert_eq!(m.take("kept").observed, owned());
        // Nor a kubernetes-direct object still to delete.
        let applied = crate::direct::Applied {
            deploy_id: "d".into(),
            object: crate::direct::ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "sdp".into(),
                name: "c".into(),
            },
            digest: String::new(),
            delete_failures: 0,
            message: String::new(),
        };
        let mem = Memory {
            direct: Some(applied.clone()),
            ..Memory::default()
        };
        m.put("to-delete", mem, true);
        assert_eq!(m.take("to-delete").direct, Some(applied));
    }
}
