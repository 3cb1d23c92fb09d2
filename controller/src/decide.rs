//! What should happen to one processing block, computed from the view alone (no I/O):
//! the pure half of a reconcile, tested without etcd.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use sdp_config::entity::{Deployment, PbStatus, ProcessingBlock, ProcessingBlockState};
use serde_json::Value;

use crate::failure::FailureKind;
use crate::fold::{Folded, fold};
use crate::ownership;
use crate::registry::Lookup;
use crate::state_class::{FAILED_BY, FAILED_BY_US, StateClass};
use crate::template::{DeployContext, workflow_deployment};
use crate::validate::{MAX_VALUE_BYTES, truncate};
use crate::view::{Block, View, digest};
use sdp_config::entity::belongs;

/// Field of `/pb/<id>/state`: when the controller first wrote it (RFC 3339 UTC, seconds);
/// every later write keeps it (`docs/states.md`). What block ages are computed from.
const SINCE: &str = "since";

/// Most blocks followed when looking for a dependency cycle.
const MAX_CYCLE_SEARCH: usize = 10_000;

/// A change to a block's state, decided from the view.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StateWrite {
    /// The state is absent: create it.
    Create(String),
    /// Replace the state seen at `rev` (text `raw`) with `new`.
    Replace {
        /// Text seen.
        raw: String,
        /// `mod_revision` seen.
        rev: i64,
        /// New text.
        new: String,
    },
}

impl StateWrite {
    pub(crate) fn new_value(&self) -> &str {
        match self {
            StateWrite::Create(v) | StateWrite::Replace { new: v, .. } => v,
        }
    }
}

/// A deployment of a deleted block to delete.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Removal {
    pub deploy_id: String,
    /// Every block ID it could belong to: all must still be absent at commit.
    pub absent_blocks: Vec<String>,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Nothing (started, or not decidable yet).
    Nothing,
    /// Request the workflow deployment (unless it exists) and set the state to STARTING.
    Deploy {
        /// `mod_revision` of the block decided on.
        pb_rev: i64,
        /// The deployment to create, `None` when it exists already.
        deployment: Option<Deployment>,
        /// The existing deployment adopted, with the `mod_revision` it was seen at.
        adopted: Option<(String, i64)>,
        state: StateWrite,
    },
    /// Write WAITING or FAILED.
    SetState {
        /// `mod_revision` of the block decided on.
        pb_rev: i64,
        state: StateWrite,
        /// `Some` for FAILED.
        failure: Option<FailureKind>,
        reason: String,
    },
    /// Fold what became of the block's deployments and workflow into its state.
    Fold {
        /// `mod_revision` of the block decided on.
        pb_rev: i64,
        state: StateWrite,
        /// What changed.
        folded: Folded,
    },
    /// The block is gone: delete its deployments.
    Cleanup(Vec<Removal>),
}

/// What the block should come to, whatever its state is now.
#[derive(Debug)]
enum Desired {
    Start(Deployment),
    Wait(String),
    Fail(FailureKind, String),
    /// The registry is still loading: decide later.
    Hold,
}

/// Decide for block `id`; `now` is the `since` of a state the controller creates.
pub(crate) fn decide(view: &View, id: &str, ctx: &DeployContext, now: DateTime<Utc>) -> Action {
    let Some(block) = view.blocks.get(id) else {
        return cleanup(view, id);
    };
    let state = view.states.get(id);
    if let Some(seen) = state.filter(|s| s.class == StateClass::Other) {
        return fold(view, id, block.mod_rev, seen, ctx, now);
    }
    let desired = evaluate(view, id, block, ctx);
    let current = state.and_then(|s| {
        let parsed = ProcessingBlockState::parse(&s.raw).ok()?;
        Some((s.raw.clone(), s.mod_rev, parsed))
    });
    let change = |edit: &dyn Fn(&mut ProcessingBlockState),
                  fresh: ProcessingBlockState|
     -> Option<StateWrite> {
        match &current {
            None => {
                let mut fresh = fresh;
                fresh.extra.insert(
                    SINCE.into(),
                    Value::String(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
                );
                Some(StateWrite::Create(fresh.to_json()))
            }
            Some((raw, rev, parsed)) => {
                let mut new = parsed.clone();
                edit(&mut new);
                (new != *parsed).then(|| StateWrite::Replace {
                    raw: raw.clone(),
                    rev: *rev,
                    new: new.to_json(),
                })
            }
        }
    };
    match desired {
        Desired::Hold => Action::Nothing,
        Desired::Start(deployment) => {
            let Some(state) = change(&starting, ProcessingBlockState::starting()) else {
                return Action::Nothing;
            };
            let adopted = view
                .deployments
                .get(&deployment.id)
                .map(|seen| (deployment.id.clone(), seen.mod_rev));
            Action::Deploy {
                pb_rev: block.mod_rev,
                deployment: adopted.is_none().then_some(deployment),
                adopted,
                state,
            }
        }
        Desired::Wait(reason) => {
            let edit = |st: &mut ProcessingBlockState| waiting(st, &reason);
            let mut fresh = ProcessingBlockState::default();
            edit(&mut fresh);
            match change(&edit, fresh) {
                Some(state) => Action::SetState {
                    pb_rev: block.mod_rev,
                    state,
                    failure: None,
                    reason,
                },
                None => Action::Nothing,
            }
        }
        Desired::Fail(kind, reason) => {
            let edit = |st: &mut ProcessingBlockState| failed(st, &reason);
            match change(&edit, own_failed(&reason)) {
                Some(state) => Action::SetState {
                    pb_rev: block.mod_rev,
                    state,
                    failure: Some(kind),
                    reason,
                },
                None => Action::Nothing,
            }
        }
    }
}

/// `{"failed_by": "processing-controller", "reason": …, "status": "FAILED"}`.
pub(crate) fn own_failed(reason: &str) -> ProcessingBlockState {
    let mut st = ProcessingBlockState::failed(reason);
    st.extra
        .insert(FAILED_BY.into(), Value::String(FAILED_BY_US.into()));
    st
}

fn starting(st: &mut ProcessingBlockState) {
    st.status = Some(PbStatus::Starting.as_str().into());
    st.resources_available = Some(false);
    st.reason = None;
    st.extra.remove(FAILED_BY);
}

fn waiting(st: &mut ProcessingBlockState, reason: &str) {
    st.status = Some(PbStatus::Waiting.as_str().into());
    st.resources_available = Some(false);
    st.reason = Some(reason.to_string());
    st.extra.remove(FAILED_BY);
}

fn failed(st: &mut ProcessingBlockState, reason: &str) {
    st.status = Some(PbStatus::Failed.as_str().into());
    st.reason = Some(reason.to_string());
    st.extra
        .insert(FAILED_BY.into(), Value::String(FAILED_BY_US.into()));
}

fn evaluate(view: &View, id: &str, block: &Block, ctx: &DeployContext) -> Desired {
    let pb = match &block.parsed {
        Ok(pb) => pb,
        Err(invalid) => return Desired::Fail(invalid.kind, invalid.reason.clone()),
    };
    let def = match view.registry.lookup(&pb.workflow) {
        Lookup::Found(def) => def,
        Lookup::NotLoaded => return Desired::Hold,
        Lookup::Unknown(reason) => {
            return Desired::Fail(
                FailureKind::UnknownWorkflow,
                truncate(format!("processing block {id} cannot start: {reason}")),
            );
        }
    };
    if let Some(desired) = dependencies(view, id, pb) {
        return desired;
    }
    match workflow_deployment(pb, def, ctx) {
        Err(reason) => Desired::Fail(
            FailureKind::TemplateError,
            truncate(format!("processing block {id} cannot start: {reason}")),
        ),
        Ok(d) if d.to_json().len() > MAX_VALUE_BYTES => Desired::Fail(
            FailureKind::TooLarge,
            format!(
                "processing block {id} cannot start: its workflow deployment would be larger than {MAX_VALUE_BYTES} bytes \
                 (check the parameters used by the workflow's deployment template)"
            ),
        ),
        Ok(d) => match view.deployments.get(&d.id) {
            // Not the one this block needs, so not ours to adopt nor to replace.
            Some(seen) if seen.digest != Some(digest(&d.to_value())) => Desired::Fail(
                FailureKind::DeploymentConflict,
                format!(
                    "processing block {id} cannot start: deployment {} exists and is not the workflow \
                     deployment this block needs (the processing controller did not create it); \
                     it is left as it is: delete it and the controller creates the block's own",
                    d.id
                ),
            ),
            _ => Desired::Start(d),
        },
    }
}

/// `None` when every dependency has FINISHED.
///
/// A cycle is looked for before anything else: in a cycle every block fails, and a
/// block that read "depends on a block that FAILED" would nest its neighbour's reason
/// in its own, a little deeper at each rewrite. The cycle's reason is the same at every
/// reconcile, so the state is written once.
fn dependencies(view: &View, id: &str, pb: &ProcessingBlock) -> Option<Desired> {
    if pb.dependencies.iter().any(|dep| dep.pb_id == id) {
        return Some(Desired::Fail(
            FailureKind::DependencyCycle,
            format!(
                "processing block {id} can never start: dependency cycle: {id} → {id} \
                 (it depends on itself; remove it from `dependencies`)"
            ),
        ));
    }
    let status_of = |b: &str| {
        view.states
            .get(b)
            .and_then(|s| s.status.as_deref())
            .and_then(PbStatus::parse)
    };
    if pb
        .dependencies
        .iter()
        .all(|dep| status_of(&dep.pb_id) == Some(PbStatus::Finished))
    {
        return None;
    }
    if let Some(cycle) = find_cycle(view, id) {
        return Some(Desired::Fail(
            FailureKind::DependencyCycle,
            truncate(format!(
                "processing block {id} can never start: dependency cycle: {} \
                 (remove one of these dependencies)",
                cycle.join(" → ")
            )),
        ));
    }
    let mut pending = Vec::new();
    for dep in &pb.dependencies {
        match status_of(&dep.pb_id) {
            Some(PbStatus::Finished) => {}
            Some(status @ (PbStatus::Failed | PbStatus::Cancelled)) => {
                let their_reason = view
                    .states
                    .get(&dep.pb_id)
                    .and_then(|s| ProcessingBlockState::parse(&s.raw).ok())
                    .and_then(|s| s.reason)
                    .map(|r| format!(" (its reason: {})", r.chars().take(300).collect::<String>()))
                    .unwrap_or_default();
                return Some(Desired::Fail(
                    FailureKind::DependencyFailed,
                    format!(
                        "processing block {id} cannot run: it depends on processing block {}, which is {}{their_reason}",
                        dep.pb_id,
                        status.as_str()
                    ),
                ));
            }
            _ if !view.blocks.contains_key(&dep.pb_id) => {
                pending.push(format!("{} (does not exist yet)", dep.pb_id))
            }
            _ => pending.push(dep.pb_id.clone()),
        }
    }
    pending.dedup();
    Some(Desired::Wait(truncate(format!(
        "waiting for the processing blocks it depends on to finish: {}",
        pending.join(", ")
    ))))
}

/// A path `id → … → id` through dependencies that have not finished.
fn find_cycle(view: &View, id: &str) -> Option<Vec<String>> {
    let deps_of = |b: &str| -> Vec<&str> {
        let finished = view.states.get(b).and_then(|s| s.status.as_deref())
            == Some(PbStatus::Finished.as_str());
        match view.blocks.get(b).map(|blk| &blk.parsed) {
            Some(Ok(pb)) if !finished => pb.dependencies.iter().map(|d| d.pb_id.as_str()).collect(),
            _ => Vec::new(),
        }
    };
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::from([id]);
    let mut stack = vec![id];
    while let Some(b) = stack.pop() {
        if seen.len() > MAX_CYCLE_SEARCH {
            return None;
        }
        for d in deps_of(b) {
            if d == id {
                let mut back = vec![b];
                let mut at = b;
                while at != id {
                    at = parent.get(at).copied().unwrap_or(id);
                    back.push(at);
                }
                let mut path: Vec<String> = back.iter().rev().map(|s| s.to_string()).collect();
                path.push(id.to_string());
                return Some(path);
            }
            if seen.insert(d) {
                parent.insert(d, b);
                stack.push(d);
            }
        }
    }
    None
}

/// The block is gone: its deployments that no existing block claims go.
fn cleanup(view: &View, id: &str) -> Action {
    let exists = |b: &str| view.blocks.contains_key(b);
    let deleted = |b: &str| view.was_deleted(b);
    let prefixes = [format!("{id}-"), format!("proc-{id}-")];
    let removals: Vec<Removal> = prefixes
        .iter()
        .flat_map(|p| view.deployments_with_prefix(p))
        .filter(|d| ownership::is_orphan(d, exists, deleted))
        .map(|d| Removal {
            deploy_id: d.clone(),
            absent_blocks: belongs::candidates(d)
                .into_iter()
                .map(String::from)
                .collect(),
        })
        .collect();
    if removals.is_empty() {
        Action::Nothing
    } else {
        Action::Cleanup(removals)
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
