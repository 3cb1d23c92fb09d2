//! The database-identity guard: never uninstall (or upgrade over) a release that was made
//! from another configuration database.
//!
//! Every release carries the identity of the database it was installed from
//! ([`crate::naming::CONFIG_DB_LABEL`], the ID of `sdp_config::DatabaseRecord`). At each
//! resync the releases of this deployer's prefix are sorted ([`classify`]) into its own
//! (labelled with this database, adopted by an operator, or unlabelled while the database
//! says unlabelled releases are its own), releases to prune (an operator's
//! `sdpcfg guard prune`) and held releases (everything else). A held release is left
//! exactly as it is: no uninstall when its entry is missing, no upgrade when an entry
//! names it; the guard reports it (log, metric, readiness, `/deployer/guard`) until an
//! operator adopts or prunes it. Restoring the database from a backup restores its
//! identity, and the releases become its own again by themselves.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sdp_config::database::{GUARD_PATH, GuardReport, HeldReason, HeldRelease};
use sdp_config::{Config, DatabaseRecord};

use crate::helm::ReleaseInfo;

mod round;

/// The releases of this prefix, as three listings of one resync.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Every release of this prefix.
    pub all: Vec<ReleaseInfo>,
    /// Names of those labelled with this database.
    pub labelled_here: HashSet<String>,
    /// Names of those without a database label.
    pub unlabelled: HashSet<String>,
}

/// A listing sorted out.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Classified {
    /// This database's releases (what the resync goes on with).
    pub ours: Vec<ReleaseInfo>,
    /// Of those, the ones not labelled with this database yet.
    pub relabel: BTreeSet<String>,
    /// Releases held, and why.
    pub held: BTreeMap<String, HeldReason>,
    /// Releases to uninstall (pruned by an operator, still not ours).
    pub prune: BTreeSet<String>,
}

/// Sort a listing by the database record.
pub(crate) fn classify(listing: Listing, record: &DatabaseRecord) -> Classified {
    let mut out = Classified::default();
    for release in listing.all {
        let name = release.name.clone();
        let unlabelled = listing.unlabelled.contains(&name);
        if listing.labelled_here.contains(&name) {
            out.ours.push(release);
        } else if record.pruned.contains(&name) {
            out.prune.insert(name);
        } else if record.adopted.contains(&name) || (unlabelled && record.unlabelled_are_ours) {
            out.relabel.insert(name);
            out.ours.push(release);
        } else if unlabelled {
            out.held.insert(name, HeldReason::UnlabelledOnNewDatabase);
        } else {
            out.held.insert(name, HeldReason::OtherDatabase);
        }
    }
    out
}

/// What the guard says about a release before anything is decided for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing classified yet this term: look again later.
    NotYet,
    /// Held: leave the release alone.
    Held(HeldReason),
    /// Uninstall it (an operator pruned it).
    Prune,
    /// Normal rules apply.
    Free,
}

#[derive(Debug, Default)]
struct State {
    record: Option<DatabaseRecord>,
    /// Releases known to be this database's (listed, or installed by this process).
    ours: HashSet<String>,
    relabel: BTreeSet<String>,
    held: BTreeMap<String, HeldReason>,
    prune: BTreeSet<String>,
}

/// The guard's knowledge, shared by the resync, the reconciles, readiness and metrics.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    state: Mutex<State>,
}

impl Guard {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forget everything (a new leadership term lists afresh).
    pub(crate) fn reset(&self) {
        *self.lock() = State::default();
    }

    /// This database's identity, once known.
    pub(crate) fn database(&self) -> Option<String> {
        self.lock().record.as_ref().map(|r| r.id.clone())
    }

    /// Take a resync's classification; returns the releases whose verdict changed from
    /// held to something else (they need a look now).
    pub(crate) fn update(&self, record: DatabaseRecord, c: &Classified) -> Vec<String> {
        let mut s = self.lock();
        if s.record.as_ref().is_some_and(|r| r.id != record.id) {
            // Another database under a running deployer: what was ours was ours there.
            s.ours.clear();
            s.relabel.clear();
        }
        let released: Vec<String> = s
            .held
            .keys()
            .filter(|name| !c.held.contains_key(*name))
            .cloned()
            .collect();
        let newly_held: Vec<&String> = c.held.keys().filter(|n| !s.held.contains_key(*n)).collect();
        if !newly_held.is_empty() {
            tracing::warn!(
                database = %record.id,
                held = c.held.len(),
                releases = ?newly_held,
                "guard: holding releases not made from this configuration database; nothing is uninstalled or upgraded over them until an operator runs `sdpcfg guard adopt` or `sdpcfg guard prune`"
            );
        }
        if !released.is_empty() {
            tracing::info!(releases = ?released, "guard: releases no longer held");
        }
        for name in c.held.keys().chain(c.prune.iter()) {
            s.ours.remove(name);
        }
        s.ours.extend(c.ours.iter().map(|r| r.name.clone()));
        s.relabel = c.relabel.clone();
        s.held = c.held.clone();
        s.prune = c.prune.clone();
        s.record = Some(record);
        released
            .into_iter()
            .chain(c.prune.iter().cloned())
            .collect()
    }

    /// The verdict on `release`.
    pub(crate) fn verdict(&self, release: &str) -> Verdict {
        let s = self.lock();
        if s.record.is_none() {
            Verdict::NotYet
        } else if let Some(why) = s.held.get(release) {
            Verdict::Held(*why)
        } else if s.prune.contains(release) {
            Verdict::Prune
        } else {
            Verdict::Free
        }
    }

    /// Whether `release` is this database's but not labelled so yet.
    pub(crate) fn needs_relabel(&self, release: &str) -> bool {
        self.lock().relabel.contains(release)
    }

    /// This process installed or upgraded `release`: it carries this database's label.
    pub(crate) fn labelled(&self, release: &str) {
        let mut s = self.lock();
        s.relabel.remove(release);
        s.ours.insert(release.to_string());
    }

    /// `release` was uninstalled.
    pub(crate) fn uninstalled(&self, release: &str) {
        let mut s = self.lock();
        s.prune.remove(release);
        s.relabel.remove(release);
        s.ours.remove(release);
    }

    /// Whether the release whose entry is gone may be uninstalled: it is known to be
    /// this database's, and the database still has the identity the guard knows (a
    /// database replaced under a running deployer must not look empty to it).
    ///
    /// # Errors
    /// The record cannot be read.
    pub(crate) async fn may_uninstall(
        &self,
        db: &Config,
        release: &str,
    ) -> Result<bool, sdp_config::Error> {
        let (known, ours) = {
            let s = self.lock();
            (
                s.record.as_ref().map(|r| r.id.clone()),
                s.ours.contains(release),
            )
        };
        let (Some(known), true) = (known, ours) else {
            return Ok(false);
        };
        let current = db.database_record().await?.map(|(r, _)| r.id);
        if current.as_deref() != Some(known.as_str()) {
            tracing::warn!(release, database = %known, now = ?current, "guard: the configuration database changed identity; not uninstalling");
            return Ok(false);
        }
        Ok(true)
    }

    /// A readiness detail, when something is held.
    pub(crate) fn readiness_detail(&self) -> Option<String> {
        let s = self.lock();
        if s.held.is_empty() {
            return None;
        }
        Some(format!(
            "guard holds {} release(s) not made from this configuration database ({}); see `sdpcfg guard`",
            s.held.len(),
            s.held
                .keys()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// The report for [`GUARD_PATH`]; `None` when nothing is held or pruned.
    pub(crate) fn report(&self, has_entry: impl Fn(&str) -> bool) -> Option<GuardReport> {
        let s = self.lock();
        if s.held.is_empty() && s.prune.is_empty() {
            return None;
        }
        let held: Vec<HeldRelease> = s
            .held
            .iter()
            .map(|(release, reason)| HeldRelease {
                release: release.clone(),
                reason: *reason,
                entry: has_entry(release),
            })
            .collect();
        let message = if held.is_empty() {
            "uninstalling the releases pruned by an operator".to_string()
        } else {
            format!(
                "{} release(s) in this namespace were not made from this configuration database; sdp-deployer neither uninstalls nor upgrades them. Keep them: restore or recreate the deployment entries you want kept, then run `sdpcfg guard adopt` (held releases without an entry are then uninstalled). Remove them: `sdpcfg guard prune`.",
                held.len()
            )
        };
        Some(GuardReport {
            database: s.record.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
            held,
            pruning: s.prune.iter().cloned().collect(),
            message,
        })
    }

    /// Write the report to [`GUARD_PATH`] (or delete it when there is nothing to say)
    /// when it differs from what is stored (one read per resync, so a report deleted by
    /// hand comes back); only while leading.
    ///
    /// # Errors
    /// etcd failures, [`sdp_config::Error::NotLeader`].
    pub(crate) async fn publish(
        &self,
        db: &Config,
        leader: &sdp_config::Guard,
        report: Option<GuardReport>,
    ) -> Result<(), sdp_config::Error> {
        let (want, leader) = (report.map(|r| r.to_json()), leader.clone());
        db.transact(move |t| {
            let (want, leader) = (want.clone(), leader.clone());
            Box::pin(async move {
                let current = t.get(GUARD_PATH).await?;
                if current == want {
                    return Ok(());
                }
                t.require(&leader);
                match &want {
                    Some(text) => t.put(GUARD_PATH, text),
                    None => t.delete(GUARD_PATH).await,
                }
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::ReleaseStatus;

    fn info(name: &str) -> ReleaseInfo {
        ReleaseInfo {
            name: name.into(),
            status: ReleaseStatus::Deployed,
            revision: 1,
        }
    }

    fn listing(all: &[&str], here: &[&str], unlabelled: &[&str]) -> Listing {
        Listing {
            all: all.iter().map(|n| info(n)).collect(),
            labelled_here: here.iter().map(|n| n.to_string()).collect(),
            unlabelled: unlabelled.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn names(c: &Classified) -> Vec<&str> {
        c.ours.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn releases_of_another_database_and_unlabelled_ones_on_a_new_database_are_held() {
        let record = DatabaseRecord::new(false);
        let c = classify(listing(&["a", "b", "c"], &["a"], &["c"]), &record);
        assert_eq!(names(&c), vec!["a"]);
        assert_eq!(c.held.get("b"), Some(&HeldReason::OtherDatabase));
        assert_eq!(c.held.get("c"), Some(&HeldReason::UnlabelledOnNewDatabase));
        assert!(c.relabel.is_empty() && c.prune.is_empty());
    }

    #[test]
    fn unlabelled_releases_are_ours_when_the_database_had_entries_and_get_relabelled() {
        let record = DatabaseRecord::new(true);
        let c = classify(listing(&["a", "b", "c"], &["a"], &["c"]), &record);
        assert_eq!(names(&c), vec!["a", "c"]);
        assert_eq!(c.relabel, BTreeSet::from(["c".to_string()]));
        assert_eq!(c.held.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn adopted_releases_become_ours_and_pruned_ones_are_uninstalled() {
        let mut record = DatabaseRecord::new(false);
        record.adopted = vec!["b".into()];
        record.pruned = vec!["c".into(), "a".into()];
        let c = classify(listing(&["a", "b", "c"], &["a"], &["c"]), &record);
        assert_eq!(
            names(&c),
            vec!["a", "b"],
            "a label of this database wins over prune"
        );
        assert_eq!(c.relabel, BTreeSet::from(["b".to_string()]));
        assert_eq!(c.prune, BTreeSet::from(["c".to_string()]));
        assert!(c.held.is_empty());
    }

    #[test]
    fn verdicts_follow_the_last_classification_and_released_holds_need_a_look() {
        let g = Guard::default();
        assert_eq!(g.verdict("b"), Verdict::NotYet);
        let record = DatabaseRecord::new(false);
        let c = classify(listing(&["a", "b"], &["a"], &[]), &record);
        assert!(g.update(record.clone(), &c).is_empty());
        assert_eq!(g.verdict("a"), Verdict::Free);
        assert_eq!(g.verdict("b"), Verdict::Held(HeldReason::OtherDatabase));
        assert!(g.readiness_detail().is_some_and(|d| d.contains("b")));
        let report = g.report(|r| r == "b").unwrap_or_default();
        assert_eq!(report.held.len(), 1);
        assert!(report.held[0].entry);
        let mut adopted = record.clone();
        adopted.adopted = vec!["b".into()];
        let c = classify(listing(&["a", "b"], &["a"], &[]), &adopted);
        assert_eq!(g.update(adopted, &c), vec!["b".to_string()]);
        assert_eq!(g.verdict("b"), Verdict::Free);
        assert!(g.needs_relabel("b"));
        g.labelled("b");
        assert!(!g.needs_relabel("b"));
        assert!(g.report(|_| false).is_none());
    }

    #[test]
    fn a_new_identity_forgets_which_releases_were_ours() {
        let g = Guard::default();
        let first = DatabaseRecord::new(false);
        g.update(
            first.clone(),
            &classify(listing(&["a"], &["a"], &[]), &first),
        );
        g.labelled("x");
        let second = DatabaseRecord::new(false);
        let c = classify(listing(&["a"], &[], &[]), &second);
        g.update(second, &c);
        assert_eq!(g.verdict("a"), Verdict::Held(HeldReason::OtherDatabase));
        assert!(!g.lock().ours.contains("x"));
    }
}
