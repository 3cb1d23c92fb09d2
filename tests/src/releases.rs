//! What the deployer made of the walkthrough's two deployments, for each target: the
//! manifests `helm template` rendered, the stand-in helm's releases, or the objects in
//! a real cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

use crate::binaries::repo_root;
use crate::expected::TESTDASK_IMAGE;
use crate::fake_helm;
use crate::manifest::{self, documents, object};
use crate::process::Spec;
use crate::system::{System, Target};
use crate::wait::{Outcome, eventually};

/// Checks the workflow release of `pb_id`: a Pod running the testdask image with the
/// `pb_id` argument and the configuration database's environment.
///
/// # Errors
/// It differs.
pub async fn check_workflow(system: &System, pb_id: &str, config_host: &str) -> Result<()> {
    let release = format!("{pb_id}-workflow");
    let ns = system.namespace();
    // The controller hands on the port of this system's etcd (never 2379 here); the
    // deployer passes it as `--set` would, a number, and the chart quotes it again.
    let port = system.etcd.port();
    let pod = match system.target() {
        Target::Render => {
            let docs = rendered(system, &release)?;
            ensure!(
                manifest::summary(&docs) == format!("Pod/{release}"),
                "the workflow release should be one Pod: {}",
                manifest::summary(&docs)
            );
            object(&docs, "Pod", &release)?.clone()
        }
        Target::FakeHelm | Target::StandIn { .. } => {
            let values = json!({
                "env": {"SDP_CONFIG_HOST": config_host, "SDP_CONFIG_PORT": port,
                    "SDP_HELM_NAMESPACE": ns},
                "pb_id": pb_id,
                "wf_image": TESTDASK_IMAGE,
            });
            check_fake_release(system, &release, "workflow", &values)?;
            return Ok(());
        }
        Target::Cluster { .. } => {
            let status = helm(
                system,
                &["status", &release, "--namespace", ns, "--output", "json"],
            )?;
            let status: Value = serde_json::from_str(&status)?;
            ensure!(
                status["info"]["status"] == "deployed",
                "helm status {release}: {status}"
            );
            // The deployer follows the workflow's pod: its state has a workload with
            // the pod (docs/states.md).
            let state = system
                .wait_value(
                    &format!("/deploy/{release}/state"),
                    Duration::from_secs(600),
                    |v| {
                        serde_json::from_str::<Value>(v).is_ok_and(|s| {
                            s["workload"]["pods"]
                                .as_array()
                                .is_some_and(|p| p.iter().any(|p| p["name"] == release.as_str()))
                        })
                    },
                )
                .await?;
            let state: Value = serde_json::from_str(&state)?;
            let phase = &state["workload"]["phase"];
            ensure!(
                ["PENDING", "RUNNING", "FINISHED", "FAILED"]
                    .iter()
                    .any(|p| phase == p),
                "workload phase of {release}: {state}"
            );
            ensure!(
                state["workload"]["updated"].is_string(),
                "workload of {release} has its time: {state}"
            );
            kubectl_json(system, &["get", "pod", &release])?
        }
    };
    let container = &pod["spec"]["containers"][0];
    ensure!(
        container["image"] == TESTDASK_IMAGE && container["args"] == json!([pb_id]),
        "the workflow container should run {TESTDASK_IMAGE} with argument {pb_id}: {container}"
    );
    let env = manifest::env_pairs(container);
    let wanted = [
        ("SDP_CONFIG_HOST".to_string(), config_host.to_string()),
        ("SDP_CONFIG_PORT".to_string(), port.to_string()),
        ("SDP_HELM_NAMESPACE".to_string(), ns.to_string()),
    ];
    ensure!(
        env == wanted,
        "the workflow's environment is {env:?}, not {wanted:?}"
    );
    Ok(())
}

/// Checks the Dask release of `pb_id`: scheduler Deployment and Service (8786, 8787),
/// two workers, no notebook (`jupyter.enabled` "false").
///
/// # Errors
/// It differs.
pub async fn check_dask(system: &System, pb_id: &str) -> Result<()> {
    let release = format!("{pb_id}-dask");
    let scheduler = format!("{release}-scheduler");
    let worker = format!("{release}-worker");
    let (service, workers) = match system.target() {
        Target::Render => {
            let docs = rendered(system, &release)?;
            let summary = manifest::summary(&docs);
            ensure!(
                !summary.contains("jupyter") && docs.len() == 3,
                "the dask release should be scheduler Deployment + Service and worker Deployment: {summary}"
            );
            object(&docs, "Deployment", &scheduler)?;
            (
                object(&docs, "Service", &scheduler)?.clone(),
                object(&docs, "Deployment", &worker)?.clone(),
            )
        }
        Target::FakeHelm | Target::StandIn { .. } => {
            let values = json!({
                "jupyter": {"enabled": false},
                "scheduler": {"serviceType": "ClusterIP"},
                "worker": {"replicas": 2},
            });
            check_fake_release(system, &release, "dask", &values)?;
            return Ok(());
        }
        Target::Cluster { .. } => {
            kubectl_json(system, &["get", "deployment", &scheduler])?;
            (
                kubectl_json(system, &["get", "service", &scheduler])?,
                kubectl_json(system, &["get", "deployment", &worker])?,
            )
        }
    };
    let ports = manifest::service_ports(&service);
    ensure!(
        ports == [8786, 8787] && service["spec"]["type"] == "ClusterIP",
        "scheduler Service should be ClusterIP on 8786 and 8787: {service}"
    );
    ensure!(
        workers["spec"]["replicas"] == 2,
        "worker Deployment should have 2 replicas: {}",
        workers["spec"]
    );
    Ok(())
}

/// Waits until both releases of `pb_id` are gone: files removed, stand-in releases
/// uninstalled, or helm releases and the workflow Pod gone from the cluster.
///
/// # Errors
/// Something is left after `limit`.
pub async fn wait_removed(system: &System, pb_id: &str, limit: Duration) -> Result<()> {
    let releases = [format!("{pb_id}-workflow"), format!("{pb_id}-dask")];
    eventually(limit, "every release to be removed", || async {
        let left = left_over(system, &releases)?;
        Ok(if left.is_empty() {
            Outcome::Done(())
        } else {
            Outcome::NotYet(left.join(", "))
        })
    })
    .await?;
    if let Target::FakeHelm | Target::StandIn { .. } = system.target() {
        let calls = fake_helm::calls(&system.fake_helm_dir());
        for release in &releases {
            let uninstalled = calls.iter().any(|c| {
                let argv = fake_helm::argv(c);
                argv.first() == Some(&"uninstall")
                    && argv.last() == Some(&release.as_str())
                    && has_namespace(&argv, system.namespace())
            });
            ensure!(
                uninstalled,
                "no `helm uninstall --namespace {} … {release}` call",
                system.namespace()
            );
        }
    }
    Ok(())
}

/// What is left of `releases` (and anything else in the target namespace).
fn left_over(system: &System, releases: &[String]) -> Result<Vec<String>> {
    Ok(match system.target() {
        Target::Render => {
            let dir = system.render_dir();
            let mut left: Vec<String> = walk_files(&dir)
                .into_iter()
                .map(|p| p.strip_prefix(&dir).unwrap_or(&p).display().to_string())
                .collect();
            left.sort();
            left
        }
        Target::FakeHelm | Target::StandIn { .. } => {
            fake_helm::all_release_names(&system.fake_helm_dir())
        }
        Target::Cluster { .. } => {
            let ns = system.namespace();
            let mut left: Vec<String> =
                helm(system, &["list", "--all", "--namespace", ns, "--short"])?
                    .lines()
                    .map(|l| format!("release {l}"))
                    .collect();
            let pods = kubectl(
                system,
                &["get", "pods", "--namespace", ns, "--output", "name"],
            )?;
            left.extend(
                pods.lines()
                    .filter(|p| releases.iter().any(|r| p.contains(r.as_str())))
                    .map(String::from),
            );
            left
        }
    })
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The documents of a rendered release file, checking its `# sdp-deployer:` header.
fn rendered(system: &System, release: &str) -> Result<Vec<Value>> {
    let path = system.rendered(release);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no rendered manifest {}", path.display()))?;
    let header = text.lines().next().unwrap_or_default();
    ensure!(
        header.starts_with("# sdp-deployer: ")
            && header.contains(&format!("\"deploy_id\":\"{release}\"")),
        "{} does not start with the deployer's header: {header}",
        path.display()
    );
    documents(&text).with_context(|| format!("{} is not valid YAML", path.display()))
}

/// A release of the stand-in: deployed in the target namespace from the bundled chart
/// `chart` with exactly `values`, labelled as the deployer's, installed by one
/// `helm upgrade --install` call with those values.
fn check_fake_release(system: &System, release: &str, chart: &str, values: &Value) -> Result<()> {
    let ns = system.namespace();
    let dir = system.fake_helm_dir();
    let all = fake_helm::releases(&dir, ns);
    let rel = all.iter().find(|r| r["name"] == release).ok_or_else(|| {
        anyhow!(
            "no release {release} in namespace {ns}; releases: {}",
            fake_helm::all_release_names(&dir).join(", ")
        )
    })?;
    let chart_dir = repo_root().join("charts").join(chart);
    let chart_ref = rel["chart_ref"].as_str().unwrap_or_default();
    ensure!(
        rel["status"] == "deployed"
            && rel["namespace"] == ns
            && rel["chart"] == format!("{chart}-0.1.0")
            && same_file(Path::new(chart_ref), &chart_dir),
        "release {release} should be deployed in {ns} from {}: {rel}",
        chart_dir.display()
    );
    ensure!(
        rel["values"] == *values,
        "release {release} has values {}, not {values}",
        rel["values"]
    );
    ensure!(
        rel["labels"]["sdp.skao.int/managed-by"] == "sdp-deployer"
            && rel["labels"]["sdp.skao.int/deploy-id"] == release,
        "release {release} is not labelled as the deployer's: {}",
        rel["labels"]
    );
    let installs: Vec<Value> = fake_helm::calls(&dir)
        .into_iter()
        .filter(|c| {
            let argv = fake_helm::argv(c);
            argv.first() == Some(&"upgrade")
                && argv.contains(&"--install")
                && has_namespace(&argv, ns)
                && argv.ends_with(&[release, chart_ref])
        })
        .collect();
    ensure!(
        installs.len() == 1,
        "expected one `helm upgrade --install … {release}` call, found {installs:?}"
    );
    let sent: Value = serde_json::from_str(installs[0]["values"][0].as_str().unwrap_or_default())
        .context("the values file is not JSON")?;
    ensure!(sent == *values, "helm got values {sent}, not {values}");
    Ok(())
}

fn has_namespace(argv: &[&str], ns: &str) -> bool {
    argv.windows(2).any(|w| w[0] == "--namespace" && w[1] == ns)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The program `name` (`helm`, `kubectl`) from the project's `.tools/bin` or PATH.
pub fn tool(name: &str) -> PathBuf {
    let tools = repo_root().join(".tools/bin").join(name);
    if tools.is_file() {
        tools
    } else {
        PathBuf::from(name)
    }
}

/// Runs a cluster tool with the system's kubeconfig; its standard output.
fn run_tool(system: &System, name: &str, args: &[&str]) -> Result<String> {
    let Target::Cluster { kubeconfig } = system.target() else {
        bail!("{name} is only used with a cluster");
    };
    let mut spec = Spec::new(name, tool(name))
        .envs(system.helm_env())
        .env("KUBECONFIG", kubeconfig.display().to_string());
    for arg in args {
        spec = spec.arg(*arg);
    }
    let (status, out, err) = spec.output()?;
    ensure!(
        status.success(),
        "{name} {} failed ({status}): {err}",
        args.join(" ")
    );
    Ok(out)
}

/// `helm <args>` against the cluster.
///
/// # Errors
/// helm fails.
pub fn helm(system: &System, args: &[&str]) -> Result<String> {
    run_tool(system, "helm", args)
}

/// `kubectl <args>` against the cluster.
///
/// # Errors
/// kubectl fails.
pub fn kubectl(system: &System, args: &[&str]) -> Result<String> {
    run_tool(system, "kubectl", args)
}

/// `kubectl <args> --namespace <ns> --output json`, parsed.
fn kubectl_json(system: &System, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.extend(["--namespace", system.namespace(), "--output", "json"]);
    Ok(serde_json::from_str(&kubectl(system, &all)?)?)
}
