//! Objects by kind, namespace and name, one global resource version, and the history of
//! changes that watches replay.
//!
//! Like the apiserver over etcd, every write takes the next number of one counter shared
//! by all kinds; an object's `metadata.resourceVersion` is the number of its last write
//! and a list's is the counter when it was read. The history keeps every change after
//! the compacted revision, up to [`HISTORY_LIMIT`] changes (older ones are compacted
//! away as the apiserver's watch cache forgets them).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::meta::{Uids, check_body, metadata, name_of, now, set_or_remove, without};
use super::resources::Kind;
use super::status::ApiError;

/// Changes kept for watches to resume from; older ones are compacted.
pub(crate) const HISTORY_LIMIT: usize = 10_000;

/// Namespaces every cluster has.
const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// `(group, plural, namespace, name)`; the namespace is `""` for cluster-scoped kinds.
type Key = (&'static str, &'static str, String, String);

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write, as the history keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub kind: &'static Kind,
    pub event: EventType,
    /// The object after the write; for a deletion its last state with the deletion's
    /// resource version, as the apiserver sends it.
    pub object: Value,
    /// The object before the write, so that a watch with a selector can tell an object
    /// that moved out of the selection (a `DELETED` for that watch) from one that moved in.
    pub before: Option<Value>,
}

/// How an update treats `status` and the server-set metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// A write to the main resource: the stored `status` stays for kinds with a status
    /// subresource.
    Main,
    /// A write to `…/status`: only `status` changes.
    Status,
    /// The in-process helpers (a test acting as the kubelet or a controller): every
    /// field as given.
    Everything,
}

/// All objects, the resource version counter and the history.
#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// A watch or continue token from before this revision gets `410 Expired`.
    compacted: u64,
    /// Bumped by `drop_watches`: a watch stream that started under an older number ends.
    drops: u64,
    uids: Uids,
    /// Wakes the watch streams after every write, compaction and drop.
    wake: watch::Sender<u64>,
}

impl Store {
    /// An empty store with the namespaces every cluster has.
    pub fn new() -> Store {
        let mut store = Store {
            rv: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            drops: 0,
            uids: Uids::default(),
            wake: watch::channel(0).0,
        };
        for name in INITIAL_NAMESPACES {
            let namespace = json!({"metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            if let Some(kind) = Kind::named("Namespace") {
                // Cannot fail: the store is empty and the names are valid.
                let _ = store.create(kind, "", namespace, Update::Everything);
            }
        }
        store
    }

    /// The current resource version: that of the last write.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn drops(&self) -> u64 {
        self.drops
    }

    /// A receiver woken after every write, compaction and [`Store::drop_watches`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(kind, namespace, name))
    }

    /// The objects of a kind in one namespace (or all, with `None`), ordered by namespace
    /// and name, starting after `after` (a `(namespace, name)` a previous page ended with).
    pub fn list<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let start = match after {
            Some((ns, name)) => key(kind, ns, name),
            None => key(kind, namespace.unwrap_or(""), ""),
        };
        let skip_start = after.is_some();
        self.objects
            .range(start.clone()..)
            .skip_while(move |(k, _)| skip_start && **k == start)
            .take_while(move |(k, _)| k.0 == kind.group && k.1 == kind.plural)
            .filter(move |(k, _)| namespace.is_none_or(|ns| k.2 == ns))
            .map(|(_, v)| v)
    }

    /// The changes after resource version `rv`, oldest first.
    ///
    /// # Errors
    ///
    /// `410 Expired` if changes after `rv` have been compacted away.
    pub fn changes_after(&self, rv: u64) -> Result<impl Iterator<Item = &Change>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                self.compacted
            )));
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(start..))
    }

    /// Stores a new object under the namespace of the request, filling in the
    /// server-set metadata. With [`Update::Main`] the namespace must exist and `status` is
    /// reset as the apiserver does on create.
    ///
    /// # Errors
    ///
    /// `AlreadyExists`, `NotFound` for a missing namespace, `BadRequest` or `Invalid` for
    /// a body that does not fit the request.
    pub fn create(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        mut object: Value,
        how: Update,
    ) -> Result<Value, ApiError> {
        check_body(kind, namespace, None, &object)?;
        if kind.namespaced && how != Update::Everything {
            let ns =
                Kind::named("Namespace").ok_or_else(|| ApiError::bad_request("no namespaces"))?;
            if self.get(ns, "", namespace).is_none() {
                return Err(ApiError::not_found(ns, namespace));
            }
        }
        let meta = metadata(&mut object)?;
        let generated = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|_| {
                meta.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
            })
            .map(|prefix| format!("{prefix}{}", self.uids.suffix()));
        if let Some(name) = generated {
            metadata(&mut object)?.insert("name".into(), json!(name));
        }
        let name = name_of(&object)?;
        if self.get(kind, namespace, &name).is_some() {
            return Err(ApiError::already_exists(kind, &name));
        }
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind);
        let uid = self.uids.uid();
        let meta = metadata(&mut object)?;
        if kind.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        if kind.status && how == Update::Main {
            match kind.kind {
                "Pod" => object["status"] = json!({"phase": "Pending"}),
                _ => drop(object.as_object_mut().map(|o| o.remove("status"))),
            }
        }
        Ok(self.commit(kind, namespace, &name, Some(object), EventType::Added))
    }

    /// Replaces a stored object. A `metadata.resourceVersion` in the body must be the
    /// stored one (optimistic concurrency); without one the write is unconditional.
    ///
    /// # Errors
    ///
    /// `NotFound`, `Conflict` for a stale resource version, `BadRequest` for a body that
    /// does not fit the request.
    pub fn update(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        mut object: Value,
        how: Update,
    ) -> Result<Value, ApiError> {
        check_body(kind, namespace, Some(name), &object)?;
        let old = self
            .get(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind, name))?
            .clone();
        let sent_rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
        if !sent_rv.is_empty() && sent_rv != old["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(kind, name));
        }
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind);
        match how {
            Update::Status => {
                let status = object.get("status").cloned();
                object = old.clone();
                set_or_remove(&mut object, "status", status);
            }
            Update::Main if kind.status => {
                set_or_remove(&mut object, "status", old.get("status").cloned());
            }
            _ => {}
        }
        let changed_spec =
            without(&old, &["metadata", "status"]) != without(&object, &["metadata", "status"]);
        let generation =
            old["metadata"]["generation"].as_i64().unwrap_or(1) + i64::from(changed_spec);
        let meta = metadata(&mut object)?;
        for field in ["uid", "creationTimestamp", "namespace", "name"] {
            match old["metadata"].get(field) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        meta.insert("generation".into(), json!(generation));
        if !meta.contains_key("managedFields")
            && let Some(fields) = old["metadata"].get("managedFields")
        {
            meta.insert("managedFields".into(), fields.clone());
        }
        if object == old {
            // The apiserver does not write (nor bump the version) when nothing changed.
            return Ok(old);
        }
        Ok(self.commit(kind, namespace, name, Some(object), EventType::Modified))
    }

    /// Removes an object and returns its last state.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    pub fn delete(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        if self.get(kind, namespace, name).is_none() {
            return Err(ApiError::not_found(kind, name));
        }
        Ok(self.commit(kind, namespace, name, None, EventType::Deleted))
    }

    /// Forgets the history: a watch from any resource version before now gets `410`.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
        self.wake.send_replace(self.rv);
    }

    /// Ends every watch stream open now.
    pub fn drop_watches(&mut self) {
        self.drops += 1;
        self.wake.send_replace(self.rv);
    }

    /// Applies one write under the next resource version and records it.
    fn commit(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        object: Option<Value>,
        event: EventType,
    ) -> Value {
        self.rv += 1;
        let key = key(kind, namespace, name);
        let before = self.objects.remove(&key);
        let mut object = object.or_else(|| before.clone()).unwrap_or_default();
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if event != EventType::Deleted {
            self.objects.insert(key, object.clone());
        }
        self.history.push_back(Change {
            rv: self.rv,
            kind,
            event,
            object: object.clone(),
            before,
        });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(forgotten) = self.history.pop_front() {
                self.compacted = forgotten.rv;
            }
        }
        self.wake.send_replace(self.rv);
        object
    }
}

fn key(kind: &Kind, namespace: &str, name: &str) -> Key {
    let namespace = if kind.namespaced { namespace } else { "" };
    (
        kind.group,
        kind.plural,
        namespace.to_owned(),
        name.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static Kind {
        Kind::named("Pod").unwrap()
    }

    fn pod(name: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": "a"}}, "spec": {"containers": []}})
    }

    #[test]
    fn every_write_takes_the_next_global_resource_version() {
        let mut store = Store::new();
        let start = store.rv();
        let a = store
            .create(pods(), "default", pod("a"), Update::Main)
            .unwrap();
        let ns = store
            .create(
                Kind::named("Namespace").unwrap(),
                "",
                json!({"metadata": {"name": "x"}}),
                Update::Main,
            )
            .unwrap();
        let b = store.create(pods(), "x", pod("b"), Update::Main).unwrap();
        assert_eq!(a["metadata"]["resourceVersion"], (start + 1).to_string());
        assert_eq!(ns["metadata"]["resourceVersion"], (start + 2).to_string());
        assert_eq!(b["metadata"]["resourceVersion"], (start + 3).to_string());
        assert_eq!(store.rv(), start + 3);
        assert_eq!(a["metadata"]["generation"], 1);
        assert_eq!(a["status"]["phase"], "Pending");
        assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
    }

    #[test]
    fn a_namespaced_create_needs_its_namespace() {
        let mut store = Store::new();
        let err = store
            .create(pods(), "nowhere", pod("a"), Update::Main)
            .unwrap_err();
        assert_eq!((err.code, err.reason), (404, "NotFound"));
        assert_eq!(err.message, "namespaces \"nowhere\" not found");
    }

    #[test]
    fn main_updates_keep_status_and_status_updates_keep_the_rest() {
        let mut store = Store::new();
        store
            .create(pods(), "default", pod("a"), Update::Main)
            .unwrap();
        let mut changed = pod("a");
        changed["spec"]["nodeName"] = json!("n1");
        changed["status"] = json!({"phase": "Running"});
        let main = store
            .update(pods(), "default", "a", changed.clone(), Update::Main)
            .unwrap();
        assert_eq!(main["status"]["phase"], "Pending");
        assert_eq!(main["metadata"]["generation"], 2);
        changed["spec"]["nodeName"] = json!("n2");
        let status = store
            .update(pods(), "default", "a", changed, Update::Status)
            .unwrap();
        assert_eq!(status["status"]["phase"], "Running");
        assert_eq!(status["spec"]["nodeName"], "n1");
        assert_eq!(status["metadata"]["generation"], 2);
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict() {
        let mut store = Store::new();
        let a = store
            .create(pods(), "default", pod("a"), Update::Main)
            .unwrap();
        let mut newer = a.clone();
        newer["spec"]["nodeName"] = json!("n1");
        store
            .update(pods(), "default", "a", newer, Update::Main)
            .unwrap();
        let err = store
            .update(pods(), "default", "a", a, Update::Main)
            .unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));
    }

    #[test]
    fn history_replays_after_a_version_until_compacted() {
        let mut store = Store::new();
        let start = store.rv();
        store
            .create(pods(), "default", pod("a"), Update::Main)
            .unwrap();
        store
            .create(pods(), "default", pod("b"), Update::Main)
            .unwrap();
        let deleted = store.delete(pods(), "default", "a").unwrap();
        assert_eq!(
            deleted["metadata"]["resourceVersion"],
            (start + 3).to_string()
        );
        let events: Vec<(u64, EventType)> = store
            .changes_after(start + 1)
            .unwrap()
            .map(|c| (c.rv, c.event))
            .collect();
        assert_eq!(
            events,
            [
                (start + 2, EventType::Added),
                (start + 3, EventType::Deleted)
            ]
        );
        store.compact();
        assert_eq!(
            store.changes_after(start + 3).map(Iterator::count).ok(),
            Some(0)
        );
        let err = store.changes_after(start + 2).err().unwrap();
        assert_eq!((err.code, err.reason), (410, "Expired"));
    }

    #[test]
    fn lists_page_in_namespace_and_name_order() {
        let mut store = Store::new();
        store
            .create(
                Kind::named("Namespace").unwrap(),
                "",
                json!({"metadata": {"name": "b"}}),
                Update::Main,
            )
            .unwrap();
        for (ns, name) in [("default", "z"), ("b", "y"), ("default", "a")] {
            store.create(pods(), ns, pod(name), Update::Main).unwrap();
        }
        let names = |items: Vec<&Value>| -> Vec<String> {
            items
                .iter()
                .map(|v| {
                    format!(
                        "{}/{}",
                        v["metadata"]["namespace"].as_str().unwrap(),
                        v["metadata"]["name"].as_str().unwrap()
                    )
                })
                .collect()
        };
        assert_eq!(
            names(store.list(pods(), None, None).collect()),
            ["b/y", "default/a", "default/z"]
        );
        assert_eq!(
            names(store.list(pods(), Some("default"), None).collect()),
            ["default/a", "default/z"]
        );
        assert_eq!(
            names(store.list(pods(), None, Some(("b", "y"))).collect()),
            ["default/a", "default/z"]
        );
        assert_eq!(
            names(
                store
                    .list(pods(), Some("default"), Some(("default", "a")))
                    .collect()
            ),
            ["default/z"]
        );
    }
}
