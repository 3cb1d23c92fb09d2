//! The sweep: what this process remembers about applied objects is lost on restart, so an
//! entry deleted while no deployer led would leave its object behind. Every resync
//! interval the objects of the allowed kinds that carry this deployer's marks are listed;
//! those no entry asks for any more go to their release's memory as "to delete" and the
//! release to the work queue, where the reconcile deletes them as it deletes any object
//! its entry stopped asking for.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sdp_runtime::queue::Queue;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::decide::Applied;
use super::manifest::ObjectRef;
use super::{Direct, Target};
use crate::memory::Memories;
use crate::spec::{Desired, SpecContext};
use crate::view::View;

/// What the sweep works with: the term's view, memories and queue.
pub(crate) struct Sweep {
    pub(crate) direct: Arc<Direct>,
    pub(crate) spec: Arc<SpecContext>,
    pub(crate) view: Arc<Mutex<View>>,
    pub(crate) memories: Arc<Memories>,
    pub(crate) queue: Queue<String>,
    /// Time between sweeps (the resync interval).
    pub(crate) every: Duration,
}

/// The listed objects (`(deploy_id, object)`) that no entry asks for: `(release, to delete)`.
pub(crate) fn orphans(
    listed: Vec<(String, ObjectRef)>,
    view: &View,
    spec: &SpecContext,
) -> Vec<(String, Applied)> {
    listed
        .into_iter()
        .filter_map(|(id, object)| {
            let release = spec.release_name(&id);
            let snapshot = view.snapshot(&release);
            let wanted = snapshot
                .entries
                .iter()
                .find(|(e, _)| *e == id)
                .is_some_and(|(_, entry)| {
                    matches!(spec.desired(&id, &entry.value), Desired::Direct(s) if s.object.same_object(&object))
                });
            (!wanted).then(|| {
                let applied = Applied {
                    deploy_id: id,
                    object,
                    digest: String::new(),
                    delete_failures: 0,
                    message: String::new(),
                };
                (release, applied)
            })
        })
        .collect()
}

impl Sweep {
    /// Sweep now and every [`Sweep::every`] until `stop` fires. Call once the view holds
    /// the listed entries: before, every object would look orphaned.
    pub(crate) fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let Target::Cluster(cluster) = &self.direct.target else {
                return; // Rendered files are listed with the releases.
            };
            loop {
                let started = Instant::now();
                let listed = cluster
                    .list_owned(
                        &self.spec.direct_kinds,
                        &self.spec.namespace,
                        &self.direct.marks,
                        &stop,
                    )
                    .await;
                match listed {
                    Ok(listed) => self.queue_orphans(listed, started),
                    Err(e) => {
                        tracing::debug!(error = %e, "kubernetes-direct sweep: cannot list");
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(self.every) => {}
                }
            }
        })
    }

    fn queue_orphans(&self, listed: Vec<(String, ObjectRef)>, started: Instant) {
        let orphans = {
            let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
            orphans(listed, &view, &self.spec)
        };
        for (release, applied) in orphans {
            let object = applied.object.to_string();
            // A reconcile since the listing knows better; the next sweep looks again.
            let noted = self.memories.update_if_older(&release, started, |memory| {
                if memory.direct.is_none() {
                    memory.direct = Some(applied);
                }
            });
            if noted {
                tracing::info!(%object, release, "kubernetes-direct sweep: no entry asks for it; deleting");
                self.queue.add(release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sdp_config::WatchEvent;
    use serde_json::json;

    use super::*;
    use crate::direct::Kinds;
    use crate::fixtures::entry;

    #[test]
    fn only_objects_no_entry_asks_for_are_orphans() {
        let spec = SpecContext {
            namespace: "sdp".into(),
            direct_kinds: Kinds::parse("apps/Deployment").unwrap(),
            ..SpecContext::default()
        };
        let names = spec.clone();
        let mut view = View::new(move |id| names.release_name(id));
        let manifest = |name: &str| {
            json!({"deploy_id": "a", "type": "kubernetes-direct", "args": {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}}})
            .to_string()
        };
        view.apply_entries(WatchEvent::Put(entry("/deploy/a", &manifest("web"), 2)));
        let object = |name: &str, version: &str| ObjectRef {
            api_version: format!("apps/{version}"),
            kind: "Deployment".into(),
            namespace: "sdp".into(),
            name: name.into(),
        };
        let listed = vec![
            // Asked for (in whatever version it is listed).
            ("a".to_string(), object("web", "v2")),
            // Not asked for any more: the entry names another object.
            ("a".to_string(), object("old", "v1")),
            // No entry at all.
            ("gone".to_string(), object("x", "v1")),
        ];
        let found: Vec<(String, String)> = orphans(listed, &view, &spec)
            .into_iter()
            .map(|(release, a)| (release, a.object.name))
            .collect();
        assert_eq!(
            found,
            [("a".into(), "old".into()), ("gone".into(), "x".into())]
        );
    }
}
