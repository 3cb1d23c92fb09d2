//! The kinds the stand-in serves and the discovery documents that describe them.
//!
//! Adding a kind is one row in [`KINDS`]: storage, routing, watch and discovery are
//! generic over it.

use serde_json::{Value, json};

/// One resource type (a group, version and kind) the stand-in stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource name in URLs: `pods`.
    pub plural: &'static str,
    pub namespaced: bool,
    /// Whether `…/<name>/status` exists; then writes to the main resource keep the stored
    /// `status` and writes to `/status` change nothing else, as the apiserver does.
    pub status: bool,
    pub short_names: &'static [&'static str],
}

const fn kind(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    status: bool,
    short_names: &'static [&'static str],
) -> Kind {
    Kind {
        group,
        version: "v1",
        kind,
        plural,
        namespaced,
        status,
        short_names,
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// Everything served. All are `v1`, the only version these groups serve today.
pub(crate) const KINDS: &[Kind] = &[
    kind("", "Namespace", "namespaces", false, true, &["ns"]),
    kind("", "Pod", "pods", true, true, &["po"]),
    kind("", "Service", "services", true, true, &["svc"]),
    kind("", "ConfigMap", "configmaps", true, false, &["cm"]),
    kind("", "Secret", "secrets", true, false, &[]),
    kind(
        "",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        &["sa"],
    ),
    kind(
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        true,
        &["pvc"],
    ),
    kind("", "Event", "events", true, false, &["ev"]),
    kind("apps", "Deployment", "deployments", true, true, &["deploy"]),
    kind("apps", "StatefulSet", "statefulsets", true, true, &["sts"]),
    kind("apps", "ReplicaSet", "replicasets", true, true, &["rs"]),
    kind("batch", "Job", "jobs", true, true, &[]),
    kind(
        "networking.k8s.io",
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
        &["netpol"],
    ),
    kind(
        "policy",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        true,
        &["pdb"],
    ),
    kind(RBAC, "Role", "roles", true, false, &[]),
    kind(RBAC, "RoleBinding", "rolebindings", true, false, &[]),
];

/// The Kubernetes version the stand-in claims to be (that of the `kubectl` the project
/// installs, and of the `k8s-openapi` feature it builds with).
pub(crate) const MAJOR: &str = "1";
pub(crate) const MINOR: &str = "35";

impl Kind {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind served at `plural` in group `group`, version `version`.
    pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
        KINDS
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// The kind of an object whose `apiVersion` and `kind` are these.
    pub fn of(api_version: &str, kind: &str) -> Option<&'static Kind> {
        KINDS
            .iter()
            .find(|k| k.kind == kind && k.api_version() == api_version)
    }

    /// The kind with this name (`"Pod"`), for the in-process helpers.
    pub fn named(kind: &str) -> Option<&'static Kind> {
        KINDS.iter().find(|k| k.kind == kind)
    }

    fn api_resources(&self) -> Vec<Value> {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut resources = vec![json!({
            "name": self.plural,
            "singularName": self.kind.to_lowercase(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
        })];
        if self.status {
            resources.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        resources
    }
}

/// `GET /version`.
pub(crate) fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": format!("v{MAJOR}.{MINOR}.0-sdp-standin"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`: the core group's versions.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// The named groups, each with its versions, in table order.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for k in KINDS.iter().filter(|k| !k.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, versions)) if versions.contains(&k.version) => {}
            Some((_, versions)) => versions.push(k.version),
            None => groups.push((k.group, vec![k.version])),
        }
    }
    groups
}

/// `GET /apis`.
pub(crate) fn group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({
                "name": group,
                "versions": versions,
                "preferredVersion": versions[0],
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`, or `None` if the group is not served.
pub(crate) fn group(name: &str) -> Option<Value> {
    let list = group_list();
    let group = list["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == name)?
        .clone();
    let mut group = group;
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Some(group)
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`, or `None` if not served.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .flat_map(Kind::api_resources)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_by_its_group_version() {
        for k in KINDS {
            let list = resource_list(k.group, k.version).unwrap_or_default();
            let named: Vec<&Value> = list["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["name"] == k.plural)
                .collect();
            assert_eq!(named.len(), 1, "{}", k.plural);
            assert_eq!(named[0]["namespaced"], k.namespaced, "{}", k.plural);
            assert_eq!(Kind::of(&k.api_version(), k.kind), Some(k));
        }
    }

    #[test]
    fn groups_are_listed_once_with_their_preferred_version() {
        let list = group_list();
        let names: Vec<&str> = list["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "apps",
                "batch",
                "networking.k8s.io",
                "policy",
                "rbac.authorization.k8s.io"
            ]
        );
        assert_eq!(
            group("apps").map(|g| g["preferredVersion"]["groupVersion"].clone()),
            Some(json!("apps/v1"))
        );
        assert_eq!(group("extensions"), None);
        assert_eq!(resource_list("apps", "v1beta1"), None);
    }
}
