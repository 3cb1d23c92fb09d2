//! Which processing block a deployment belongs to, by name: deployments of block `B`
//! are named `B-<suffix>` (2019 tools) or `proc-B-<suffix>` (2021 tools). Block IDs
//! contain `-` themselves, so a name can fit several IDs; the deployment belongs to the
//! longest one that exists. One rule for every reader: the processing controller (which
//! deployments to remove with a block) and the overview (`sdpcfg status`, the console).

/// Every block ID `deploy_id` could belong to, longest first.
pub fn candidates(deploy_id: &str) -> Vec<&str> {
    let mut out = Vec::new();
    heads(deploy_id, &mut out);
    if let Some(rest) = deploy_id.strip_prefix("proc-") {
        heads(rest, &mut out);
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    out.dedup();
    out
}

/// Each `B` with `name == B + "-" + suffix`, both non-empty.
fn heads<'a>(name: &'a str, out: &mut Vec<&'a str>) {
    for (i, c) in name.char_indices() {
        if c == '-' && i > 0 && i + 1 < name.len() {
            out.push(&name[..i]);
        }
    }
}

/// The block `deploy_id` belongs to among those for which `exists` holds.
pub fn block_of(deploy_id: &str, exists: impl Fn(&str) -> bool) -> Option<&str> {
    candidates(deploy_id).into_iter().find(|b| exists(b))
}

/// The prefixes that the names of a block's deployments start with.
pub fn name_prefixes(block_id: &str) -> [String; 2] {
    [format!("{block_id}-"), format!("proc-{block_id}-")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_existing_block_wins_in_both_naming_schemes() {
        let blocks = ["a", "a-b", "pb-x"];
        let exists = |b: &str| blocks.contains(&b);
        assert_eq!(block_of("a-b-workflow", exists), Some("a-b"));
        assert_eq!(block_of("a-workflow", exists), Some("a"));
        assert_eq!(block_of("proc-pb-x-dask", exists), Some("pb-x"));
        assert_eq!(block_of("mine", exists), None);
        assert_eq!(block_of("a-", exists), None);
    }

    #[test]
    fn every_candidate_starts_with_one_of_its_prefixes() {
        for id in ["realtime-20191121-0000-workflow", "proc-pb-m-1-dask"] {
            for b in candidates(id) {
                assert!(
                    name_prefixes(b).iter().any(|p| id.starts_with(p.as_str())),
                    "{id} {b}"
                );
            }
        }
    }

    #[test]
    fn candidates_cover_both_naming_schemes_longest_first() {
        assert_eq!(
            candidates("realtime-20191121-0000-workflow"),
            vec!["realtime-20191121-0000", "realtime-20191121", "realtime"]
        );
        assert_eq!(
            candidates("proc-pb-x-1-dask"),
            vec![
                "proc-pb-x-1",
                "proc-pb-x",
                "proc-pb",
                "pb-x-1",
                "pb-x",
                "proc",
                "pb"
            ]
        );
        assert!(candidates("mine").is_empty());
        assert!(candidates("-x").is_empty());
        assert!(candidates("x-").is_empty());
    }
}
