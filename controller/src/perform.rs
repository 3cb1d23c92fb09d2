//! Doing what [`crate::decide`] decided: one small etcd transaction per block (or per
//! deployment removed), conditional on leadership and on the block and its state being
//! exactly as the view saw them. The view's knowledge enters the transaction through
//! `Txn::assume`, so a deployment costs a single request.
//!
//! A failed condition means the view was behind etcd: nothing is written and the
//! transaction is not retried here, because the watch is about to deliver the change
//! and queue the block again, to be decided afresh.

use sdp_config::entity::{Deployment, ProcessingBlock};
use sdp_config::{Error, Guard, Txn};

use crate::decide::{Action, Removal, StateWrite};
use crate::shared::Shared;

/// How a performed action ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written (or nothing to write).
    Done,
    /// The view was behind; the watch will bring the block back.
    Stale,
    /// Leadership was lost; nothing written.
    NotLeader,
}

/// Perform `action` for block `id`.
///
/// # Errors
/// A request to etcd failed (retry later), or a path the library refuses (the block's
/// key holds characters no path may contain).
pub(crate) async fn perform(
    shared: &Shared,
    id: &str,
    action: &Action,
    guard: &Guard,
) -> Result<Outcome, Error> {
    match action {
        Action::Nothing => Ok(Outcome::Done),
        Action::Deploy {
            pb_rev,
            deployment,
            adopted,
            state,
        } => {
            let mut txn = block_txn(shared, id, *pb_rev, guard)?;
            write_state(&mut txn, id, state).await?;
            if let Some(d) = deployment {
                txn.create(&Deployment::path(&d.id), &d.to_json()).await?;
            }
            if let Some((deploy_id, rev)) = adopted {
                // Adopted as seen: changed since, it is decided afresh.
                txn.assume(&Deployment::path(deploy_id), Some(("", *rev)))?;
            }
            let outcome = finish(txn).await?;
            if let Ok(revision) = outcome {
                let mut view = shared.view_mut();
                view.record_state(id, state.new_value(), revision);
                if let Some(d) = deployment {
                    view.record_deployment(d, revision);
                    shared.metrics.deployments_created.inc();
                }
            }
            Ok(outcome.err().unwrap_or(Outcome::Done))
        }
        Action::SetState { pb_rev, state, .. } | Action::Fold { pb_rev, state, .. } => {
            let mut txn = block_txn(shared, id, *pb_rev, guard)?;
            write_state(&mut txn, id, state).await?;
            let outcome = finish(txn).await?;
            if let Ok(revision) = outcome {
                shared
                    .view_mut()
                    .record_state(id, state.new_value(), revision);
            }
            Ok(outcome.err().unwrap_or(Outcome::Done))
        }
        Action::Cleanup(removals) => {
            let mut result = Outcome::Done;
            for removal in removals {
                match remove(shared, removal, guard).await? {
                    Outcome::Done => {}
                    other => result = other,
                }
            }
            Ok(result)
        }
    }
}

/// A transaction conditional on leadership and on the block's revision.
fn block_txn(shared: &Shared, id: &str, pb_rev: i64, guard: &Guard) -> Result<Txn, Error> {
    let mut txn = shared.db.txn();
    txn.require(guard);
    // Only the revision is compared; the value is not needed.
    txn.assume(&ProcessingBlock::path(id), Some(("", pb_rev)))?;
    Ok(txn)
}

async fn write_state(txn: &mut Txn, id: &str, state: &StateWrite) -> Result<(), Error> {
    let path = ProcessingBlock::state_path(id);
    match state {
        StateWrite::Create(value) => {
            txn.assume(&path, None)?;
            txn.create(&path, value).await
        }
        StateWrite::Replace { raw, rev, new } => {
            txn.assume(&path, Some((raw, *rev)))?;
            txn.update(&path, new).await
        }
    }
}

/// Commit: `Ok(Ok(revision))` when written, `Ok(Err(outcome))` when not.
async fn finish(txn: Txn) -> Result<Result<i64, Outcome>, Error> {
    match txn.commit().await {
        Ok(committed) => Ok(Ok(committed.revision)),
        // A blind create found the deployment, or an assumed key changed: the view is
        // behind (the watch brings the change). Not an error.
        Err(Error::AlreadyExists { .. } | Error::Conflict) => Ok(Err(Outcome::Stale)),
        Err(Error::NotLeader { .. }) => Ok(Err(Outcome::NotLeader)),
        Err(e) => Err(e),
    }
}

async fn remove(shared: &Shared, removal: &Removal, guard: &Guard) -> Result<Outcome, Error> {
    let mut txn = shared.db.txn();
    txn.require(guard);
    for block in &removal.absent_blocks {
        txn.assume(&ProcessingBlock::path(block), None)?;
    }
    txn.delete_tree(&Deployment::path(&removal.deploy_id))?;
    match finish(txn).await? {
        Ok(revision) => {
            tracing::info!(deploy_id = %removal.deploy_id, "deleted the deployment of a deleted processing block");
            shared.metrics.deployments_deleted.inc();
            shared
                .view_mut()
                .record_deployment_deleted(&removal.deploy_id, revision);
            Ok(Outcome::Done)
        }
        Err(outcome) => Ok(outcome),
    }
}
