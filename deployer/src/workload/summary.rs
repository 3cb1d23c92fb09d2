//! What became of a release in Kubernetes, in the SKA vocabulary, from the facts of its
//! pods: the `workload` object of `/deploy/<id>/state` (docs/states.md). Pure: the time
//! comes in as an argument.

use serde_json::{Map, Value, json};

use super::pod::{PodFacts, Problem};

/// When a workload counts as failed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// A crash-looping pod with at least this many restarts is FAILED.
    pub max_restarts: i64,
    /// A pod unschedulable for this many seconds is FAILED.
    pub unschedulable_secs: i64,
}

/// The phase of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Pending,
    Running,
    Finished,
    Failed,
    Cancelled,
    /// Nothing runs (the render target).
    None,
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Running => "RUNNING",
            Phase::Finished => "FINISHED",
            Phase::Failed => "FAILED",
            Phase::Cancelled => "CANCELLED",
            Phase::None => "NONE",
        }
    }
}

/// A workload report, without its time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Workload {
    pub phase: Phase,
    /// One line: the cause when something is wrong.
    pub message: String,
    /// Per pod, as written.
    pub pods: Vec<Value>,
    /// Look again at this time (Unix seconds): a pod turns FAILED then if nothing changes.
    pub recheck_at: Option<i64>,
}

impl Workload {
    /// The object written under `workload`, with `updated`.
    pub(crate) fn to_value(&self, updated: &str) -> Value {
        let mut v = self.content();
        if let Value::Object(map) = &mut v {
            map.insert("updated".into(), Value::String(updated.into()));
        }
        v
    }

    /// The object without `updated`: what decides whether a write is needed.
    pub(crate) fn content(&self) -> Value {
        json!({
            "phase": self.phase.as_str(),
            "message": self.message,
            "pods": self.pods,
        })
    }

    /// The render target's report: nothing runs.
    pub(crate) fn nothing_runs(dir: &str) -> Workload {
        Workload {
            phase: Phase::None,
            message: format!(
                "render target: manifests are written to {dir}, nothing runs in Kubernetes"
            ),
            pods: Vec::new(),
            recheck_at: None,
        }
    }

    /// A release being removed.
    pub(crate) fn cancelled(pods: Vec<Value>) -> Workload {
        Workload {
            phase: Phase::Cancelled,
            message: "the release is being removed".into(),
            pods,
            recheck_at: None,
        }
    }
}

/// Whether a stored `workload` object says what `w` says (`updated` aside).
pub(crate) fn same(stored: Option<&Value>, w: &Workload) -> bool {
    let Some(Value::Object(stored)) = stored else {
        return false;
    };
    let mut stored: Map<String, Value> = stored.clone();
    stored.remove("updated");
    Value::Object(stored) == w.content()
}

/// How one pod stands.
enum Verdict {
    Failed(String),
    Pending(Option<String>),
    Running,
    Finished,
}

fn cause(problem: &Problem, restarts: i64) -> String {
    match problem {
        Problem::ImagePull { reason, image, .. } => {
            format!("image {image:?} cannot be pulled ({reason})")
        }
        Problem::Config {
            reason,
            container,
            message,
        } => match message {
            Some(m) => format!("container {container} cannot be created ({reason}): {m}"),
            None => format!("container {container} cannot be created ({reason})"),
        },
        Problem::CrashLoop {
            container,
            exit_code,
            oom,
        } => {
            let last = match (oom, exit_code) {
                (true, _) => ", last killed: out of memory (OOMKilled)".to_string(),
                (false, Some(code)) => format!(", last exit code {code}"),
                (false, None) => String::new(),
            };
            format!(
                "container {container} keeps crashing (CrashLoopBackOff, {restarts} restarts{last})"
            )
        }
        Problem::OomKilled { container } => {
            format!("container {container} was killed: out of memory (OOMKilled)")
        }
        Problem::Exited {
            container,
            reason,
            exit_code,
            message,
        } => {
            let why = reason.as_deref().unwrap_or("Error");
            match message {
                Some(m) => {
                    format!("container {container} exited with code {exit_code} ({why}): {m}")
                }
                None => format!("container {container} exited with code {exit_code} ({why})"),
            }
        }
        Problem::PodFailed { reason, message } => match (reason, message) {
            (Some(r), Some(m)) => format!("failed ({r}): {m}"),
            (Some(r), None) => format!("failed ({r})"),
            (None, Some(m)) => format!("failed: {m}"),
            (None, None) => "failed".into(),
        },
    }
}

fn verdict(pod: &PodFacts, limits: &Limits, now: i64, recheck: &mut Option<i64>) -> Verdict {
    match pod.phase.as_str() {
        "Succeeded" => return Verdict::Finished,
        "Failed" => {
            let why = pod
                .problem
                .as_ref()
                .map_or_else(|| "failed".to_string(), |p| cause(p, pod.restarts));
            return Verdict::Failed(why);
        }
        _ => {}
    }
    if let Some(p) = &pod.problem {
        let why = cause(p, pod.restarts);
        let fatal = match p {
            Problem::ImagePull { .. } => true,
            Problem::CrashLoop { .. } => pod.restarts >= limits.max_restarts,
            _ => false,
        };
        return if fatal {
            Verdict::Failed(why)
        } else {
            Verdict::Pending(Some(why))
        };
    }
    if let Some((since, message)) = &pod.unschedulable {
        let deadline = since.saturating_add(limits.unschedulable_secs);
        let waited = now.saturating_sub(*since).max(0);
        if now >= deadline {
            return Verdict::Failed(format!(
                "cannot be scheduled for {waited} s (Unschedulable): {message}"
            ));
        }
        *recheck = Some(recheck.map_or(deadline, |r| r.min(deadline)));
        return Verdict::Pending(Some(format!(
            "cannot be scheduled yet (Unschedulable): {message}"
        )));
    }
    if pod.phase == "Running" && pod.ready {
        Verdict::Running
    } else {
        Verdict::Pending(None)
    }
}

/// What is written of one pod.
fn pod_value(pod: &PodFacts) -> Value {
    let mut v = json!({
        "name": pod.name,
        "phase": pod.phase,
        "ready": pod.ready,
        "restarts": pod.restarts,
    });
    let (reason, message, exit_code) = match (&pod.problem, &pod.unschedulable) {
        (Some(p), _) => (
            Some(p.reason().to_string()),
            p.message().map(str::to_string),
            p.exit_code(),
        ),
        (None, Some((_, m))) => (Some("Unschedulable".to_string()), Some(m.clone()), None),
        (None, None) => (None, None, None),
    };
    if let Value::Object(map) = &mut v {
        if let Some(r) = reason {
            map.insert("reason".into(), Value::String(r));
        }
        if let Some(m) = message {
            map.insert("message".into(), Value::String(m));
        }
        if let Some(c) = exit_code {
            map.insert("exit_code".into(), Value::from(c));
        }
    }
    v
}

/// The workload of a release from its pods (sorted by name); `removing` when the
/// release is being uninstalled; `now` in Unix seconds.
pub(crate) fn summarize(pods: &[&PodFacts], removing: bool, limits: &Limits, now: i64) -> Workload {
    let values: Vec<Value> = pods.iter().map(|p| pod_value(p)).collect();
    if removing || (!pods.is_empty() && pods.iter().all(|p| p.terminating)) {
        return Workload::cancelled(values);
    }
    if pods.is_empty() {
        return Workload {
            phase: Phase::Pending,
            message: "no pods yet".into(),
            pods: values,
            recheck_at: None,
        };
    }
    let mut recheck = None;
    let verdicts: Vec<(&PodFacts, Verdict)> = pods
        .iter()
        .map(|p| (*p, verdict(p, limits, now, &mut recheck)))
        .collect();
    let (phase, message) = if let Some((p, why)) = verdicts.iter().find_map(|(p, v)| match v {
        Verdict::Failed(why) => Some((p, why)),
        _ => None,
    }) {
        (Phase::Failed, format!("pod {}: {why}", p.name))
    } else if verdicts.iter().all(|(_, v)| matches!(v, Verdict::Finished)) {
        (Phase::Finished, String::new())
    } else if verdicts
        .iter()
        .all(|(_, v)| matches!(v, Verdict::Finished | Verdict::Running))
    {
        (Phase::Running, String::new())
    } else {
        let waiting = verdicts.iter().find_map(|(p, v)| match v {
            Verdict::Pending(Some(why)) => Some(format!("pod {}: {why}", p.name)),
            _ => None,
        });
        let message = waiting.unwrap_or_else(|| {
            let not_ready = verdicts
                .iter()
                .filter(|(_, v)| matches!(v, Verdict::Pending(None)))
                .map(|(p, _)| p.name.as_str())
                .collect::<Vec<_>>();
            match not_ready.as_slice() {
                [one] => format!("pod {one}: not ready yet"),
                more => format!("{} pods not ready yet", more.len()),
            }
        });
        (Phase::Pending, message)
    };
    Workload {
        phase,
        message: super::pod::bounded(&message),
        pods: values,
        recheck_at: if phase == Phase::Failed {
            None
        } else {
            recheck
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_restarts: 5,
        unschedulable_secs: 300,
    };

    fn pod(name: &str, phase: &str, ready: bool) -> PodFacts {
        PodFacts {
            name: name.into(),
            release: "rel".into(),
            phase: phase.into(),
            ready,
            restarts: 0,
            problem: None,
            unschedulable: None,
            terminating: false,
        }
    }

    fn summary(pods: &[PodFacts]) -> Workload {
        let refs: Vec<&PodFacts> = pods.iter().collect();
        summarize(&refs, false, &LIMITS, 1000)
    }

    #[test]
    fn running_only_when_every_pod_is_running_and_ready() {
        let w = summary(&[pod("a", "Running", true), pod("b", "Running", true)]);
        assert_eq!((w.phase, w.message.as_str()), (Phase::Running, ""));
        let w = summary(&[pod("a", "Running", true), pod("b", "Running", false)]);
        assert_eq!(w.phase, Phase::Pending);
        assert_eq!(w.message, "pod b: not ready yet");
        let w = summary(&[pod("a", "Pending", false), pod("b", "Pending", false)]);
        assert_eq!(w.message, "2 pods not ready yet");
    }

    #[test]
    fn finished_when_every_pod_succeeded() {
        let w = summary(&[pod("a", "Succeeded", false)]);
        assert_eq!(w.phase, Phase::Finished);
        let w = summary(&[pod("a", "Succeeded", false), pod("b", "Running", true)]);
        assert_eq!(w.phase, Phase::Running);
    }

    #[test]
    fn image_pull_error_fails_at_once_with_the_image() {
        let mut p = pod("wf-x7k2p", "Pending", false);
        p.problem = Some(Problem::ImagePull {
            reason: "ImagePullBackOff".into(),
            image: "sdp/workflow-testdask:0.1.0".into(),
            message: Some("Back-off pulling image".into()),
        });
        let w = summary(&[p, pod("other", "Running", true)]);
        assert_eq!(w.phase, Phase::Failed);
        assert_eq!(
            w.message,
            "pod wf-x7k2p: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)"
        );
        assert_eq!(w.pods[0]["reason"], "ImagePullBackOff");
        assert_eq!(w.pods[0]["message"], "Back-off pulling image");
    }

    #[test]
    fn crash_loop_fails_past_the_restart_limit() {
        let mut p = pod("a", "Running", false);
        p.problem = Some(Problem::CrashLoop {
            container: "workflow".into(),
            exit_code: Some(2),
            oom: false,
        });
        p.restarts = 4;
        let w = summary(std::slice::from_ref(&p));
        assert_eq!(w.phase, Phase::Pending);
        p.restarts = 5;
        let w = summary(&[p]);
        assert_eq!(w.phase, Phase::Failed);
        assert_eq!(
            w.message,
            "pod a: container workflow keeps crashing (CrashLoopBackOff, 5 restarts, last exit code 2)"
        );
        assert_eq!(w.pods[0]["exit_code"], 2);
    }

    #[test]
    fn unschedulable_fails_after_the_limit_and_asks_to_look_again() {
        let mut p = pod("a", "Pending", false);
        p.unschedulable = Some((900, "0/3 nodes are available".into()));
        let w = summary(std::slice::from_ref(&p));
        assert_eq!(w.phase, Phase::Pending);
        assert_eq!(w.recheck_at, Some(1200));
        assert_eq!(w.pods[0]["reason"], "Unschedulable");
        p.unschedulable = Some((600, "0/3 nodes are available".into()));
        let w = summary(&[p]);
        assert_eq!(w.phase, Phase::Failed);
        assert_eq!(
            w.message,
            "pod a: cannot be scheduled for 400 s (Unschedulable): 0/3 nodes are available"
        );
        assert_eq!(w.recheck_at, None);
    }

    #[test]
    fn a_failed_pod_fails_the_workload_with_its_exit_code() {
        let mut p = pod("a", "Failed", false);
        p.problem = Some(Problem::Exited {
            container: "workflow".into(),
            reason: Some("Error".into()),
            exit_code: 1,
            message: None,
        });
        let w = summary(&[p]);
        assert_eq!(w.phase, Phase::Failed);
        assert_eq!(
            w.message,
            "pod a: container workflow exited with code 1 (Error)"
        );
    }

    #[test]
    fn config_errors_and_oom_are_explained_without_failing() {
        let mut p = pod("a", "Pending", false);
        p.problem = Some(Problem::Config {
            reason: "CreateContainerConfigError".into(),
            container: "workflow".into(),
            message: Some("secret \"x\" not found".into()),
        });
        let w = summary(&[p]);
        assert_eq!(w.phase, Phase::Pending);
        assert_eq!(
            w.message,
            "pod a: container workflow cannot be created (CreateContainerConfigError): secret \"x\" not found"
        );
    }

    #[test]
    fn removal_and_no_pods() {
        let refs: Vec<&PodFacts> = Vec::new();
        assert_eq!(summarize(&refs, true, &LIMITS, 0).phase, Phase::Cancelled);
        assert_eq!(summarize(&refs, false, &LIMITS, 0).phase, Phase::Pending);
        let mut p = pod("a", "Running", true);
        p.terminating = true;
        assert_eq!(summary(&[p]).phase, Phase::Cancelled);
    }

    #[test]
    fn same_ignores_updated_only() {
        let w = summary(&[pod("a", "Running", true)]);
        let stored = w.to_value("2026-12-01T10:00:00Z");
        assert!(same(Some(&stored), &w));
        let other = summary(&[pod("a", "Running", false)]);
        assert!(!same(Some(&stored), &other));
        assert!(!same(None, &w));
    }
}
