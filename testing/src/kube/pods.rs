//! Pods as the kubelet reports them, for tests that play the kubelet against the stand-in
//! ([`super::KubeApi::put_object`]): one container named `workflow`, the release label
//! Helm charts set (`app.kubernetes.io/instance`), and the statuses the deployer's
//! workload reports are about.

use serde_json::{Value, json};

/// Pod `name` in `namespace` of Helm release `release`, running `image`, with `status`.
pub fn pod(name: &str, namespace: &str, release: &str, image: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/instance": release}},
        "spec": {"containers": [{"name": "workflow", "image": image}]},
        "status": status,
    })
}

/// One container status of `image` with `restarts`, `state` and `last_state`.
fn container(image: &str, ready: bool, restarts: u32, state: Value, last_state: Value) -> Value {
    json!({"name": "workflow", "image": image, "imageID": "", "ready": ready,
        "restartCount": restarts, "state": state, "lastState": last_state})
}

/// Phase Running; ready or not.
pub fn running(image: &str, ready: bool) -> Value {
    let ready_text = if ready { "True" } else { "False" };
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready_text}],
        "containerStatuses": [container(image, ready, 0, json!({"running": {}}), json!({}))]})
}

/// Pending: the image cannot be pulled (`ImagePullBackOff`).
pub fn image_pull_error(image: &str) -> Value {
    let waiting = json!({"waiting": {"reason": "ImagePullBackOff",
        "message": format!("Back-off pulling image \"{image}\"")}});
    json!({"phase": "Pending",
        "containerStatuses": [container(image, false, 0, waiting, json!({}))]})
}

/// Running but crash-looping after `restarts` restarts, the last ending with `exit_code`.
pub fn crash_loop(image: &str, restarts: u32, exit_code: i32) -> Value {
    json!({"phase": "Running",
        "containerStatuses": [container(image, false, restarts,
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": exit_code, "reason": "Error"}}))]})
}

/// Restarting (not ready) after its container ended with `exit_code`.
pub fn restarting(image: &str, exit_code: i32) -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [container(image, false, 1,
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({"terminated": {"exitCode": exit_code, "reason": "Error"}}))]})
}

/// Phase Failed: its container ended with `exit_code`.
pub fn failed(image: &str, exit_code: i32) -> Value {
    json!({"phase": "Failed",
        "containerStatuses": [container(image, false, 0,
            json!({"terminated": {"exitCode": exit_code, "reason": "Error"}}), json!({}))]})
}

/// Phase Succeeded.
pub fn succeeded() -> Value {
    json!({"phase": "Succeeded"})
}
