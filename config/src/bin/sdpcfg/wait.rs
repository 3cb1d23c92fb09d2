//! `process --wait`: after creating a block, follow its state key (one watch: listed,
//! then changes) until the block has started, failed, or the time is up.

use std::time::Duration;

use anyhow::{Result, bail};
use sdp_config::entity::{PbStatus, ProcessingBlock, ProcessingBlockState};
use sdp_config::{Config, WatchEvent};

/// What the block's state says about starting.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    /// No state yet, or a status that is neither started nor failed.
    Waiting(Option<String>),
    /// `STARTING`, `WAITING`, `RUNNING` or `FINISHED`.
    Started(String),
    /// `FAILED` or `CANCELLED`, with the reason when there is one.
    Ended {
        status: String,
        reason: Option<String>,
    },
}

fn progress(state: Option<&str>) -> Progress {
    let Some(state) = state.and_then(|s| ProcessingBlockState::parse(s).ok()) else {
        return Progress::Waiting(None);
    };
    match state.known_status() {
        Some(PbStatus::Starting | PbStatus::Waiting | PbStatus::Running | PbStatus::Finished) => {
            Progress::Started(state.status.unwrap_or_default())
        }
        Some(PbStatus::Failed | PbStatus::Cancelled) => Progress::Ended {
            status: state.status.unwrap_or_default(),
            reason: state.reason,
        },
        None => Progress::Waiting(state.status),
    }
}

/// Wait until block `id` has started (its status, e.g. `STARTING`, is returned).
///
/// # Errors
/// The block failed or was cancelled (the message has the reason), the time is up, or
/// the watch cannot be set up.
pub async fn until_started(db: &Config, id: &str, limit: Duration) -> Result<String> {
    let state_path = ProcessingBlock::state_path(id);
    let mut watch = db.watch(&format!("{}/", ProcessingBlock::path(id)), 0, None)?;
    let mut last = Progress::Waiting(None);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match &last {
            Progress::Started(status) => return Ok(status.clone()),
            Progress::Ended { status, reason } => {
                bail!("{}", ended(id, status, reason.as_deref()))
            }
            Progress::Waiting(_) => {}
        }
        let event = tokio::select! {
            () = tokio::time::sleep_until(deadline) => None,
            event = watch.next() => event,
        };
        let Some(event) = event else {
            let now = match &last {
                Progress::Waiting(Some(status)) => format!("its status is {status}"),
                _ => "it has no state yet".to_string(),
            };
            bail!(
                "processing block {id} did not start within {}: {now} (see `sdpcfg status` or {state_path})",
                seconds(limit)
            );
        };
        last = match event {
            WatchEvent::Listed { entries, .. } => progress(
                entries
                    .iter()
                    .find(|e| e.path == state_path)
                    .map(|e| e.value.as_str()),
            ),
            WatchEvent::Put(e) if e.path == state_path => progress(Some(&e.value)),
            WatchEvent::Deleted { path, .. } if path == state_path => Progress::Waiting(None),
            _ => last,
        };
    }
}

/// `processing block <id> FAILED: <reason>`, without naming the block twice when the
/// reason (the controller's) already names it.
fn ended(id: &str, status: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) if reason.contains(id) => format!("{status}: {reason}"),
        Some(reason) => format!("processing block {id} {status}: {reason}"),
        None => format!("processing block {id} {status}"),
    }
}

/// `30 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_started_ended_or_waiting() {
        assert_eq!(progress(None), Progress::Waiting(None));
        assert_eq!(progress(Some("not json")), Progress::Waiting(None));
        assert_eq!(
            progress(Some(r#"{"status":"STARTING","resources_available":false}"#)),
            Progress::Started("STARTING".into())
        );
        assert_eq!(
            progress(Some(r#"{"status":"FAILED","reason":"unknown workflow"}"#)),
            Progress::Ended {
                status: "FAILED".into(),
                reason: Some("unknown workflow".into())
            }
        );
        assert_eq!(
            progress(Some(r#"{"state":"executing"}"#)),
            Progress::Waiting(None)
        );
        assert_eq!(
            progress(Some(r#"{"status":"SLEEPING"}"#)),
            Progress::Waiting(Some("SLEEPING".into()))
        );
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn an_ended_block_is_named_once() {
        assert_eq!(
            ended(
                "b-1",
                "FAILED",
                Some("processing block b-1 cannot start: x")
            ),
            "FAILED: processing block b-1 cannot start: x"
        );
        assert_eq!(
            ended("b-1", "FAILED", Some("workflow exited")),
            "processing block b-1 FAILED: workflow exited"
        );
        assert_eq!(
            ended("b-1", "CANCELLED", None),
            "processing block b-1 CANCELLED"
        );
    }
}
