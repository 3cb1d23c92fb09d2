//! `testdeploy <pb_id>`: turns the block's `parameters` into deployments, one per
//! entry, and keeps them in step as the parameters change: new entries are requested,
//! changed ones rewritten, dropped ones removed. When the block is deleted, ownership is
//! lost, or it gets SIGINT/SIGTERM, it removes all its deployments and releases the
//! claim (exit status 0).
//!
//! Entry `k` becomes deployment `<pb_id>-k`. Its value is either
//! - a full deployment without (or with a matching) `deploy_id`:
//!   `{"type": "helm" | "process-direct" | "kubernetes-direct", "args": {…}}`, or
//! - the arguments of a Helm deployment: `{"chart": "<chart>", "values": {…}}`.
//!
//! ```json
//! {"dask": {"chart": "dask", "values": {"worker.replicas": 1}},
//!  "web": {"type": "kubernetes-direct", "args": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}}}
//! ```
//!
//! Entries that are not valid (wrong shape, a key that makes an invalid deployment ID,
//! the reserved key `workflow`) are listed in the state under `"deployment_errors"`
//! with the reason, and skipped; the IDs of the deployments in place are listed under
//! `"deployments"`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sdp_config::entity::{Deployment, PbStatus};
use sdp_workflows::{Error, Event, WORKFLOW_SUFFIX, Workflow, cli};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

/// How soon a failed database operation is tried again.
const RETRY: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    cli::main("testdeploy", run)
}

async fn run(pb_id: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(wf) = cli::start(&pb_id, &shutdown)
        .await
        .context("cannot start")?
    else {
        return Ok(());
    };
    let result = cli::stopped_normally(keep_in_step(&wf, &shutdown).await);
    remove_all(&wf).await?;
    wf.finish().await.context("cannot release the claim")?;
    Ok(result?)
}

async fn keep_in_step(wf: &Workflow, shutdown: &CancellationToken) -> sdp_workflows::Result<()> {
    wf.set_status(PbStatus::Running, None).await?;
    let mut parameters = wf.parameters().clone();
    let mut invalid_block: Option<String> = None;
    loop {
        let desired = Desired::from_parameters(wf.pb_id(), &parameters);
        let outcome = reconcile(wf, &desired).await?;
        record(wf, &outcome, invalid_block.as_deref()).await?;
        let retry = !outcome.failed.is_empty();
        let event = tokio::select! {
            event = wf.wait_for_change() => event,
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(RETRY), if retry => continue,
        };
        match event {
            Event::BlockChanged(block) => {
                parameters = block.parameters;
                invalid_block = None;
            }
            Event::BlockInvalid { reason } => {
                tracing::warn!(%reason, "the block's new value is invalid; deployments stay as they are");
                invalid_block = Some(reason);
            }
            end => {
                tracing::info!(event = ?end, "stopping");
                return Ok(());
            }
        }
    }
}

/// What the parameters ask for: deployments by parameter key, and the entries refused.
#[derive(Debug, Default, PartialEq)]
struct Desired {
    deployments: BTreeMap<String, Deployment>,
    invalid: BTreeMap<String, String>,
}

impl Desired {
    fn from_parameters(pb_id: &str, parameters: &Map<String, Value>) -> Desired {
        let mut desired = Desired::default();
        for (key, value) in parameters {
            match deployment_for(pb_id, key, value) {
                Ok(d) => {
                    desired.deployments.insert(key.clone(), d);
                }
                Err(reason) => {
                    desired.invalid.insert(key.clone(), reason);
                }
            }
        }
        desired
    }
}

/// The deployment for parameter entry `key`.
fn deployment_for(pb_id: &str, key: &str, value: &Value) -> Result<Deployment, String> {
    if key == WORKFLOW_SUFFIX {
        return Err(format!(
            "the key {WORKFLOW_SUFFIX:?} is reserved: <pb_id>-workflow is the workflow's own deployment"
        ));
    }
    let id = format!("{pb_id}-{key}");
    let Value::Object(entry) = value else {
        return Err(format!(
            "must be an object: {{\"type\": …, \"args\": …}} or Helm arguments {{\"chart\": …, \"values\": …}}, found {value}"
        ));
    };
    let mut full = if entry.contains_key("type") {
        entry.clone()
    } else if entry.contains_key("chart") {
        let mut m = Map::new();
        m.insert("type".into(), json!("helm"));
        m.insert("args".into(), value.clone());
        m
    } else {
        return Err("must have `type` (with `args`) or `chart` (with `values`)".into());
    };
    full.entry("deploy_id").or_insert_with(|| json!(id));
    Deployment::from_value(Value::Object(full), Some(&id)).map_err(|e| e.to_string())
}

/// What one reconcile achieved.
#[derive(Debug, Default)]
struct Outcome {
    /// Deployments in place and as desired.
    in_place: BTreeSet<String>,
    /// Entries refused (user input: not retried until the parameters change).
    invalid: BTreeMap<String, String>,
    /// Entries whose request or update failed (retried).
    failed: BTreeMap<String, String>,
}

async fn reconcile(wf: &Workflow, desired: &Desired) -> sdp_workflows::Result<Outcome> {
    let existing = wf.deployments().await?;
    let mut outcome = Outcome {
        invalid: desired.invalid.clone(),
        ..Outcome::default()
    };
    for (key, deployment) in &desired.deployments {
        let result = match existing.get(&deployment.id) {
            None => wf.request_deployment(deployment).await,
            Some(Ok(current)) if current == deployment => Ok(()),
            Some(_) => wf.update_deployment(deployment).await.map(drop),
        };
        match result {
            Ok(()) => {
                outcome.in_place.insert(deployment.id.clone());
            }
            Err(e) if e.ends_workflow() => return Err(e),
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot put deployment in place");
                outcome.failed.insert(key.clone(), e.to_string());
            }
        }
    }
    let wanted: BTreeSet<&String> = desired.deployments.values().map(|d| &d.id).collect();
    for id in existing.keys().filter(|id| !wanted.contains(id)) {
        wf.remove_deployment(id).await?;
    }
    Ok(outcome)
}

async fn record(
    wf: &Workflow,
    outcome: &Outcome,
    invalid_block: Option<&str>,
) -> sdp_workflows::Result<()> {
    let mut errors: BTreeMap<&String, &String> = outcome.invalid.iter().collect();
    errors.extend(outcome.failed.iter());
    wf.update_state(|s| {
        s.extra
            .insert("deployments".into(), json!(outcome.in_place));
        if errors.is_empty() {
            s.extra.remove("deployment_errors");
        } else {
            s.extra.insert("deployment_errors".into(), json!(errors));
        }
        match invalid_block {
            Some(reason) => s.extra.insert("invalid_block".into(), json!(reason)),
            None => s.extra.remove("invalid_block"),
        };
    })
    .await?;
    Ok(())
}

/// Remove every deployment of the block this workflow manages (unless a new owner has
/// taken the block over).
async fn remove_all(wf: &Workflow) -> anyhow::Result<()> {
    let existing = wf
        .deployments()
        .await
        .context("cannot list the deployments to remove")?;
    for id in existing.keys() {
        match wf.remove_deployment(id).await {
            Ok(_) => {}
            Err(e @ Error::NotOwner { .. }) => {
                tracing::warn!(error = %e, "leaving the deployments to the new owner");
                return Ok(());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot remove deployment {id}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sdp_config::entity::DeploymentKind;

    fn desired(v: Value) -> Desired {
        Desired::from_parameters("pb-1", v.as_object().unwrap())
    }

    #[test]
    fn helm_arguments_become_helm_deployments() {
        let d = desired(json!({"dask": {"chart": "dask", "values": {"worker.replicas": 1}}}));
        let dep = &d.deployments["dask"];
        assert_eq!(dep.id, "pb-1-dask");
        let DeploymentKind::Helm(h) = &dep.kind else {
            panic!("not helm: {dep:?}")
        };
        assert_eq!(
            (h.chart.as_str(), &h.values["worker.replicas"]),
            ("dask", &json!(1))
        );
        assert!(d.invalid.is_empty());
    }

    #[test]
    fn full_deployments_keep_their_type_and_a_matching_id() {
        let d = desired(json!({
            "cm": {"type": "kubernetes-direct", "args": {"kind": "ConfigMap"}},
            "p": {"type": "process-direct", "args": {"args": ["sleep", "1"]}, "deploy_id": "pb-1-p"},
        }));
        assert_eq!(d.deployments["cm"].kind.type_name(), "kubernetes-direct");
        assert_eq!(
            d.deployments["p"].to_value()["args"]["args"],
            json!(["sleep", "1"])
        );
    }

    #[test]
    fn invalid_entries_are_refused_with_reasons() {
        let d = desired(json!({
            "n": 5,
            "empty": {},
            "workflow": {"chart": "x"},
            "bad key": {"chart": "x"},
            "other": {"type": "helm", "args": {"chart": "x"}, "deploy_id": "elsewhere"},
            "t": {"type": "docker", "args": {}},
            "v": {"chart": "x", "values": [1]},
        }));
        assert!(d.deployments.is_empty(), "{:?}", d.deployments);
        let why = |k: &str| d.invalid[k].clone();
        assert!(why("n").contains("must be an object"), "{}", why("n"));
        assert!(why("empty").contains("`type`"), "{}", why("empty"));
        assert!(why("workflow").contains("reserved"), "{}", why("workflow"));
        assert!(
            why("bad key").contains("invalid deployment ID"),
            "{}",
            why("bad key")
        );
        assert!(why("other").contains("does not match"), "{}", why("other"));
        assert!(why("t").contains("must be one of"), "{}", why("t"));
        assert!(
            why("v").contains("`args.values` must be an object"),
            "{}",
            why("v")
        );
    }
}
