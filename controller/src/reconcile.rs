//! One reconcile of one block: decide from the view, perform, and say what comes next
//! for the block's key in the work queue.

use std::time::Instant;

use sdp_runtime::queue::Next;

use crate::decide::{Action, decide};
use crate::failure::FailureKind;
use crate::fold::{Folded, recheck_at};
use crate::perform::{Outcome, perform};
use crate::shared::Shared;

/// Reconcile block `key`. Only the leader acts, and only on a complete view: keys taken
/// otherwise are dropped, because becoming leader and completing the view both queue
/// every block again.
#[tracing::instrument(skip_all, fields(pb_id = %key))]
pub(crate) async fn reconcile(shared: &Shared, key: &str) -> Next {
    let Some(guard) = shared.leader_guard() else {
        return Next::Done;
    };
    let start = Instant::now();
    let (action, recheck) = {
        let view = shared.view();
        if !view.is_synced() {
            return Next::Done;
        }
        let now = chrono::Utc::now();
        let recheck = recheck_at(&view, key, &shared.deploy, now)
            .map(|at| (at - now).to_std().unwrap_or_default());
        (decide(&view, key, &shared.deploy, now), recheck)
    };
    let next = match action {
        Action::Nothing => Next::Done,
        _ => match perform(shared, key, &action, &guard).await {
            Ok(Outcome::Done) => {
                report(shared, &action);
                Next::Done
            }
            Ok(Outcome::Stale) => {
                tracing::debug!("view was behind etcd; the watch brings the change");
                Next::Done
            }
            Ok(Outcome::NotLeader) => {
                tracing::info!("no longer the leader; nothing written");
                Next::Done
            }
            Err(e) if e.is_transient() => {
                shared.metrics.failed(FailureKind::EtcdError);
                // Once per outage and key, then rarely: an etcd restart must not flood the log.
                let failures = shared.queue.failures(&key.to_string()) + 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, "reconcile failed; retrying with backoff");
                } else {
                    tracing::debug!(error = %e, failures, "reconcile failed; retrying with backoff");
                }
                Next::Backoff
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot act on this processing block");
                Next::Done
            }
        },
    };
    shared
        .metrics
        .reconcile_duration
        .observe(start.elapsed().as_secs_f64());
    match (next, recheck) {
        // A grace is running out with nothing in etcd to say so: come back when it ends.
        (Next::Done, Some(wait)) => Next::At(tokio::time::Instant::now() + wait),
        _ => next,
    }
}

fn report(shared: &Shared, action: &Action) {
    match action {
        Action::Deploy {
            deployment: Some(d),
            ..
        } => {
            tracing::info!(deploy_id = %d.id, "requested the workflow deployment; state STARTING");
        }
        Action::Deploy {
            deployment: None, ..
        } => tracing::info!("workflow deployment exists; state STARTING"),
        Action::SetState {
            failure: Some(kind),
            reason,
            ..
        } => {
            shared.metrics.failed(*kind);
            tracing::warn!(kind = kind.as_str(), %reason, "processing block cannot start; state FAILED");
        }
        Action::SetState {
            failure: None,
            reason,
            ..
        } => tracing::info!(%reason, "state WAITING"),
        Action::Fold {
            folded: Folded::Failed(kind, reason),
            ..
        } => {
            shared.metrics.failed(*kind);
            tracing::warn!(kind = kind.as_str(), %reason, "state FAILED");
        }
        Action::Fold {
            folded: Folded::Retried(deploy_id),
            ..
        } => tracing::info!(%deploy_id, "deployment retried; state STARTING"),
        Action::Fold {
            folded: Folded::Deployments,
            ..
        } => tracing::info!("failing deployments reported in the state"),
        Action::Cleanup(_) | Action::Nothing => {}
    }
}
