//! Which blocks depend on a block: when a block's state changes (it FINISHED, FAILED…),
//! the blocks waiting for it are decided again.

use std::collections::{HashMap, HashSet};

/// Reverse index of `dependencies`: dependency ID → IDs of the blocks that list it.
#[derive(Debug, Default)]
pub(crate) struct Dependents {
    of: HashMap<String, HashSet<String>>,
}

impl Dependents {
    /// Block `id` lists `deps`.
    pub(crate) fn add<'a>(&mut self, id: &str, deps: impl IntoIterator<Item = &'a str>) {
        for dep in deps {
            self.of
                .entry(dep.to_string())
                .or_default()
                .insert(id.to_string());
        }
    }

    /// Block `id` no longer lists `deps`.
    pub(crate) fn remove<'a>(&mut self, id: &str, deps: impl IntoIterator<Item = &'a str>) {
        for dep in deps {
            if let Some(set) = self.of.get_mut(dep) {
                set.remove(id);
                if set.is_empty() {
                    self.of.remove(dep);
                }
            }
        }
    }

    /// The blocks that list `id` as a dependency.
    pub(crate) fn of<'a>(&'a self, id: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.of.get(id).into_iter().flatten()
    }

    /// Forget everything (before a fresh listing).
    pub(crate) fn clear(&mut self) {
        self.of.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_follow_additions_and_removals() {
        let mut d = Dependents::default();
        d.add("b", ["a"]);
        d.add("c", ["a", "b"]);
        let mut of_a: Vec<&String> = d.of("a").collect();
        of_a.sort();
        assert_eq!(of_a, ["b", "c"]);
        d.remove("b", ["a"]);
        assert_eq!(d.of("a").collect::<Vec<_>>(), ["c"]);
        d.remove("c", ["a", "b"]);
        assert_eq!(d.of("a").count(), 0);
        assert!(d.of.is_empty(), "no empty sets left behind");
    }
}
