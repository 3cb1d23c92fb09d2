//! A `kubernetes-direct` entry's manifest, checked without the cluster: a kind on the
//! allow-list, a name, the target namespace (or none), and the ownership marks added. What
//! fails here is refused with its reason and never reaches the Kubernetes API.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::naming::{self, DEPLOY_ID_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Annotation holding the deployment ID exactly (the label may have to shorten it).
pub(crate) const DEPLOY_ID_ANNOTATION: &str = "sdp.skao.int/deploy-id";
/// Annotation holding the deployer's prefix (`SDP_HELM_PREFIX`): two deployers with
/// other prefixes in one namespace never delete each other's objects.
pub(crate) const PREFIX_ANNOTATION: &str = "sdp.skao.int/deployer-prefix";
/// Annotation holding the deployer's configuration prefix (`SDP_CONFIG_PREFIX`), absent
/// for the empty prefix (so objects applied before it existed belong to the empty one):
/// deployers of two configuration trees sharing a namespace and a release-name prefix
/// never sweep each other's objects.
pub(crate) const CONFIG_PREFIX_ANNOTATION: &str = "sdp.skao.int/config-prefix";

/// Whose objects these are: a deployer's release-name prefix and configuration prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    /// `SDP_HELM_PREFIX`.
    pub helm_prefix: String,
    /// `SDP_CONFIG_PREFIX`.
    pub config_prefix: String,
}

/// Server-set metadata a manifest copied from `kubectl get -o json` may carry; applying
/// it would make the apply conditional on a stale version (or be refused).
const SERVER_SET: [&str; 6] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
];

/// The default of `SDP_DIRECT_KINDS`: what a workflow needs to run something in its
/// namespace, and which the deployer's Role in the system chart already grants.
pub const DEFAULT_KINDS: &str =
    "ConfigMap,Service,Pod,PersistentVolumeClaim,apps/Deployment,apps/StatefulSet,batch/Job";

/// The kinds allowed for `kubernetes-direct` deployments: `(group, kind)`, the core group
/// being `""`. Any version the cluster serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Kinds(Vec<(String, String)>);

impl Kinds {
    /// Parse `SDP_DIRECT_KINDS`: comma-separated `Kind` (core group) or `group/Kind`.
    ///
    /// # Errors
    /// An item that is not of that form, naming the setting.
    pub(crate) fn parse(text: &str) -> Result<Kinds, String> {
        let mut kinds = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (group, kind) = item.rsplit_once('/').unwrap_or(("", item));
            let kind_ok = kind.starts_with(|c: char| c.is_ascii_uppercase())
                && kind.chars().all(|c| c.is_ascii_alphanumeric());
            let group_ok = group
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
            if !kind_ok || !group_ok || item.matches('/').count() > 1 {
                return Err(format!(
                    "SDP_DIRECT_KINDS: {item:?} is not a kind (`Kind` or `group/Kind`, e.g. `apps/Deployment`)"
                ));
            }
            kinds.push((group.to_string(), kind.to_string()));
        }
        Ok(Kinds(kinds))
    }

    /// `(group, kind)` pairs.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(g, k)| (g.as_str(), k.as_str()))
    }

    fn allows(&self, group: &str, kind: &str) -> bool {
        self.0.iter().any(|(g, k)| g == group && k == kind)
    }

    fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(g, k)| qualified(g, k))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `Kind` or `group/Kind`.
pub(crate) fn qualified(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{group}/{kind}")
    }
}

/// Which object a manifest is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ObjectRef {
    /// `v1`, `apps/v1`.
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    /// The API group (`""` for the core group).
    pub(crate) fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    /// Whether `other` is the same object, whatever the API version it is seen in.
    pub(crate) fn same_object(&self, other: &ObjectRef) -> bool {
        self.group() == other.group()
            && self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
    }

    /// The API version without the group.
    pub(crate) fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} in namespace {:?}",
            qualified(self.group(), &self.kind),
            self.name,
            self.namespace
        )
    }
}

/// A checked `kubernetes-direct` request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DirectSpec {
    /// Deployment ID.
    pub deploy_id: String,
    /// The object.
    pub object: ObjectRef,
    /// What is applied: the manifest with the namespace set, server-set metadata
    /// removed, and the ownership marks added.
    pub manifest: Value,
    /// Digest of `manifest`: equal digests mean "nothing to do".
    pub digest: String,
}

/// What the checks need.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules<'a> {
    pub kinds: &'a Kinds,
    pub namespace: &'a str,
    pub prefix: &'a str,
    /// The configuration prefix (`SDP_CONFIG_PREFIX`).
    pub config_prefix: &'a str,
    /// The release name the deployment ID maps to (the deploy-id label's fallback).
    pub release: &'a str,
}

fn text<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Check the `args` of a `kubernetes-direct` entry and build what is applied.
///
/// # Errors
/// Why it is refused, in words for the user.
pub(crate) fn check(
    deploy_id: &str,
    args: &Map<String, Value>,
    rules: Rules<'_>,
) -> Result<DirectSpec, String> {
    let refuse = |why: String| Err(format!("kubernetes-direct manifest refused: {why}"));
    let (Some(api_version), Some(kind)) = (text(args, "apiVersion"), text(args, "kind")) else {
        return refuse("`args` must be one Kubernetes object with `apiVersion` and `kind`".into());
    };
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if !rules.kinds.allows(group, kind) {
        return refuse(format!(
            "kind {} is not allowed (SDP_DIRECT_KINDS allows: {})",
            qualified(group, kind),
            rules.kinds.describe()
        ));
    }
    let Some(metadata) = args.get("metadata").and_then(Value::as_object) else {
        return refuse("`metadata` with a `name` is required".into());
    };
    let Some(name) = text(metadata, "name") else {
        return refuse("`metadata.name` is required (`generateName` cannot be applied)".into());
    };
    match metadata.get("namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) if ns == rules.namespace => {}
        Some(other) => {
            return refuse(format!(
                "it names namespace {other}; objects go only into the deployer's namespace {:?}",
                rules.namespace
            ));
        }
    }
    let object = ObjectRef {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: rules.namespace.to_string(),
        name: name.to_string(),
    };
    let mut manifest = args.clone();
    manifest.remove("status");
    let mut metadata = metadata.clone();
    for key in SERVER_SET {
        metadata.remove(key);
    }
    metadata.insert("namespace".into(), Value::String(rules.namespace.into()));
    let labels = marks(&mut metadata, "labels")?;
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(
        DEPLOY_ID_LABEL.into(),
        naming::deploy_id_label(deploy_id, rules.release).into(),
    );
    let annotations = marks(&mut metadata, "annotations")?;
    annotations.insert(DEPLOY_ID_ANNOTATION.into(), deploy_id.into());
    annotations.insert(PREFIX_ANNOTATION.into(), rules.prefix.into());
    if !rules.config_prefix.is_empty() {
        annotations.insert(CONFIG_PREFIX_ANNOTATION.into(), rules.config_prefix.into());
    }
    manifest.insert("metadata".into(), Value::Object(metadata));
    let manifest = Value::Object(manifest);
    let digest = hex::encode(Sha256::digest(
        sdp_config::json::to_python_string(&manifest).as_bytes(),
    ));
    Ok(DirectSpec {
        deploy_id: deploy_id.to_string(),
        object,
        manifest,
        digest,
    })
}

/// `metadata.<field>` as a map of strings, created when absent.
fn marks<'m>(
    metadata: &'m mut Map<String, Value>,
    field: &str,
) -> Result<&'m mut Map<String, Value>, String> {
    let slot = metadata
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(map) if map.values().all(Value::is_string) => Ok(map),
        _ => Err(format!(
            "kubernetes-direct manifest refused: `metadata.{field}` must map names to strings"
        )),
    }
}

/// The deployment ID a stored object is marked with by this deployer (same prefix), if
/// any.
pub(crate) fn owner<'v>(object: &'v Value, marks: &Marks) -> Option<&'v str> {
    let meta = &object["metadata"];
    let annotation = |key: &str| meta["annotations"][key].as_str().unwrap_or("");
    let ours = meta["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
        && annotation(PREFIX_ANNOTATION) == marks.helm_prefix
        && annotation(CONFIG_PREFIX_ANNOTATION) == marks.config_prefix;
    ours.then(|| meta["annotations"][DEPLOY_ID_ANNOTATION].as_str())
        .flatten()
}

/// Whether a stored object carries the marks [`check`] adds for `deploy_id` and `prefix`
/// (only such an object is ever deleted).
pub(crate) fn is_ours(object: &Value, deploy_id: &str, marks: &Marks) -> bool {
    owner(object, marks) == Some(deploy_id)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(kinds: &Kinds) -> Rules<'_> {
        Rules {
            kinds,
            namespace: "sdp",
            prefix: "p-",
            config_prefix: "",
            release: "p-d",
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn the_default_kinds_parse_and_bad_items_name_the_setting() {
        let k = Kinds::parse(DEFAULT_KINDS).unwrap();
        assert!(k.allows("", "ConfigMap") && k.allows("apps", "Deployment"));
        assert!(!k.allows("", "Deployment") && !k.allows("", "Secret"));
        for bad in ["configmap", "apps/", "a/b/C", "Apps/Deployment", "Con fig"] {
            let err = Kinds::parse(bad).unwrap_err();
            assert!(err.contains("SDP_DIRECT_KINDS"), "{bad}: {err}");
        }
        assert_eq!(Kinds::parse(" , ").unwrap(), Kinds::default());
    }

    #[test]
    fn a_manifest_gets_the_namespace_and_the_ownership_marks() {
        let kinds = Kinds::parse(DEFAULT_KINDS).unwrap();
        let a = args(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"app": "x"}, "resourceVersion": "9", "uid": "u"},
            "data": {"k": "v"}, "status": {}}));
        let spec = check("d", &a, rules(&kinds)).unwrap();
        let m = &spec.manifest["metadata"];
        assert_eq!(m["namespace"], "sdp");
        assert_eq!(m["labels"]["app"], "x");
        assert_eq!(m["labels"][MANAGED_BY_LABEL], "sdp-deployer");
        assert_eq!(m["labels"][DEPLOY_ID_LABEL], "d");
        assert_eq!(m["annotations"][DEPLOY_ID_ANNOTATION], "d");
        assert_eq!(m["annotations"][PREFIX_ANNOTATION], "p-");
        assert!(m.get("resourceVersion").is_none() && m.get("uid").is_none());
        assert!(spec.manifest.get("status").is_none());
        assert_eq!(spec.manifest["data"]["k"], "v");
        assert_eq!(
            spec.object.to_string(),
            "ConfigMap \"c\" in namespace \"sdp\""
        );
        let marks = |helm: &str, config: &str| Marks {
            helm_prefix: helm.into(),
            config_prefix: config.into(),
        };
        assert!(is_ours(&spec.manifest, "d", &marks("p-", "")));
        assert!(
            !is_ours(&spec.manifest, "d", &marks("", "")),
            "another prefix"
        );
        assert!(
            !is_ours(&spec.manifest, "d", &marks("p-", "/tenant1")),
            "another configuration prefix"
        );
        assert!(
            !is_ours(&spec.manifest, "e", &marks("p-", "")),
            "another deployment"
        );
        // A deployer of configuration prefix /tenant1 marks its objects so that the
        // deployer of the empty prefix (same release-name prefix) leaves them alone.
        let kinds = Kinds::parse(DEFAULT_KINDS).unwrap();
        let tenant = check(
            "d",
            &args(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})),
            Rules {
                config_prefix: "/tenant1",
                ..rules(&kinds)
            },
        )
        .unwrap();
        assert!(is_ours(&tenant.manifest, "d", &marks("p-", "/tenant1")));
        assert!(
            !is_ours(&tenant.manifest, "d", &marks("p-", "")),
            "the empty prefix's deployer"
        );
        // The namespace named explicitly is the same request.
        let mut b = a.clone();
        b["metadata"]["namespace"] = json!("sdp");
        assert_eq!(check("d", &b, rules(&kinds)).unwrap().digest, spec.digest);
        b["data"]["k"] = json!("w");
        assert_ne!(check("d", &b, rules(&kinds)).unwrap().digest, spec.digest);
    }

    #[test]
    fn refusals_say_why() {
        let kinds = Kinds::parse(DEFAULT_KINDS).unwrap();
        let cases = [
            (json!({"kind": "ConfigMap"}), "`apiVersion` and `kind`"),
            (
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
                "kind Secret is not allowed (SDP_DIRECT_KINDS allows: ConfigMap, Service",
            ),
            (
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}}),
                "kind rbac.authorization.k8s.io/Role is not allowed",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod"}),
                "`metadata` with a `name`",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}}),
                "`metadata.name` is required",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "kube-system"}}),
                "names namespace \"kube-system\"; objects go only into the deployer's namespace \"sdp\"",
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": 1}}}),
                "`metadata.labels` must map names to strings",
            ),
        ];
        for (a, want) in cases {
            let err = check("d", &args(a.clone()), rules(&kinds)).unwrap_err();
            assert!(err.contains(want), "{a}: {err}");
            assert!(
                err.starts_with("kubernetes-direct manifest refused: "),
                "{err}"
            );
        }
    }
}
