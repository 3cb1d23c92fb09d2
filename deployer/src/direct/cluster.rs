//! The Kubernetes side of `kubernetes-direct`: server-side apply and delete of one object
//! with kube-rs. The client is built as the workload watcher's (`KUBECONFIG`, else the
//! pod's service account) on first use, and again at the next attempt when that failed:
//! a cluster that cannot be reached makes entries fail, never the daemon.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::{Client, discovery};
use tokio_util::sync::CancellationToken;

use super::manifest::{self, DirectSpec, Kinds, ObjectRef, qualified};

/// The field manager of every apply (`kubectl get --show-managed-fields` shows it).
pub(crate) const FIELD_MANAGER: &str = "sdp-deployer";
/// Longest wait for one API request.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DirectError {
    /// The cluster refused the request for what it is: trying again cannot help.
    Refused(String),
    /// Something that may pass (no client, connection, timeout, server error).
    Failed(String),
    /// Stopped (shutdown).
    Cancelled,
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectError::Refused(m) | DirectError::Failed(m) => f.write_str(m),
            DirectError::Cancelled => f.write_str("stopped"),
        }
    }
}

/// Statuses that say the request itself is wrong (bad request, method not allowed, not
/// acceptable, too large, unsupported media type, invalid).
const PERMANENT: [u16; 6] = [400, 405, 406, 413, 415, 422];

fn api_error(doing: &str, e: kube::Error) -> DirectError {
    match e {
        kube::Error::Api(status) => {
            let text = format!(
                "{doing}: Kubernetes API {} {}: {}",
                status.code, status.reason, status.message
            );
            if PERMANENT.contains(&status.code) {
                DirectError::Refused(text)
            } else {
                DirectError::Failed(text)
            }
        }
        other => DirectError::Failed(format!("{doing}: {other}")),
    }
}

/// How a delete went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Deleted now.
    Yes,
    /// It was not there (someone else deleted it, e.g. the 2019 library).
    AlreadyGone,
    /// It exists without our marks for that deployment: left alone.
    NotOurs,
    /// Nothing was applied (render target).
    NotApplied,
}

/// One lazily built client and the kinds it resolved.
pub(crate) struct Cluster {
    kubeconfig: Option<PathBuf>,
    client: tokio::sync::Mutex<Option<Client>>,
    /// `(apiVersion, kind)` → resource and scope, from discovery.
    resources: Mutex<HashMap<(String, String), (ApiResource, Scope)>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

/// `fut` within [`API_TIMEOUT`], unless `stop` fires first; the API's own result inside.
async fn raw<T>(
    doing: &str,
    stop: &CancellationToken,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, DirectError> {
    tokio::select! {
        () = stop.cancelled() => Err(DirectError::Cancelled),
        r = tokio::time::timeout(API_TIMEOUT, fut) => r.map_err(|_| DirectError::Failed(format!(
            "{doing}: no answer from the Kubernetes API within {} s",
            API_TIMEOUT.as_secs()
        ))),
    }
}

/// [`raw`], with the API's error classified.
async fn bounded<T>(
    doing: &str,
    stop: &CancellationToken,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, DirectError> {
    raw(doing, stop, fut)
        .await?
        .map_err(|e| api_error(doing, e))
}

impl Cluster {
    /// A client from `kubeconfig` (or the environment), built when first needed.
    pub(crate) fn new(kubeconfig: Option<PathBuf>) -> Self {
        Cluster {
            kubeconfig,
            client: tokio::sync::Mutex::default(),
            resources: Mutex::default(),
        }
    }

    async fn client(&self, stop: &CancellationToken) -> Result<Client, DirectError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let built = tokio::select! {
            () = stop.cancelled() => return Err(DirectError::Cancelled),
            r = tokio::time::timeout(API_TIMEOUT, crate::workload::client(self.kubeconfig.as_deref())) => r,
        };
        match built {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(DirectError::Failed(format!("no Kubernetes client: {e}"))),
            Err(_) => Err(DirectError::Failed(
                "no Kubernetes client: timed out reading its configuration".into(),
            )),
        }
    }

    /// The API of `object`'s kind in its namespace; refused for a kind the cluster does
    /// not serve or that is not namespaced (no request for the kind itself is made).
    async fn api(
        &self,
        client: Client,
        object: &ObjectRef,
        stop: &CancellationToken,
    ) -> Result<Api<DynamicObject>, DirectError> {
        let key = (object.api_version.clone(), object.kind.clone());
        let known = self
            .resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let (resource, scope) = match known {
            Some(k) => k,
            None => {
                let gvk = GroupVersionKind::gvk(object.group(), object.version(), &object.kind);
                let what = format!("{} {}", object.api_version, object.kind);
                let found = tokio::select! {
                    () = stop.cancelled() => return Err(DirectError::Cancelled),
                    r = tokio::time::timeout(API_TIMEOUT, discovery::pinned_kind(&client, &gvk)) => r,
                };
                let (resource, caps) = match found {
                    Ok(Ok(found)) => found,
                    Ok(Err(kube::Error::Discovery(_))) => {
                        return Err(DirectError::Refused(format!(
                            "the cluster does not serve {what}"
                        )));
                    }
                    Ok(Err(kube::Error::Api(s))) if s.is_not_found() => {
                        return Err(DirectError::Refused(format!(
                            "the cluster does not serve apiVersion {}",
                            object.api_version
                        )));
                    }
                    Ok(Err(e)) => return Err(api_error(&format!("discovery of {what}"), e)),
                    Err(_) => {
                        return Err(DirectError::Failed(format!(
                            "discovery of {what}: no answer from the Kubernetes API within {} s",
                            API_TIMEOUT.as_secs()
                        )));
                    }
                };
                let entry = (resource, caps.scope);
                self.resources
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, entry.clone());
                entry
            }
        };
        if scope != Scope::Namespaced {
            return Err(DirectError::Refused(format!(
                "kubernetes-direct manifest refused: {} is cluster-scoped; only namespaced objects are applied",
                qualified(object.group(), &object.kind)
            )));
        }
        Ok(Api::namespaced_with(client, &object.namespace, &resource))
    }

    /// Apply `spec` server-side as [`FIELD_MANAGER`], taking over fields another manager
    /// set (force): an object applied before by the 2019 library, or by hand, is adopted.
    /// An object marked as another deployment's of this deployer is refused.
    pub(crate) async fn apply(
        &self,
        spec: &DirectSpec,
        marks: &manifest::Marks,
        stop: &CancellationToken,
    ) -> Result<(), DirectError> {
        let client = self.client(stop).await?;
        let api = self.api(client, &spec.object, stop).await?;
        let name = &spec.object.name;
        let existing = bounded("read", stop, api.get_opt(name)).await?;
        if let Some(existing) = existing {
            let existing = serde_json::to_value(&existing).unwrap_or_default();
            if let Some(owner) = manifest::owner(&existing, marks)
                && owner != spec.deploy_id
            {
                return Err(DirectError::Refused(format!(
                    "{} already belongs to deployment {owner:?}; use another object name",
                    spec.object
                )));
            }
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        bounded(
            "server-side apply",
            stop,
            api.patch(name, &params, &Patch::Apply(&spec.manifest)),
        )
        .await?;
        Ok(())
    }

    /// Delete `object` if it carries our marks for `deploy_id`; gone already is done.
    pub(crate) async fn delete(
        &self,
        object: &ObjectRef,
        deploy_id: &str,
        marks: &manifest::Marks,
        stop: &CancellationToken,
    ) -> Result<Deleted, DirectError> {
        let client = self.client(stop).await?;
        let api = self.api(client, object, stop).await?;
        let Some(existing) = bounded("read", stop, api.get_opt(&object.name)).await? else {
            return Ok(Deleted::AlreadyGone);
        };
        let value = serde_json::to_value(&existing).unwrap_or_default();
        if !manifest::is_ours(&value, deploy_id, marks) {
            return Ok(Deleted::NotOurs);
        }
        match raw(
            "delete",
            stop,
            api.delete(&object.name, &DeleteParams::default()),
        )
        .await?
        {
            Ok(_) => Ok(Deleted::Yes),
            // Deleted between the read and the delete.
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(api_error("delete", e)),
        }
    }

    /// Every object of the allowed namespaced kinds in `namespace` that carries this
    /// deployer's marks: `(deploy_id, object)`.
    pub(crate) async fn list_owned(
        &self,
        kinds: &Kinds,
        namespace: &str,
        marks: &manifest::Marks,
        stop: &CancellationToken,
    ) -> Result<Vec<(String, ObjectRef)>, DirectError> {
        let client = self.client(stop).await?;
        let mut groups: Vec<&str> = kinds.iter().map(|(g, _)| g).collect();
        groups.sort_unstable();
        groups.dedup();
        let discovery = bounded(
            "discovery",
            stop,
            Discovery::new(client.clone()).filter(&groups).run(),
        )
        .await?;
        let selector = crate::naming::owned_selector();
        let mut owned = Vec::new();
        for (group, kind) in kinds.iter() {
            let Some((resource, caps)) =
                discovery.get(group).and_then(|g| g.recommended_kind(kind))
            else {
                continue;
            };
            if caps.scope != Scope::Namespaced {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let doing = format!("list {}", qualified(group, kind));
            let list = bounded(
                &doing,
                stop,
                api.list(&ListParams::default().labels(&selector)),
            )
            .await?;
            for object in list {
                let value = serde_json::to_value(&object).unwrap_or_default();
                let (Some(id), Some(name)) =
                    (manifest::owner(&value, marks), object.metadata.name.clone())
                else {
                    continue;
                };
                owned.push((
                    id.to_string(),
                    ObjectRef {
                        api_version: resource.api_version.clone(),
                        kind: resource.kind.clone(),
                        namespace: namespace.to_string(),
                        name,
                    },
                ));
            }
        }
        Ok(owned)
    }
}
