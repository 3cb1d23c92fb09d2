//! Patches: JSON merge patch (RFC 7386) and server-side apply.
//!
//! Server-side apply here tracks ownership per field manager as leaf paths (object keys;
//! a list is one leaf, not merged item by item by its merge key as the apiserver does).
//! Applying:
//! - sets every field of the applied configuration (objects merge, lists and scalars
//!   are replaced);
//! - removes the fields the same manager applied last time and no longer applies, unless
//!   another manager applies them too;
//! - refuses (`409 Conflict`) to change a field whose value another *applying* manager
//!   set, unless `force=true`, which moves the field to the new manager. Fields written
//!   by create, update or merge patch have no recorded owner here, so they never
//!   conflict.
//! - records `metadata.managedFields` with one `operation: Apply` entry per manager and
//!   its fields in the `FieldsV1` shape (`{"f:spec":{"f:replicas":{}}}`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::resources::Kind;
use super::status::ApiError;

type Path = Vec<String>;

/// Applies an RFC 7386 JSON merge patch to `target`.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(target) = target.as_object_mut() {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The object that results from `manager` applying `config` to `old` (`None`: the
/// object does not exist yet), with its `managedFields` updated.
///
/// # Errors
///
/// `BadRequest` for a configuration without `apiVersion` and `kind` or of another kind,
/// `Conflict` when another applying manager owns a field this one changes and `force` is
/// not set.
pub(crate) fn apply(
    kind: &Kind,
    old: Option<&Value>,
    mut config: Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    if config["apiVersion"].as_str().is_none() || config["kind"].as_str().is_none() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an applied configuration",
        ));
    }
    if config["apiVersion"] != kind.api_version().as_str() || config["kind"] != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the applied configuration is a {} {}, not a {} {}",
            config["apiVersion"],
            config["kind"],
            kind.api_version(),
            kind.kind
        )));
    }
    if kind.status {
        // The main resource ignores status, as the apiserver does for kinds with /status.
        config.as_object_mut().map(|c| c.remove("status"));
    }
    let applied = owned_paths(&config);
    let mut owners = apply_owners(old);
    let previous = owners.remove(manager).unwrap_or_default();
    let empty = json!({});
    let current = old.unwrap_or(&empty);

    let mut conflicts = Vec::new();
    for (other, paths) in owners.iter_mut() {
        let clashing: Vec<Path> = paths
            .iter()
            .filter(|p| {
                applied.iter().any(|a| {
                    related(a, p) && {
                        let shorter = if a.len() <= p.len() { a } else { p };
                        at(current, shorter) != at(&config, shorter)
                    }
                })
            })
            .cloned()
            .collect();
        if force {
            paths.retain(|p| !clashing.contains(p));
        } else {
            conflicts.extend(
                clashing
                    .iter()
                    .map(|p| format!("conflict with {other:?}: .{}", p.join("."))),
            );
        }
    }
    if !conflicts.is_empty() {
        let mut error = ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                conflicts.join(", ")
            ),
        );
        error.details = config["metadata"]["name"]
            .as_str()
            .map(|n| (n.to_owned(), kind.plural.to_owned()));
        return Err(error);
    }

    let mut object = current.clone();
    for path in &previous {
        let still_wanted = applied.iter().any(|a| related(a, path));
        let owned_by_other = owners.values().flatten().any(|p| related(p, path));
        if !still_wanted && !owned_by_other {
            remove(&mut object, path);
        }
    }
    deep_merge(&mut object, &config);
    owners.insert(manager.to_owned(), applied);
    object["metadata"]["managedFields"] = managed_fields(kind, old, &owners);
    Ok(object)
}

/// Whether one path is a prefix of the other (or they are equal).
fn related(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

fn at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(key.as_str()))
}

fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents
        .iter()
        .try_fold(object, |v, key| v.get_mut(key.as_str()));
    if let Some(map) = parent.and_then(Value::as_object_mut) {
        map.remove(last);
    }
}

/// Objects merge key by key; anything else in `patch` replaces what `target` has.
fn deep_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch) {
        (Some(target), Value::Object(patch)) => {
            for (key, value) in patch {
                deep_merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (_, patch) => *target = patch.clone(),
    }
}

/// The leaf paths a configuration sets, without the identity and server-set fields.
fn owned_paths(config: &Value) -> BTreeSet<Path> {
    fn walk(value: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        match value.as_object() {
            Some(map) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(config, &mut Vec::new(), &mut out);
    const NOT_OWNED: [&str; 9] = [
        "apiVersion",
        "kind",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "metadata.resourceVersion",
        "metadata.generation",
        "metadata.creationTimestamp",
        "metadata.managedFields",
    ];
    out.retain(|p| !NOT_OWNED.iter().any(|n| related(&split(n), p)));
    out
}

fn split(dotted: &str) -> Path {
    dotted.split('.').map(str::to_owned).collect()
}

/// Every applying manager of `object` with the leaf paths it owns.
fn apply_owners(object: Option<&Value>) -> BTreeMap<String, BTreeSet<Path>> {
    let entries = object
        .and_then(|o| o["metadata"]["managedFields"].as_array())
        .into_iter()
        .flatten()
        .filter(|e| e["operation"] == "Apply");
    let mut owners = BTreeMap::new();
    for entry in entries {
        let Some(manager) = entry["manager"].as_str() else {
            continue;
        };
        let mut paths = BTreeSet::new();
        from_fields_v1(&entry["fieldsV1"], &mut Vec::new(), &mut paths);
        owners.insert(manager.to_owned(), paths);
    }
    owners
}

/// `{"f:a":{"f:b":{}}}` → `a.b`. A node that is empty or has keys other than `f:…` (the
/// apiserver's `k:`, `v:`, `.`) is taken as one leaf.
fn from_fields_v1(node: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    let fields: Vec<(&str, &Value)> = node
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| k.strip_prefix("f:").map(|k| (k, v)))
        .collect();
    let leaf = fields.is_empty() || node.as_object().is_some_and(|m| m.len() != fields.len());
    if leaf {
        if !path.is_empty() {
            out.insert(path.clone());
        }
        return;
    }
    for (key, child) in fields {
        path.push(key.to_owned());
        from_fields_v1(child, path, out);
        path.pop();
    }
}

fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for key in path {
            let entry = node.entry(format!("f:{key}")).or_insert_with(|| json!({}));
            match entry.as_object_mut() {
                Some(next) => node = next,
                None => break,
            }
        }
    }
    Value::Object(root)
}

/// The old entries of managers that do not apply (kept as they were), then one
/// `Apply` entry per applying manager that still owns something.
fn managed_fields(
    kind: &Kind,
    old: Option<&Value>,
    owners: &BTreeMap<String, BTreeSet<Path>>,
) -> Value {
    let mut entries: Vec<Value> = old
        .and_then(|o| o["metadata"]["managedFields"].as_array())
        .into_iter()
        .flatten()
        .filter(|e| e["operation"] != "Apply")
        .cloned()
        .collect();
    let previous_time = |manager: &str| {
        old.and_then(|o| o["metadata"]["managedFields"].as_array())
            .into_iter()
            .flatten()
            .find(|e| e["manager"] == manager && e["operation"] == "Apply")
            .map(|e| (e["time"].clone(), e["fieldsV1"].clone()))
    };
    for (manager, paths) in owners.iter().filter(|(_, p)| !p.is_empty()) {
        let fields = to_fields_v1(paths);
        // An entry's time changes only when its fields do, as the apiserver's does.
        let time = match previous_time(manager) {
            Some((time, before)) if before == fields => time,
            _ => json!(super::meta::now()),
        };
        entries.push(json!({
            "manager": manager,
            "operation": "Apply",
            "apiVersion": kind.api_version(),
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }));
    }
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static Kind {
        Kind::named("Deployment").unwrap()
    }

    fn config(replicas: u32, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        })
    }

    fn managers(object: &Value) -> Vec<(String, String)> {
        object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap().to_owned(),
                    e["operation"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn merge_patch_sets_replaces_and_removes_with_null() {
        let mut target = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge_patch(
            &mut target,
            &json!({"a": {"b": null, "c": [3], "e": {"f": true}}, "d": "y"}),
        );
        assert_eq!(target, json!({"a": {"c": [3], "e": {"f": true}}, "d": "y"}));
    }

    #[test]
    fn applying_records_the_manager_and_its_fields() {
        let object = apply(
            deployments(),
            None,
            config(1, json!({"app": "a"})),
            "sdp-deployer",
            false,
        )
        .unwrap();
        assert_eq!(object["spec"]["replicas"], 1);
        assert_eq!(
            managers(&object),
            [("sdp-deployer".to_owned(), "Apply".to_owned())]
        );
        let fields = &object["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(fields["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    }

    #[test]
    fn a_field_no_longer_applied_is_removed() {
        let first = apply(
            deployments(),
            None,
            config(1, json!({"app": "a", "old": "x"})),
            "m",
            false,
        )
        .unwrap();
        let second = apply(
            deployments(),
            Some(&first),
            config(2, json!({"app": "a"})),
            "m",
            false,
        )
        .unwrap();
        assert_eq!(second["metadata"]["labels"], json!({"app": "a"}));
        assert_eq!(second["spec"]["replicas"], 2);
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced() {
        let first = apply(
            deployments(),
            None,
            config(1, json!({"app": "a"})),
            "one",
            false,
        )
        .unwrap();
        let err = apply(
            deployments(),
            Some(&first),
            config(3, json!({"app": "a"})),
            "two",
            false,
        )
        .unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"one\": .spec.replicas"
        );
        // The same value is no conflict: both own it.
        let shared = apply(
            deployments(),
            Some(&first),
            config(1, json!({"app": "a"})),
            "two",
            false,
        )
        .unwrap();
        assert_eq!(managers(&shared).len(), 2);
        let forced = apply(
            deployments(),
            Some(&first),
            config(3, json!({"app": "a"})),
            "two",
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let one = apply_owners(Some(&forced)).remove("one").unwrap();
        assert!(!one.contains(&split("spec.replicas")), "{one:?}");
        assert!(one.contains(&split("metadata.labels.app")), "{one:?}");
    }

    #[test]
    fn a_configuration_of_another_kind_is_refused() {
        let mut other = config(1, json!({}));
        other["kind"] = json!("StatefulSet");
        assert_eq!(
            apply(deployments(), None, other, "m", false)
                .unwrap_err()
                .code,
            400
        );
        let mut bare = config(1, json!({}));
        bare.as_object_mut().unwrap().remove("apiVersion");
        assert_eq!(
            apply(deployments(), None, bare, "m", false)
                .unwrap_err()
                .code,
            400
        );
    }
}
