//! Reading the few fields the overview shows out of stored values, leniently: a value
//! of an unexpected shape gives empty fields, never an error, and nothing else of the
//! value is kept (values may hold credentials).

use serde::Deserialize;
use serde_json::Value;

use super::summary::OwnerSummary;

/// Longest text kept from a stored message or reason, in characters: a bound on memory
/// whatever a writer stored, ample for the one line a person reads.
pub const MAX_TEXT: usize = 1_000;

/// A string field, cut to [`MAX_TEXT`]; anything but a string reads as absent.
fn text(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(bounded(s)),
        _ => None,
    }
}

fn bounded(s: String) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

/// Parse `text` as `T`, or `T::default()` when it does not fit.
fn lenient<T: for<'de> Deserialize<'de> + Default>(raw: &str) -> T {
    serde_json::from_str(raw).unwrap_or_default()
}

/// `/pb/<id>`: only the workflow.
#[derive(Default, Deserialize)]
struct BlockValue {
    workflow: Option<WorkflowValue>,
}

#[derive(Default, Deserialize)]
struct WorkflowValue {
    #[serde(rename = "type")]
    kind: Option<Value>,
    id: Option<Value>,
    version: Option<Value>,
}

/// The workflow of a stored block as `type:id:version`, when all three are strings.
pub(crate) fn block_workflow(raw: &str) -> Option<String> {
    let w = lenient::<BlockValue>(raw).workflow?;
    match (w.kind, w.id, w.version) {
        (Some(Value::String(k)), Some(Value::String(i)), Some(Value::String(v))) => {
            Some(bounded(format!("{k}:{i}:{v}")))
        }
        _ => None,
    }
}

/// `/pb/<id>/state`: status (or the older workflows' `state`), reason and since.
#[derive(Default, Deserialize)]
struct BlockStateValue {
    status: Option<Value>,
    state: Option<Value>,
    reason: Option<Value>,
    since: Option<Value>,
}

/// The fields of a block state the overview shows.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockState {
    pub status: Option<String>,
    pub reason: Option<String>,
    pub since: Option<String>,
}

pub(crate) fn block_state(raw: &str) -> BlockState {
    let v: BlockStateValue = lenient(raw);
    BlockState {
        // Older workflows write `{"state": "executing", …}` and no status.
        status: text(v.status).or_else(|| text(v.state)),
        reason: text(v.reason),
        since: text(v.since),
    }
}

/// `/pb/<id>/owner`: where the owner runs (its command line is not kept).
#[derive(Default, Deserialize)]
struct OwnerValue {
    hostname: Option<Value>,
    pid: Option<Value>,
}

pub(crate) fn owner(raw: &str) -> OwnerSummary {
    let v: OwnerValue = lenient(raw);
    OwnerSummary {
        hostname: text(v.hostname),
        pid: v.pid.and_then(|p| p.as_u64()),
    }
}

/// `/deploy/<id>`: type and chart; the values are skipped unread.
#[derive(Default, Deserialize)]
struct DeploymentValue {
    #[serde(rename = "type")]
    kind: Option<Value>,
    args: Option<ArgsValue>,
}

#[derive(Default, Deserialize)]
struct ArgsValue {
    chart: Option<Value>,
}

/// Type and chart (of a helm deployment) of a stored deployment.
pub(crate) fn deployment(raw: &str) -> (Option<String>, Option<String>) {
    // `args` of a non-helm deployment may be anything: when it does not read as helm
    // args, read the type alone so that an odd `args` does not hide it.
    #[derive(Default, Deserialize)]
    struct KindOnly {
        #[serde(rename = "type")]
        kind: Option<Value>,
    }
    match serde_json::from_str::<DeploymentValue>(raw) {
        Ok(v) => {
            let kind = text(v.kind);
            let chart = match kind.as_deref() {
                Some("helm") => v.args.and_then(|a| text(a.chart)),
                _ => None,
            };
            (kind, chart)
        }
        Err(_) => (text(lenient::<KindOnly>(raw).kind), None),
    }
}

/// `/deploy/<id>/state`: release status and message, workload phase and message.
#[derive(Default, Deserialize)]
struct DeploymentStateValue {
    status: Option<Value>,
    message: Option<Value>,
    workload: Option<WorkloadValue>,
}

#[derive(Default, Deserialize)]
struct WorkloadValue {
    phase: Option<Value>,
    message: Option<Value>,
}

/// The fields of a deployment state the overview shows.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DeploymentState {
    pub status: Option<String>,
    pub message: Option<String>,
    pub workload_phase: Option<String>,
    pub workload_message: Option<String>,
}

pub(crate) fn deployment_state(raw: &str) -> DeploymentState {
    let v: DeploymentStateValue = lenient(raw);
    let (workload_phase, workload_message) = v
        .workload
        .map(|w| (text(w.phase), text(w.message)))
        .unwrap_or_default();
    DeploymentState {
        status: text(v.status),
        message: text(v.message),
        workload_phase,
        workload_message,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_block_shows_its_workflow_and_nothing_else() {
        let raw = r#"{"pb_id":"a","workflow":{"type":"realtime","id":"testdask","version":"0.1.0"},"parameters":{"password":"x"}}"#;
        assert_eq!(
            block_workflow(raw).as_deref(),
            Some("realtime:testdask:0.1.0")
        );
        assert_eq!(block_workflow("not json"), None);
        assert_eq!(block_workflow(r#"{"workflow":{"type":1}}"#), None);
    }

    #[test]
    fn block_state_reads_the_contract_fields_and_the_older_shape() {
        let st = block_state(
            r#"{"status":"FAILED","reason":"no such workflow","since":"2026-12-01T10:00:00Z","deployments":{"x":"y"}}"#,
        );
        assert_eq!(st.status.as_deref(), Some("FAILED"));
        assert_eq!(st.reason.as_deref(), Some("no such workflow"));
        assert_eq!(st.since.as_deref(), Some("2026-12-01T10:00:00Z"));
        assert_eq!(
            block_state(r#"{"state":"executing"}"#).status.as_deref(),
            Some("executing")
        );
        assert_eq!(block_state("[]"), BlockState::default());
        assert_eq!(block_state(r#"{"status":5}"#).status, None);
    }

    #[test]
    fn long_texts_are_bounded() {
        let long = "é".repeat(MAX_TEXT + 10);
        let st = block_state(&serde_json::json!({ "reason": long }).to_string());
        let reason = st.reason.unwrap();
        assert_eq!(reason.chars().count(), MAX_TEXT + 1);
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn an_owner_keeps_host_and_pid_but_not_its_command() {
        let o = owner(r#"{"command":["w.py","--token","secret"],"hostname":"node1","pid":42}"#);
        assert_eq!(o.hostname.as_deref(), Some("node1"));
        assert_eq!(o.pid, Some(42));
        assert_eq!(owner("x"), OwnerSummary::default());
    }

    #[test]
    fn a_deployment_shows_type_and_chart_only() {
        let raw =
            r#"{"deploy_id":"d","type":"helm","args":{"chart":"dask","values":{"password":"s"}}}"#;
        assert_eq!(deployment(raw), (Some("helm".into()), Some("dask".into())));
        assert_eq!(
            deployment(r#"{"type":"process-direct","args":["odd"]}"#),
            (Some("process-direct".into()), None)
        );
        assert_eq!(
            deployment(r#"{"type":"kubernetes-direct","args":{"kind":7}}"#),
            (Some("kubernetes-direct".into()), None)
        );
    }

    #[test]
    fn a_deployment_state_shows_release_and_workload() {
        let st = deployment_state(
            r#"{"status":"DEPLOYED","message":"installed: revision 1","workload":{"phase":"FAILED","message":"pod p: image cannot be pulled","pods":[{"name":"p"}]}}"#,
        );
        assert_eq!(st.status.as_deref(), Some("DEPLOYED"));
        assert_eq!(st.message.as_deref(), Some("installed: revision 1"));
        assert_eq!(st.workload_phase.as_deref(), Some("FAILED"));
        assert_eq!(
            st.workload_message.as_deref(),
            Some("pod p: image cannot be pulled")
        );
        assert_eq!(
            deployment_state(r#"{"status":"PENDING"}"#).workload_phase,
            None
        );
    }
}
