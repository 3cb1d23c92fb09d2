//! A resync: the list of the releases this deployer owns (`helm list -a` with its label)
//! compared with the view and with what is remembered, to find releases removed by hand,
//! releases left behind by deleted entries, and releases stuck or failed.

use std::collections::HashMap;
use std::time::Instant;

use crate::decide::{Observation, OwnedRelease};
use crate::helm::{ReleaseInfo, ReleaseStatus};
use crate::memory::Memories;
use crate::view::View;

/// Apply a listing made at `started` to the memories; returns the releases to look at:
/// owned releases without an entry or not deployed, and entries whose release is not
/// listed. Releases reconciled since `started` are left alone (they know better).
pub(crate) fn apply(
    listed: Vec<ReleaseInfo>,
    started: Instant,
    view: &View,
    memories: &Memories,
) -> Vec<String> {
    let listed: HashMap<String, ReleaseInfo> =
        listed.into_iter().map(|r| (r.name.clone(), r)).collect();
    let mut to_look_at = Vec::new();
    for (name, info) in &listed {
        let updated = memories.update_if_older(name, started, |memory| {
            let keep = match &memory.observed {
                Observation::Owned(o) if o.revision == info.revision && o.status == info.status => {
                    Some(o.clone())
                }
                _ => None,
            };
            memory.observed = Observation::Owned(keep.unwrap_or(OwnedRelease {
                status: info.status.clone(),
                revision: info.revision,
                updated: None,
                digest: None,
                last_good: None,
                detailed: false,
            }));
        });
        if updated && (!view.has_entry(name) || info.status != ReleaseStatus::Deployed) {
            to_look_at.push(name.clone());
        }
    }
    for release in view.releases() {
        if !view.has_entry(&release) || listed.contains_key(&release) {
            continue;
        }
        if memories.update_if_older(&release, started, |memory| {
            memory.observed = Observation::NotListed;
        }) {
            to_look_at.push(release);
        }
    }
    to_look_at
}
