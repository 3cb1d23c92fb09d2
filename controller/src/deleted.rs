//! Memory of deleted block IDs: a deployment named after a block deleted while the
//! controller watched is recognised as that block's, whatever its ID looks like.

use std::collections::{HashSet, VecDeque};

/// How many deleted block IDs are remembered; the oldest are forgotten first.
const CAPACITY: usize = 100_000;

/// Deleted block IDs, bounded.
#[derive(Debug, Default)]
pub(crate) struct DeletedIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl DeletedIds {
    /// Remember `id` as deleted.
    pub(crate) fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            if self.order.len() > CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    /// Whether `id` was seen deleted (and not forgotten since).
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_deleted_ids_are_forgotten_first() {
        let mut d = DeletedIds::default();
        for i in 0..=CAPACITY {
            d.insert(&i.to_string());
        }
        assert!(!d.contains("0"));
        assert!(d.contains("1"));
        assert!(d.contains(&CAPACITY.to_string()));
        assert_eq!(d.order.len(), CAPACITY);
    }
}
