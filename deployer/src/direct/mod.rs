//! `kubernetes-direct` deployments: the entry's `args` is one Kubernetes manifest, applied
//! server-side into the target namespace and deleted when the entry goes.
//!
//! - [`manifest`]: the checks that need no cluster (allow-listed kind, a name, the target
//!   namespace) and the ownership marks added to the object;
//! - [`decide`]: apply, wait or leave it, and what a result means (pure);
//! - [`cluster`]: server-side apply and delete with kube-rs;
//! - [`sweep`]: at every resync, marked objects no entry asks for (entries deleted while
//!   no deployer led) are handed to their release's reconcile to delete;
//! - here: the round of the reconcile for such an entry, and the render target (the
//!   manifest written as `<render dir>/<namespace>/<release>.yaml`, nothing applied).
//!
//! An object is ours when it has the labels `sdp.skao.int/managed-by=sdp-deployer` and
//! `sdp.skao.int/deploy-id=<id>` (as helm releases do) and the annotations
//! `sdp.skao.int/deploy-id=<id>` (exact) and `sdp.skao.int/deployer-prefix=<SDP_HELM_PREFIX>`;
//! only such an object is deleted. The 2019 Python library applies these entries itself
//! from the client that writes them and deletes the object with the entry: an object
//! another field manager applied is taken over (forced apply), one already gone is done.

mod cluster;
mod decide;
mod manifest;
mod sweep;

use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::Instant;

use sdp_config::entity::DeploymentState;
use sdp_runtime::queue::Next;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

pub(crate) use decide::Applied;
pub use manifest::DEFAULT_KINDS;
#[cfg(test)]
pub(crate) use manifest::ObjectRef;
pub(crate) use manifest::{DirectSpec, Kinds, Marks};
pub(crate) use sweep::Sweep;

use crate::decide::{Memory, already_reported};
use crate::reconcile::Reconciler;
use crate::spec::{Desired, SpecContext};
use crate::store::ActedOn;
use crate::view::Item;
use cluster::{Cluster, Deleted, DirectError};
use decide::Step;

/// Where `kubernetes-direct` objects go.
#[derive(Debug)]
enum Target {
    Cluster(Cluster),
    /// Written into this render directory.
    Render(PathBuf),
}

/// Applies and deletes `kubernetes-direct` objects (one per deployer, across terms: the
/// client, once built, is kept).
#[derive(Debug)]
pub(crate) struct Direct {
    target: Target,
    marks: manifest::Marks,
}

impl Direct {
    /// Objects applied to the cluster of `kubeconfig` (one file), or of the environment
    /// (`KUBECONFIG`, the pod's service account) when `None`.
    pub(crate) fn cluster(kubeconfig: Option<PathBuf>, marks: manifest::Marks) -> Self {
        Direct {
            target: Target::Cluster(Cluster::new(kubeconfig)),
            marks,
        }
    }

    /// Objects written into `dir` (the render target).
    pub(crate) fn render(dir: PathBuf, marks: manifest::Marks) -> Self {
        Direct {
            target: Target::Render(dir),
            marks,
        }
    }

    /// Apply (or render) `spec` for `release`; what was done, in words for the state.
    async fn apply(
        &self,
        spec: &DirectSpec,
        release: &str,
        stop: &CancellationToken,
    ) -> Result<String, DirectError> {
        match &self.target {
            Target::Cluster(c) => {
                c.apply(spec, &self.marks, stop).await?;
                Ok(format!(
                    "applied {} (server-side apply, field manager {})",
                    spec.object,
                    cluster::FIELD_MANAGER
                ))
            }
            Target::Render(dir) => {
                let yaml = serde_yaml::to_string(&spec.manifest)
                    .map_err(|e| DirectError::Refused(format!("cannot render: {e}")))?;
                let ns = &spec.object.namespace;
                crate::helm::render::write_rendered(
                    dir,
                    ns,
                    release,
                    &spec.deploy_id,
                    &spec.digest,
                    yaml.as_bytes(),
                )
                .map_err(|e| DirectError::Failed(e.to_string()))?;
                let path = crate::helm::render::rendered_path(dir, ns, release);
                Ok(format!(
                    "rendered {} into {} (render target: nothing applied)",
                    spec.object,
                    path.display()
                ))
            }
        }
    }

    /// Delete an object this process applied, if it is still ours.
    async fn delete(
        &self,
        applied: &Applied,
        stop: &CancellationToken,
    ) -> Result<Deleted, DirectError> {
        match &self.target {
            Target::Cluster(c) => {
                c.delete(&applied.object, &applied.deploy_id, &self.marks, stop)
                    .await
            }
            // The rendered file is the release's: removed as any rendered release is
            // when its entry goes, replaced when the entry changes.
            Target::Render(_) => Ok(Deleted::NotApplied),
        }
    }
}

impl SpecContext {
    /// What a `kubernetes-direct` entry with these `args` asks for.
    pub(crate) fn direct_desired(&self, deploy_id: &str, args: &Map<String, Value>) -> Desired {
        let release = self.release_name(deploy_id);
        let rules = manifest::Rules {
            kinds: &self.direct_kinds,
            namespace: &self.namespace,
            prefix: &self.prefix,
            config_prefix: &self.config_prefix,
            release: &release,
        };
        match manifest::check(deploy_id, args, rules) {
            Ok(spec) => Desired::Direct(Box::new(spec)),
            Err(why) => Desired::Refused(why),
        }
    }
}

/// Whether a round was about a `kubernetes-direct` deployment.
pub(crate) enum Handled {
    /// No: decide as for helm.
    No,
    /// Yes, and this is how the round ends (`None`: another round).
    Yes(Option<Next>),
}

fn at(instant: Instant) -> Next {
    Next::At(tokio::time::Instant::from_std(instant))
}

impl Reconciler {
    /// The part of a round that is about `kubernetes-direct`: delete an object this
    /// process applied that the entry no longer asks for, then apply what a
    /// `kubernetes-direct` entry asks for.
    pub(crate) async fn direct_round(
        &self,
        release: &str,
        owner: Option<(&str, &Item)>,
        desired: Option<&Desired>,
        state: Option<&DeploymentState>,
        memory: &mut Memory,
    ) -> Handled {
        let spec = match desired {
            Some(Desired::Direct(spec)) => Some(spec.as_ref()),
            _ => None,
        };
        if let Some(old) = decide::to_delete(memory, spec.map(|s| &s.object)).cloned() {
            return Handled::Yes(self.direct_delete(old, memory).await);
        }
        match (spec, owner) {
            (Some(spec), Some((id, entry))) => Handled::Yes(
                self.direct_apply(release, id, entry, spec, state, memory)
                    .await,
            ),
            _ => Handled::No,
        }
    }

    async fn direct_delete(&self, mut old: Applied, memory: &mut Memory) -> Option<Next> {
        let direct = &self.effects.direct;
        let started = Instant::now();
        let result = direct.delete(&old, &self.effects.hard_stop).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.effects
            .metrics
            .operation("direct-delete", label, started.elapsed());
        match result {
            Ok(outcome) => {
                match outcome {
                    Deleted::Yes => {
                        tracing::info!(object = %old.object, "deleted: its deployment no longer asks for it")
                    }
                    Deleted::AlreadyGone => tracing::info!(object = %old.object, "already gone"),
                    Deleted::NotOurs => {
                        tracing::warn!(object = %old.object, "not deleted: it no longer carries this deployment's marks")
                    }
                    Deleted::NotApplied => {}
                }
                memory.direct = None;
                None
            }
            Err(DirectError::Cancelled) => Some(Next::Done),
            Err(e) => {
                old.delete_failures += 1;
                let when = Instant::now() + self.policy.retry_delay(old.delete_failures);
                tracing::warn!(object = %old.object, error = %e, "cannot delete; retrying");
                memory.direct = Some(old);
                Some(at(when))
            }
        }
    }

    async fn direct_apply(
        &self,
        release: &str,
        id: &str,
        entry: &Item,
        spec: &DirectSpec,
        state: Option<&DeploymentState>,
        memory: &mut Memory,
    ) -> Option<Next> {
        let now = Instant::now();
        let (report, again) = match decide::next(spec, state, memory, &self.policy, now) {
            Step::Nothing => return Some(Next::Done),
            Step::Wait(until) => return Some(at(until)),
            Step::Report(report) => (Some(report), None),
            Step::Apply(attempt) => {
                tracing::info!(deploy_id = id, object = %spec.object, attempt, "applying");
                let result = self
                    .effects
                    .direct
                    .apply(spec, release, &self.effects.hard_stop)
                    .await;
                let label = match &result {
                    Ok(_) => "ok",
                    Err(DirectError::Refused(_)) => "refused",
                    Err(DirectError::Failed(_)) => "error",
                    Err(DirectError::Cancelled) => "cancelled",
                };
                self.effects
                    .metrics
                    .operation("direct-apply", label, now.elapsed());
                if let Err(e) = &result {
                    tracing::warn!(deploy_id = id, object = %spec.object, attempt, error = %e, "not applied");
                }
                decide::after_apply(memory, spec, attempt, result, &self.policy, Instant::now())
            }
        };
        let end = again.map_or(Next::Done, at);
        let Some(report) = report else {
            return Some(end);
        };
        // The view's state is the freshest: the store records its own writes there.
        let current = self
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot_state(id)
            .and_then(|s| DeploymentState::parse(&s.value).ok());
        if already_reported(current.as_ref(), &report) {
            return Some(end);
        }
        match self
            .effects
            .report_on(id, entry, ActedOn::Digest(&spec.digest), &report)
            .await
        {
            crate::effects::Written::Yes | crate::effects::Written::EntryChanged => Some(end),
            crate::effects::Written::Failed(e) => Some(self.db_failed(id, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_direct_entries_become_checked_specs_or_refusals() {
        let ctx = SpecContext {
            prefix: "p-".into(),
            config_prefix: String::new(),
            namespace: "sdp".into(),
            direct_kinds: Kinds::parse(DEFAULT_KINDS).unwrap(),
            ..SpecContext::default()
        };
        let entry = |manifest: &str| {
            format!(r#"{{"deploy_id": "d", "type": "kubernetes-direct", "args": {manifest}}}"#)
        };
        let Desired::Direct(spec) = ctx.desired(
            "d",
            &entry(
                r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}"#,
            ),
        ) else {
            panic!("a spec")
        };
        assert_eq!(
            spec.object.to_string(),
            "apps/Deployment \"web\" in namespace \"sdp\""
        );
        assert_eq!(
            spec.manifest["metadata"]["labels"]["sdp.skao.int/deploy-id"],
            "d"
        );
        assert_eq!(
            spec.manifest["metadata"]["annotations"]["sdp.skao.int/deployer-prefix"],
            "p-"
        );
        assert_eq!(
            ctx.desired("d", &entry(r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}"#))
                .digest(),
            Some(spec.digest.as_str())
        );
        let Desired::Refused(why) = ctx.desired(
            "d",
            &entry(r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}"#),
        ) else {
            panic!("refused")
        };
        assert!(why.contains("kind Secret is not allowed"), "{why}");
    }
}
