//! Which deployments the controller may remove: the naming rule itself (which block a
//! deployment belongs to) is `sdp_config::entity::belongs`.
//!
//! Deployments of block `B` are named `B-<suffix>` (2019 tools) or `proc-B-<suffix>`
//! (2021 tools). Block IDs contain `-` themselves, so a deployment name can match
//! several IDs (`a-b-workflow` matches blocks `a` and `a-b`): the deployment belongs to
//! the longest matching block that exists. A deployment may be deleted only when no
//! matching block exists and at least one matching ID is *recognised* as a block that
//! existed: one the controller saw deleted, or an ID in the format the SDP tools
//! generate (which catches blocks deleted while the controller was down). Anything else
//! (`/deploy/mine`, made by hand) is never touched.

use sdp_config::entity::belongs;

/// True when `id` is in a format the SDP tools generate: 2019 `sdpcfg process`
/// (`realtime-20191121-0000`, `batch-…`) or the 2021 tools (`pb-mvp01-20200425-00000`).
pub(crate) fn is_generated_id(id: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = id.split('-').collect();
    match parts.as_slice() {
        [kind, date, seq] => {
            matches!(*kind, "realtime" | "batch") && digits(date, 8) && digits(seq, 4)
        }
        ["pb", origin, date, seq] => {
            !origin.is_empty()
                && origin.bytes().all(|b| b.is_ascii_alphanumeric())
                && digits(date, 8)
                && digits(seq, 5)
        }
        _ => false,
    }
}

/// Whether a deployment may be deleted, given which block IDs exist and which were
/// seen deleted.
pub(crate) fn is_orphan(
    deploy_id: &str,
    exists: impl Fn(&str) -> bool,
    seen_deleted: impl Fn(&str) -> bool,
) -> bool {
    let candidates = belongs::candidates(deploy_id);
    !candidates.iter().any(|b| exists(b))
        && candidates
            .iter()
            .any(|b| seen_deleted(b) || is_generated_id(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_recognised_and_others_are_not() {
        for id in [
            "realtime-20191121-0000",
            "batch-20200101-9998",
            "pb-mvp01-20200425-00000",
        ] {
            assert!(is_generated_id(id), "{id}");
        }
        for id in [
            "realtime-2019112-0000",
            "stream-20191121-0000",
            "pb--20200425-00000",
            "pb-a-20200425-0000",
            "mine",
            "a-b",
        ] {
            assert!(!is_generated_id(id), "{id}");
        }
    }

    #[test]
    fn only_deployments_of_recognised_missing_blocks_are_orphans() {
        let none = |_: &str| false;
        assert!(is_orphan("realtime-20191121-0000-workflow", none, none));
        assert!(is_orphan(
            "proc-pb-mvp01-20200425-00000-workflow",
            none,
            none
        ));
        assert!(!is_orphan("mine", none, none));
        assert!(!is_orphan("my-thing", none, none));
        assert!(is_orphan("my-thing", none, |b| b == "my"));
        // A block with a shorter ID was deleted, but the longer one still exists.
        assert!(!is_orphan(
            "my-thing-workflow",
            |b| b == "my-thing",
            |b| b == "my"
        ));
    }
}
