//! What a deployment's state (`/deploy/<id>/state`, written by the Helm deployer, see
//! `docs/states.md`) tells the controller about the deployment's block: whether the
//! deployment is failing and why, in one line, and how its pods ended. The controller
//! only reads these states; anything it does not understand counts as "not failing".

use sdp_config::entity::DeploymentStatus;
use serde_json::Value;

/// Longest cause kept from a deployment's state (the deployer bounds its own messages;
/// this keeps a block's state small whatever it wrote).
const MAX_LINE_CHARS: usize = 500;
/// Most pods whose exit is quoted in a block's reason.
const MAX_EXITED_PODS: usize = 3;

/// Why a deployment is failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failing {
    /// Helm gave up (`status: FAILED`): the state's `message`.
    Helm(String),
    /// What Helm installed failed (`workload.phase: FAILED`): `workload.message`.
    Workload(String),
}

impl Failing {
    /// The cause in one line, as the deployer wrote it.
    pub(crate) fn cause(&self) -> &str {
        match self {
            Failing::Helm(m) | Failing::Workload(m) => m,
        }
    }
}

/// A deployment's state as last seen, reduced to what decides its block's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeployReport {
    /// `create_revision` of the state key. The deployer's retry starts from a deleted
    /// state, so a state created after the block's state was last written is a new
    /// attempt whatever it says.
    pub created: i64,
    /// `None` when the deployment is not failing.
    pub failing: Option<Failing>,
    /// How its pods ended when the state says (`pod x: Error, exit code 1`).
    pub exit: Option<String>,
}

impl DeployReport {
    /// Read a stored state; `created` is its key's `create_revision`.
    pub(crate) fn parse(text: &str, created: i64) -> Self {
        // Read as plain JSON rather than through `DeploymentState`: the fields are the
        // contract (`docs/states.md`), however the deployer's own type holds them.
        let state: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let field = |v: Option<&Value>, name: &str| {
            v.and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(one_line)
                .filter(|s| !s.is_empty())
        };
        let workload = state.get("workload").filter(|w| w.is_object());
        let status = state.get("status").and_then(Value::as_str);
        let failing = if status == Some(DeploymentStatus::Failed.as_str()) {
            Some(Failing::Helm(
                field(Some(&state), "message")
                    .unwrap_or_else(|| "Helm gave up (no message)".into()),
            ))
        } else if workload
            .and_then(|w| w.get("phase"))
            .and_then(Value::as_str)
            == Some("FAILED")
        {
            Some(Failing::Workload(
                field(workload, "message")
                    .unwrap_or_else(|| "its workload failed (no message)".into()),
            ))
        } else {
            None
        };
        let exit = workload
            .and_then(|w| w.get("pods"))
            .and_then(Value::as_array)
            .map(|pods| pods.iter().filter_map(pod_exit).take(MAX_EXITED_PODS))
            .map(|exits| exits.collect::<Vec<_>>().join("; "))
            .filter(|s| !s.is_empty());
        DeployReport {
            created,
            failing,
            exit,
        }
    }
}

/// `pod <name>: <reason>, exit code <n>` for a pod whose entry explains how it ended.
fn pod_exit(pod: &Value) -> Option<String> {
    let name = pod.get("name").and_then(Value::as_str).map(one_line)?;
    let reason = pod.get("reason").and_then(Value::as_str).map(one_line);
    let code = pod.get("exit_code").and_then(Value::as_i64);
    let how = match (reason, code) {
        (Some(r), Some(c)) => format!("{r}, exit code {c}"),
        (Some(r), None) => r,
        (None, Some(c)) => format!("exit code {c}"),
        (None, None) => return None,
    };
    Some(format!("pod {name}: {how}"))
}

/// `text` on one line (line breaks become spaces) of at most [`MAX_LINE_CHARS`].
pub(crate) fn one_line(text: &str) -> String {
    let flat: String = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if flat.chars().count() <= MAX_LINE_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(MAX_LINE_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(v: Value) -> DeployReport {
        DeployReport::parse(&v.to_string(), 7)
    }

    #[test]
    fn helm_giving_up_comes_before_the_workload() {
        let r = report(
            json!({"status": "FAILED", "message": "cluster\nunreachable",
            "workload": {"phase": "FAILED", "message": "pod x: gone"}}),
        );
        assert_eq!(r.failing, Some(Failing::Helm("cluster unreachable".into())));
        assert_eq!(r.created, 7);
    }

    #[test]
    fn a_failed_workload_is_failing_with_its_message() {
        let r = report(json!({"status": "DEPLOYED", "workload": {"phase": "FAILED",
            "message": "pod x: image \"i\" cannot be pulled (ImagePullBackOff)"}}));
        assert_eq!(
            r.failing.as_ref().map(Failing::cause),
            Some("pod x: image \"i\" cannot be pulled (ImagePullBackOff)")
        );
        let r = report(json!({"status": "DEPLOYED", "workload": {"phase": "FAILED"}}));
        assert_eq!(
            r.failing,
            Some(Failing::Workload("its workload failed (no message)".into()))
        );
    }

    #[test]
    fn anything_else_is_not_failing() {
        for v in [
            json!({"status": "DEPLOYED", "workload": {"phase": "RUNNING"}}),
            json!({"status": "INSTALLING"}),
            json!({"status": 3}),
            json!({"workload": "odd"}),
            json!([]),
        ] {
            assert_eq!(report(v.clone()).failing, None, "{v}");
        }
        assert_eq!(DeployReport::parse("not json", 1).failing, None);
    }

    #[test]
    fn pods_that_say_how_they_ended_give_the_exit() {
        let r = report(
            json!({"status": "DEPLOYED", "workload": {"phase": "FAILED", "pods": [
                {"name": "a", "phase": "Running", "ready": true, "restarts": 0},
                {"name": "w", "phase": "Failed", "ready": false, "restarts": 0, "reason": "Error", "exit_code": 2},
                {"name": "v", "phase": "Failed", "ready": false, "restarts": 3, "exit_code": 137}
            ]}}),
        );
        assert_eq!(
            r.exit.as_deref(),
            Some("pod w: Error, exit code 2; pod v: exit code 137")
        );
    }

    #[test]
    fn long_causes_are_cut() {
        let line = one_line(&"x".repeat(2 * MAX_LINE_CHARS));
        assert_eq!(line.chars().count(), MAX_LINE_CHARS);
        assert!(line.ends_with('…'));
    }
}
