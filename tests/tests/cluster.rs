//! The README walkthrough against a real Kubernetes cluster. Ignored by default; run it
//! with a cluster (kind, k3d, minikube, Docker Desktop or a real one):
//!
//! ```text
//! KUBECONFIG=~/.kube/config cargo test --release -p sdp-e2e --test cluster -- --ignored
//! ```
//!
//! What it needs:
//!
//! - `KUBECONFIG` naming a kubeconfig whose current context may create and delete
//!   namespaces and install Helm releases in them; `helm` and `kubectl` from
//!   `.tools/bin` (installed by `scripts/setup.sh`) or PATH;
//! - the workflow image `sdp/workflow-testdask:0.1.0` available to the cluster, so the
//!   workflow Pod can start: `docker build --target workflow-testdask -t
//!   sdp/workflow-testdask:0.1.0 .` and load it (`kind load docker-image …`) or push it
//!   to a registry the cluster pulls from. The Pod cannot reach this test's etcd (it
//!   listens on the test machine's loopback), so, exactly as in the README, the test runs
//!   `testdask` as a local process and checks the Pod as Kubernetes holds it (image,
//!   `pb_id` argument, environment);
//! - the Dask image of the `dask` chart (`ghcr.io/dask/dask`, pulled from the internet):
//!   the test waits, through `kubectl port-forward` to the scheduler Service, until the
//!   scheduler accepts connections and `testdask` records `"dask": "connected"`.
//!
//! It uses a fresh namespace `sdp-e2e-<pid>` and deletes it at the end. Timeouts are
//! generous (image pulls): up to about 10 minutes per step.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sdp_e2e::process::{Proc, Spec};
use sdp_e2e::releases::tool;
use sdp_e2e::system::{Options, System, Target};
use sdp_e2e::walkthrough::{self, Expect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster"]
async fn walkthrough_against_a_real_cluster() -> Result<()> {
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .context("set KUBECONFIG to the kubeconfig of the cluster to test against")?;
    let namespace = format!("sdp-e2e-{}", std::process::id());
    let kube = Kube {
        kubeconfig: kubeconfig.clone(),
        namespace: namespace.clone(),
    };
    kube.run(&["create", "namespace", &namespace])?;
    let _delete_namespace = DeleteNamespace(&kube);

    let system = System::start(Options {
        namespace: namespace.clone(),
        ..Options::new(Target::Cluster { kubeconfig })
    })
    .await?;
    let port = sdp_testing::free_port();
    let forward = PortForward::start(&kube, port, system.new_log("port-forward"));
    let expect = Expect {
        config_host: "127.0.0.1".into(),
        dask_timeout: Duration::from_secs(600),
        dask_scheduler: Some(format!("127.0.0.1:{port}")),
        dask_outcome: "connected".into(),
        release_limit: Duration::from_secs(600),
    };
    let result = async {
        walkthrough::run(&system, &expect).await?;
        system.shutdown().await
    }
    .await;
    drop(forward);
    system.report(result)
}

/// `kubectl` with the test's kubeconfig.
#[derive(Clone)]
struct Kube {
    kubeconfig: PathBuf,
    namespace: String,
}

impl Kube {
    fn spec(&self, args: &[&str]) -> Spec {
        let mut spec = Spec::new("kubectl", tool("kubectl"))
            .env("KUBECONFIG", self.kubeconfig.display().to_string());
        for arg in args {
            spec = spec.arg(*arg);
        }
        spec
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let (status, out, err) = self.spec(args).output()?;
        ensure!(
            status.success(),
            "kubectl {} failed ({status}): {err}",
            args.join(" ")
        );
        Ok(out)
    }
}

struct DeleteNamespace<'a>(&'a Kube);

impl Drop for DeleteNamespace<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .run(&["delete", "namespace", &self.0.namespace, "--wait=false"]);
    }
}

/// Keeps `kubectl port-forward svc/<…>-dask-scheduler <port>:8786` running once a
/// scheduler Service exists in the namespace (restarting it when it exits, e.g. while
/// the scheduler pod is not running yet), until dropped.
struct PortForward {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PortForward {
    fn start(kube: &Kube, port: u16, log: PathBuf) -> PortForward {
        let stop = Arc::new(AtomicBool::new(false));
        let kube = kube.clone();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut current: Option<Proc> = None;
            while !flag.load(Ordering::Relaxed) {
                let running = current
                    .as_mut()
                    .is_some_and(|p| matches!(p.try_status(), Ok(None)));
                if !running {
                    current = kube
                        .run(&[
                            "get",
                            "services",
                            "--namespace",
                            &kube.namespace,
                            "--output",
                            "name",
                        ])
                        .ok()
                        .and_then(|out| {
                            out.lines()
                                .find(|l| l.ends_with("-dask-scheduler"))
                                .map(String::from)
                        })
                        .and_then(|service| {
                            let spec = kube.spec(&[
                                "port-forward",
                                "--namespace",
                                &kube.namespace,
                                &service,
                                &format!("{port}:8786"),
                            ]);
                            Proc::spawn(&spec, &log).ok()
                        });
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        });
        PortForward {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
