//! Following the pods of the target namespace with kube-rs' watcher: list, then watch
//! from the listed resource version; on a lost or expired watch (`410 Gone`) it lists
//! again, and the listing replaces the index whole ([`PodIndex::end_relist`]), so no
//! change is missed. Only pods with a release label are asked for.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::index::{Dirty, PodIndex};
use super::pod::{RELEASE_LABEL, facts};
use crate::metrics::Metrics;

/// Wait between attempts to build a client.
const CLIENT_RETRY: Duration = Duration::from_secs(30);

/// A client from `kubeconfig` (one file), or from the environment (KUBECONFIG, or the
/// in-cluster service account) when `None`.
///
/// # Errors
/// The kubeconfig cannot be read or used.
pub(crate) async fn client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

/// Build a client, trying again every [`CLIENT_RETRY`]; `None` when stopped.
pub(crate) async fn client_retrying(
    kubeconfig: Option<&Path>,
    stop: &CancellationToken,
) -> Option<Client> {
    loop {
        match client(kubeconfig).await {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch pods: no Kubernetes client; trying again in 30 s");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(CLIENT_RETRY) => {}
        }
    }
}

/// Follow the pods of `namespace` into `index`, marking the releases whose pods change,
/// until `stop` fires.
pub(crate) async fn follow(
    client: Client,
    namespace: String,
    index: Arc<Mutex<PodIndex>>,
    dirty: Arc<Dirty>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(RELEASE_LABEL);
    let events = watcher::watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            e = events.next() => e,
        };
        let Some(event) = event else { return };
        let listing_done = matches!(event, Ok(Event::InitDone));
        let changed = {
            let mut index = index.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = match event {
                Ok(Event::Apply(pod)) => {
                    metrics.pod_events.inc();
                    match facts(&pod) {
                        Some(f) => index.apply(f),
                        None => pod
                            .metadata
                            .name
                            .as_deref()
                            .map(|n| index.delete(n))
                            .unwrap_or_default(),
                    }
                }
                Ok(Event::Delete(pod)) => {
                    metrics.pod_events.inc();
                    pod.metadata
                        .name
                        .as_deref()
                        .map(|n| index.delete(n))
                        .unwrap_or_default()
                }
                Ok(Event::Init) => {
                    index.begin_relist();
                    Vec::new()
                }
                Ok(Event::InitApply(pod)) => {
                    if let Some(f) = facts(&pod) {
                        index.relisted(f);
                    }
                    Vec::new()
                }
                Ok(Event::InitDone) => {
                    let changed = index.end_relist();
                    tracing::info!(pods = index.len(), "pods listed");
                    changed
                }
                Err(e) => {
                    metrics.pod_watch_errors.inc();
                    tracing::warn!(error = %e, "pod watch failed; listing again");
                    Vec::new()
                }
            };
            metrics
                .pods
                .set(i64::try_from(index.len()).unwrap_or(i64::MAX));
            changed
        };
        if listing_done {
            // What was marked before the listing can be written now.
            dirty.poke();
        }
        if !changed.is_empty() {
            dirty.mark(changed);
        }
    }
}
