//! What became of a started block's deployments and workflow, folded into the block's
//! state (`docs/states.md`): the rules for states the controller does not own outright
//! (STARTING, or anything the workflow wrote). Pure, like [`crate::decide`], which
//! calls it; every write keeps the fields it does not set and is conditional on the
//! state's revision as read, so a newer state written by the workflow always wins.
//!
//! - The workflow deployment (`<pb_id>-workflow`) failing fails the block (reason and
//!   `failed_deployment`), unless it already FINISHED or FAILED (or was CANCELLED).
//! - Its owner key gone for longer than the grace fails it likewise ("workflow exited
//!   without finishing").
//! - Any other deployment of the block failing is listed in `deployments`.
//! - A block failed because of a deployment goes back to STARTING when that
//!   deployment is retried.

use chrono::{DateTime, TimeDelta, Utc};
use sdp_config::entity::{PbStatus, ProcessingBlockState, belongs};
use serde_json::{Map, Value};

use crate::decide::{Action, StateWrite};
use crate::deploy_report::Failing;
use crate::failure::FailureKind;
use crate::state_class::{SeenState, StateClass};
use crate::template::{DeployContext, workflow_deploy_id};
use crate::validate::truncate;
use crate::view::View;

/// Field of a FAILED block state: the deployment whose failure (or whose workflow's
/// exit) failed the block; retrying it starts the block again.
pub(crate) const FAILED_DEPLOYMENT: &str = "failed_deployment";
/// Field of a block state: its failing deployments other than the workflow's.
pub(crate) const DEPLOYMENTS: &str = "deployments";
/// Reason (or start of the reason) of a block whose owner key stayed gone.
pub(crate) const WORKFLOW_EXITED: &str = "workflow exited without finishing";

/// What a fold changed, for the log and the metrics.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Folded {
    /// The block FAILED, for this reason.
    Failed(FailureKind, String),
    /// The deployment that failed the block is being retried: STARTING again.
    Retried(String),
    /// Only the list of failing deployments changed.
    Deployments,
}

/// Where a block stands with its owner key.
#[derive(Debug, PartialEq, Eq)]
enum OwnerGone {
    /// Present, or never expected.
    No,
    /// Gone, within the grace that ends then.
    Until(DateTime<Utc>),
    /// Gone for longer than the grace.
    Exited,
}

/// Decide for block `id` (at `pb_rev`) whose state `seen` is not the controller's own.
pub(crate) fn fold(
    view: &View,
    id: &str,
    pb_rev: i64,
    seen: &SeenState,
    ctx: &DeployContext,
    now: DateTime<Utc>,
) -> Action {
    let Ok(current) = ProcessingBlockState::parse(&seen.raw) else {
        return Action::Nothing;
    };
    let mut status = current.known_status();
    if matches!(status, Some(PbStatus::Finished | PbStatus::Cancelled)) {
        return Action::Nothing;
    }
    let workflow = workflow_deploy_id(id);
    let mut new = current.clone();
    let mut folded = Folded::Deployments;
    let mut retrying = false;
    if status == Some(PbStatus::Failed)
        && let Some(deployment) = retried(view, &current, seen.mod_rev)
    {
        starting_again(&mut new);
        status = Some(PbStatus::Starting);
        folded = Folded::Retried(deployment);
        retrying = true;
    }
    if status != Some(PbStatus::Failed) {
        let report = view.deploy_states.get(&workflow);
        if let Some(failing) = report.and_then(|r| r.failing.as_ref()) {
            let reason = truncate(match failing {
                Failing::Workload(cause) => format!("workflow {cause}"),
                Failing::Helm(cause) => format!("workflow deployment {workflow}: {cause}"),
            });
            failed(&mut new, &reason, Some(&workflow));
            folded = Folded::Failed(FailureKind::DeploymentFailed, reason);
        } else if !retrying && owner_gone(view, id, ctx, now) == OwnerGone::Exited {
            let reason = match report.and_then(|r| r.exit.as_deref()) {
                Some(exit) => truncate(format!("{WORKFLOW_EXITED} ({exit})")),
                None => WORKFLOW_EXITED.to_string(),
            };
            // Retrying means deleting the deployment's state: without one there is
            // nothing to retry, and an absent state must not read as a retry.
            failed(&mut new, &reason, report.is_some().then_some(&workflow));
            folded = Folded::Failed(FailureKind::WorkflowExited, reason);
        }
    }
    report_other_deployments(&mut new, view, id, &workflow);
    if new == current {
        return Action::Nothing;
    }
    Action::Fold {
        pb_rev,
        state: StateWrite::Replace {
            raw: seen.raw.clone(),
            rev: seen.mod_rev,
            new: new.to_json(),
        },
        folded,
    }
}

/// When block `id` must be decided again although nothing changes in etcd: the end of
/// the grace of its missing owner key.
pub(crate) fn recheck_at(
    view: &View,
    id: &str,
    ctx: &DeployContext,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let seen = view.states.get(id)?;
    let final_status = seen
        .status
        .as_deref()
        .and_then(PbStatus::parse)
        .is_some_and(|s| {
            matches!(
                s,
                PbStatus::Finished | PbStatus::Failed | PbStatus::Cancelled
            )
        });
    if seen.class != StateClass::Other || final_status || !view.blocks.contains_key(id) {
        return None;
    }
    match owner_gone(view, id, ctx, now) {
        OwnerGone::Until(at) => Some(at),
        OwnerGone::No | OwnerGone::Exited => None,
    }
}

fn owner_gone(view: &View, id: &str, ctx: &DeployContext, now: DateTime<Utc>) -> OwnerGone {
    let Some(since) = view.owner_gone_since(id) else {
        return OwnerGone::No;
    };
    let grace = TimeDelta::from_std(ctx.owner_grace).unwrap_or(TimeDelta::MAX);
    let end = since
        .checked_add_signed(grace)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now >= end {
        OwnerGone::Exited
    } else {
        OwnerGone::Until(end)
    }
}

/// The deployment to start again from, when the one that failed the block was retried:
/// its state deleted, written afresh since the block's state was, or (when it failed
/// the block by failing) no longer failing. A workflow that exited without finishing is
/// started again only by the first two: its deployment may never have failed at all.
fn retried(view: &View, current: &ProcessingBlockState, state_rev: i64) -> Option<String> {
    let deployment = current.extra.get(FAILED_DEPLOYMENT)?.as_str()?;
    let again = match view.deploy_states.get(deployment) {
        None => true,
        Some(report) if report.created > state_rev => true,
        Some(report) => {
            let exited = current
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(WORKFLOW_EXITED));
            report.failing.is_none() && !exited
        }
    };
    again.then(|| deployment.to_string())
}

fn starting_again(st: &mut ProcessingBlockState) {
    st.status = Some(PbStatus::Starting.as_str().into());
    st.resources_available = Some(false);
    st.reason = None;
    st.extra.remove(FAILED_DEPLOYMENT);
}

fn failed(st: &mut ProcessingBlockState, reason: &str, deployment: Option<&String>) {
    st.status = Some(PbStatus::Failed.as_str().into());
    st.reason = Some(reason.to_string());
    match deployment {
        Some(d) => {
            st.extra
                .insert(FAILED_DEPLOYMENT.into(), Value::String(d.clone()));
        }
        None => {
            st.extra.remove(FAILED_DEPLOYMENT);
        }
    }
}

/// Set `deployments` to the block's failing deployments other than its workflow's
/// (removed when there are none). Costs the block's own deployments, not every one.
fn report_other_deployments(st: &mut ProcessingBlockState, view: &View, id: &str, workflow: &str) {
    let exists = |b: &str| view.blocks.contains_key(b);
    let mut failing = Map::new();
    for prefix in belongs::name_prefixes(id) {
        for (deploy_id, report) in view.deploy_states_with_prefix(&prefix) {
            if deploy_id == workflow || belongs::block_of(deploy_id, exists) != Some(id) {
                continue;
            }
            if let Some(f) = &report.failing {
                failing.insert(deploy_id.clone(), Value::String(f.cause().to_string()));
            }
        }
    }
    if failing.is_empty() {
        st.extra.remove(DEPLOYMENTS);
    } else {
        st.extra.insert(DEPLOYMENTS.into(), Value::Object(failing));
    }
}
