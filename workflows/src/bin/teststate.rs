//! `teststate <pb_id>`: walks the block's state through RUNNING to FINISHED, or to
//! FAILED on request, to exercise state handling and dependencies.
//!
//! Parameters of the block (all optional):
//! - `duration`: seconds to stay RUNNING (default 1);
//! - `fail`: `true` to end FAILED instead of FINISHED;
//! - `reason`: the reason recorded with FAILED.
//!
//! Invalid parameters end the block FAILED with a reason saying what is wrong. On
//! SIGINT/SIGTERM before the end the state becomes CANCELLED. When the block is deleted
//! or ownership is lost meanwhile, it just releases the claim. Exit status 0 in all
//! these cases; non-zero only when the block cannot be claimed or etcd fails.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sdp_config::entity::PbStatus;
use sdp_workflows::{Workflow, cli};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

const DEFAULT_DURATION: Duration = Duration::from_secs(1);
const DEFAULT_FAILURE: &str = "failure requested by the block's parameters (fail: true)";

fn main() -> ExitCode {
    cli::main("teststate", run)
}

async fn run(pb_id: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(wf) = cli::start(&pb_id, &shutdown)
        .await
        .context("cannot start")?
    else {
        return Ok(());
    };
    let result = cli::stopped_normally(walk(&wf, &shutdown).await);
    wf.finish().await.context("cannot release the claim")?;
    Ok(result?)
}

async fn walk(wf: &Workflow, shutdown: &CancellationToken) -> sdp_workflows::Result<()> {
    let plan = match Plan::from_parameters(wf.parameters()) {
        Ok(plan) => plan,
        Err(reason) => {
            wf.set_status(PbStatus::Failed, Some(&reason)).await?;
            return Ok(());
        }
    };
    wf.set_status(PbStatus::Running, None).await?;
    tokio::select! {
        () = tokio::time::sleep(plan.duration) => {}
        end = wf.ended() => {
            tracing::info!(%end, "stopping early");
            return Ok(());
        }
        () = shutdown.cancelled() => {
            wf.set_status(PbStatus::Cancelled, Some("the workflow was stopped by a signal before it finished")).await?;
            return Ok(());
        }
    }
    match plan.failure {
        None => wf.set_status(PbStatus::Finished, None).await?,
        Some(reason) => wf.set_status(PbStatus::Failed, Some(&reason)).await?,
    };
    Ok(())
}

/// What the parameters ask for.
#[derive(Debug, PartialEq)]
struct Plan {
    duration: Duration,
    /// `Some(reason)` to end FAILED.
    failure: Option<String>,
}

impl Plan {
    fn from_parameters(p: &Map<String, Value>) -> Result<Plan, String> {
        let duration = match p.get("duration") {
            None | Some(Value::Null) => DEFAULT_DURATION,
            Some(v) => v
                .as_f64()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("invalid parameters: `duration` must be a non-negative number of seconds, found {v}"))?,
        };
        let fail = match p.get("fail") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(format!(
                    "invalid parameters: `fail` must be true or false, found {v}"
                ));
            }
        };
        let reason = match p.get("reason") {
            None | Some(Value::Null) => DEFAULT_FAILURE.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(format!(
                    "invalid parameters: `reason` must be a string, found {v}"
                ));
            }
        };
        Ok(Plan {
            duration,
            failure: fail.then_some(reason),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(v: Value) -> Result<Plan, String> {
        Plan::from_parameters(v.as_object().unwrap())
    }

    #[test]
    fn defaults_are_one_second_and_success() {
        assert_eq!(
            plan(json!({})),
            Ok(Plan {
                duration: Duration::from_secs(1),
                failure: None
            })
        );
    }

    #[test]
    fn failure_uses_the_given_reason_or_a_default() {
        assert_eq!(
            plan(json!({"fail": true, "duration": 0.5}))
                .unwrap()
                .failure
                .as_deref(),
            Some(DEFAULT_FAILURE)
        );
        let p = plan(json!({"fail": true, "reason": "disk full", "duration": 0})).unwrap();
        assert_eq!(
            p,
            Plan {
                duration: Duration::ZERO,
                failure: Some("disk full".into())
            }
        );
    }

    #[test]
    fn wrong_parameters_say_which_and_why() {
        assert!(
            plan(json!({"duration": "long"}))
                .unwrap_err()
                .contains("`duration` must be a non-negative number")
        );
        assert!(plan(json!({"duration": -1})).is_err());
        assert!(
            plan(json!({"fail": "yes"}))
                .unwrap_err()
                .contains("`fail` must be true or false")
        );
        assert!(
            plan(json!({"reason": 3}))
                .unwrap_err()
                .contains("`reason` must be a string")
        );
    }
}
