//! What the deployer keeps of a pod: the few facts a workload report needs, taken from
//! the Kubernetes object as it arrives (the object itself is dropped, so watching a
//! thousand pods costs a thousand small records).

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod};

/// The label Helm charts (ours included) put on every object of a release: its name.
pub(crate) const RELEASE_LABEL: &str = "app.kubernetes.io/instance";

/// Longest `message` kept, in characters (Kubernetes messages can be kilobytes).
pub(crate) const MAX_MESSAGE: usize = 300;

/// What is wrong with a pod, by what Kubernetes says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`,
    /// `ErrImageNeverPull`).
    ImagePull {
        reason: String,
        image: String,
        message: Option<String>,
    },
    /// The container cannot be created (`CreateContainerConfigError`, …).
    Config {
        reason: String,
        container: String,
        message: Option<String>,
    },
    /// The container keeps crashing (`CrashLoopBackOff`).
    CrashLoop {
        container: String,
        exit_code: Option<i32>,
        oom: bool,
    },
    /// A container was killed for using too much memory.
    OomKilled { container: String },
    /// A container ended with an error (in a pod that failed).
    Exited {
        container: String,
        reason: Option<String>,
        exit_code: i32,
        message: Option<String>,
    },
    /// The pod failed as a whole (`Evicted`, `DeadlineExceeded`, …).
    PodFailed {
        reason: Option<String>,
        message: Option<String>,
    },
}

impl Problem {
    /// Kubernetes' word for it.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Problem::ImagePull { reason, .. } | Problem::Config { reason, .. } => reason,
            Problem::CrashLoop { .. } => "CrashLoopBackOff",
            Problem::OomKilled { .. } => "OOMKilled",
            Problem::Exited { reason, .. } => reason.as_deref().unwrap_or("Error"),
            Problem::PodFailed { reason, .. } => reason.as_deref().unwrap_or("Failed"),
        }
    }

    /// Kubernetes' own message, if any.
    pub(crate) fn message(&self) -> Option<&str> {
        match self {
            Problem::ImagePull { message, .. }
            | Problem::Config { message, .. }
            | Problem::Exited { message, .. }
            | Problem::PodFailed { message, .. } => message.as_deref(),
            Problem::CrashLoop { .. } | Problem::OomKilled { .. } => None,
        }
    }

    /// The exit code that explains it, if any.
    pub(crate) fn exit_code(&self) -> Option<i32> {
        match self {
            Problem::CrashLoop { exit_code, .. } => *exit_code,
            Problem::Exited { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}

/// The facts kept of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodFacts {
    /// Pod name.
    pub name: String,
    /// The release it belongs to (its [`RELEASE_LABEL`]).
    pub release: String,
    /// Kubernetes' phase: `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    /// Condition `Ready` is true.
    pub ready: bool,
    /// Restarts of all its containers.
    pub restarts: i64,
    /// The most telling problem, if any.
    pub problem: Option<Problem>,
    /// Unschedulable since (Unix seconds), with the scheduler's message.
    pub unschedulable: Option<(i64, String)>,
    /// Being deleted (`deletionTimestamp` set).
    pub terminating: bool,
}

/// `text` cut to [`MAX_MESSAGE`] characters, on one line.
pub(crate) fn bounded(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_MESSAGE {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_MESSAGE - 1).collect();
    cut.push('…');
    cut
}

fn container_problem(cs: &ContainerStatus, failed_pod: bool) -> Option<Problem> {
    let state = cs.state.as_ref();
    let waiting = state.and_then(|s| s.waiting.as_ref());
    let last_terminated = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    if let Some(w) = waiting {
        let reason = w.reason.clone().unwrap_or_default();
        let message = w.message.as_deref().map(bounded);
        match reason.as_str() {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                return Some(Problem::ImagePull {
                    reason,
                    image: cs.image.clone(),
                    message,
                });
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                return Some(Problem::Config {
                    reason,
                    container: cs.name.clone(),
                    message,
                });
            }
            "CrashLoopBackOff" => {
                return Some(Problem::CrashLoop {
                    container: cs.name.clone(),
                    exit_code: last_terminated.map(|t| t.exit_code),
                    oom: last_terminated.and_then(|t| t.reason.as_deref()) == Some("OOMKilled"),
                });
            }
            _ => {}
        }
    }
    let terminated = state.and_then(|s: &ContainerState| s.terminated.as_ref());
    let oom = [terminated, last_terminated]
        .into_iter()
        .flatten()
        .any(|t| t.reason.as_deref() == Some("OOMKilled"));
    if oom {
        return Some(Problem::OomKilled {
            container: cs.name.clone(),
        });
    }
    match terminated {
        Some(t) if failed_pod && t.exit_code != 0 => Some(Problem::Exited {
            container: cs.name.clone(),
            reason: t.reason.clone(),
            exit_code: t.exit_code,
            message: t.message.as_deref().map(bounded),
        }),
        _ => None,
    }
}

/// Rank of a problem: the lowest explains the pod best.
fn rank(p: &Problem) -> u8 {
    match p {
        Problem::ImagePull { .. } => 0,
        Problem::Config { .. } => 1,
        Problem::CrashLoop { .. } => 2,
        Problem::OomKilled { .. } => 3,
        Problem::Exited { .. } => 4,
        Problem::PodFailed { .. } => 5,
    }
}

/// The facts of `pod`, or `None` when it carries no release label or no name.
pub(crate) fn facts(pod: &Pod) -> Option<PodFacts> {
    let meta = &pod.metadata;
    let name = meta.name.clone()?;
    let release = meta.labels.as_ref()?.get(RELEASE_LABEL)?.clone();
    let status = pod.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let failed = phase == "Failed";
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let unschedulable = conditions
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| {
            (
                c.last_transition_time
                    .as_ref()
                    .map_or(0, |t| t.0.as_second()),
                bounded(c.message.as_deref().unwrap_or("no node fits")),
            )
        });
    let statuses = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect::<Vec<_>>();
    let restarts = statuses.iter().map(|c| i64::from(c.restart_count)).sum();
    let mut problem = statuses
        .iter()
        .filter_map(|c| container_problem(c, failed))
        .min_by_key(rank);
    if problem.is_none() && !ready && !failed {
        // Not ready after a container ended with an error (restarting): say how it ended.
        problem = statuses.iter().find_map(|c| {
            let ended = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
            (ended.exit_code != 0).then(|| Problem::Exited {
                container: c.name.clone(),
                reason: ended.reason.clone(),
                exit_code: ended.exit_code,
                message: ended.message.as_deref().map(bounded),
            })
        });
    }
    if problem.is_none() && failed {
        problem = Some(Problem::PodFailed {
            reason: status.and_then(|s| s.reason.clone()),
            message: status.and_then(|s| s.message.as_deref()).map(bounded),
        });
    }
    Some(PodFacts {
        name,
        release,
        phase,
        ready,
        restarts,
        problem,
        unschedulable,
        terminating: meta.deletion_timestamp.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    fn named(status: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "p-0", "labels": {RELEASE_LABEL: "rel"}},
            "status": status,
        }))
    }

    #[test]
    fn pods_without_release_label_are_not_ours() {
        let p = pod(serde_json::json!({"metadata": {"name": "x", "labels": {"a": "b"}}}));
        assert_eq!(facts(&p), None);
    }

    #[test]
    fn running_and_ready() {
        let f = facts(&named(serde_json::json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
                "state": {"running": {}}}],
        })))
        .expect("facts");
        assert_eq!(f.release, "rel");
        assert_eq!(f.phase, "Running");
        assert!(f.ready);
        assert_eq!(f.restarts, 2);
        assert_eq!(f.problem, None);
    }

    #[test]
    fn image_pull_error_names_the_image() {
        let f = facts(&named(serde_json::json!({
            "phase": "Pending",
            "containerStatuses": [{"name": "c", "image": "sdp/x:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"sdp/x:1\""}}}],
        })))
        .expect("facts");
        assert_eq!(
            f.problem,
            Some(Problem::ImagePull {
                reason: "ImagePullBackOff".into(),
                image: "sdp/x:1".into(),
                message: Some("Back-off pulling image \"sdp/x:1\"".into()),
            })
        );
    }

    #[test]
    fn crash_loop_keeps_the_last_exit_code_and_oom() {
        let f = facts(&named(serde_json::json!({
            "phase": "Running",
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
        })))
        .expect("facts");
        assert_eq!(
            f.problem,
            Some(Problem::CrashLoop {
                container: "c".into(),
                exit_code: Some(137),
                oom: true
            })
        );
        assert_eq!(f.restarts, 7);
    }

    #[test]
    fn unschedulable_since_its_transition() {
        let f = facts(&named(serde_json::json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.", "lastTransitionTime": "2026-12-01T10:00:00Z"}],
        })))
        .expect("facts");
        let (since, message) = f.unschedulable.expect("unschedulable");
        assert_eq!(since, 1_796_119_200);
        assert_eq!(message, "0/3 nodes are available: 3 Insufficient cpu.");
    }

    #[test]
    fn failed_pod_explained_by_its_container_or_itself() {
        let f = facts(&named(serde_json::json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}],
        })))
        .expect("facts");
        assert_eq!(f.problem.as_ref().map(Problem::exit_code), Some(Some(3)));
        let evicted = facts(&named(serde_json::json!({
            "phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
        })))
        .expect("facts");
        assert_eq!(
            evicted.problem.as_ref().map(Problem::reason),
            Some("Evicted")
        );
    }

    #[test]
    fn a_restarting_container_tells_how_it_last_ended() {
        let f = facts(&named(serde_json::json!({
            "phase": "Running",
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 1,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}],
        })))
        .expect("facts");
        assert_eq!(f.problem.as_ref().map(Problem::exit_code), Some(Some(137)));
        assert_eq!(f.problem.as_ref().map(Problem::reason), Some("Error"));
    }

    #[test]
    fn messages_are_bounded_and_on_one_line() {
        let long = "x".repeat(5000);
        assert_eq!(bounded(&long).chars().count(), MAX_MESSAGE);
        assert_eq!(bounded("a\n  b"), "a b");
    }
}
