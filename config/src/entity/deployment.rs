//! Deployments (`/deploy/<id>`) and the state the deployer reports for them.

use serde_json::{Map, Value};

use super::DeploymentStatus;
use super::fields::{
    ValidationError, as_object, check_id, parse_object, take_opt_object, take_opt_str, take_str,
    type_name,
};
use crate::json::to_python_string;

const DEPLOY_ID_PATTERN: &str = "^[A-Za-z0-9\\-]{1,96}$";

/// Check a deployment ID.
///
/// # Errors
/// [`ValidationError::BadId`].
pub fn validate_deploy_id(id: &str) -> Result<(), ValidationError> {
    check_id(id, 96, "deployment", DEPLOY_ID_PATTERN)
}

/// Arguments of a `helm` deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct HelmArgs {
    /// `<name>` or `<repo>/<name>`.
    pub chart: String,
    /// Values; keys may be dotted paths (`worker.replicas`).
    pub values: Map<String, Value>,
    /// Unknown fields, kept.
    pub extra: Map<String, Value>,
}

/// What kind of deployment, with its arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum DeploymentKind {
    /// A Helm release.
    Helm(HelmArgs),
    /// A local process (keyword arguments of a process spawn).
    ProcessDirect(Map<String, Value>),
    /// One Kubernetes manifest.
    KubernetesDirect(Map<String, Value>),
}

impl DeploymentKind {
    /// The wire name of the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            DeploymentKind::Helm(_) => "helm",
            DeploymentKind::ProcessDirect(_) => "process-direct",
            DeploymentKind::KubernetesDirect(_) => "kubernetes-direct",
        }
    }
}

/// A deployment request.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    /// `deploy_id`.
    pub id: String,
    /// Type and arguments.
    pub kind: DeploymentKind,
    /// Unknown top-level fields, kept.
    pub extra: Map<String, Value>,
}

impl Deployment {
    /// Path of a deployment.
    pub fn path(id: &str) -> String {
        format!("/deploy/{id}")
    }

    /// Path of a deployment's state (written by the deployer).
    pub fn state_path(id: &str) -> String {
        format!("/deploy/{id}/state")
    }

    /// The deployment ID of a deployment path (`/deploy/<id>`), the inverse of
    /// [`Deployment::path`].
    pub fn id_from_path(path: &str) -> Option<&str> {
        super::id_in(path, "/deploy/", "")
    }

    /// The deployment ID of a state path (`/deploy/<id>/state`).
    pub fn id_from_state_path(path: &str) -> Option<&str> {
        super::id_in(path, "/deploy/", "/state")
    }

    /// A helm deployment.
    pub fn helm(
        id: impl Into<String>,
        chart: impl Into<String>,
        values: Map<String, Value>,
    ) -> Self {
        Deployment {
            id: id.into(),
            kind: DeploymentKind::Helm(HelmArgs {
                chart: chart.into(),
                values,
                extra: Map::new(),
            }),
            extra: Map::new(),
        }
    }

    /// Parse and validate; `key_id` is the ID from the key path.
    ///
    /// # Errors
    /// A [`ValidationError`] naming the problem.
    pub fn parse(text: &str, key_id: Option<&str>) -> Result<Self, ValidationError> {
        Self::from_map(parse_object(text)?, key_id)
    }

    /// Validate a parsed value.
    ///
    /// # Errors
    /// See [`Deployment::parse`].
    pub fn from_value(value: Value, key_id: Option<&str>) -> Result<Self, ValidationError> {
        Self::from_map(as_object(value)?, key_id)
    }

    fn from_map(
        mut map: Map<String, Value>,
        key_id: Option<&str>,
    ) -> Result<Self, ValidationError> {
        let id = take_str(&mut map, "deploy_id", "deploy_id")?;
        validate_deploy_id(&id)?;
        if let Some(key_id) = key_id
            && key_id != id
        {
            return Err(ValidationError::IdMismatch {
                field: "deploy_id",
                in_value: id,
                in_key: key_id.into(),
            });
        }
        let kind = take_str(&mut map, "type", "type")?;
        let args = take_opt_object(&mut map, "args", "args")?;
        let kind = match kind.as_str() {
            "helm" => {
                let mut args = args.ok_or(ValidationError::MissingField {
                    field: "args".into(),
                })?;
                let chart = take_str(&mut args, "chart", "args.chart")?;
                if chart.is_empty() {
                    return Err(ValidationError::Other(
                        "field `args.chart` must not be empty".into(),
                    ));
                }
                let values = match args.remove("values") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(v)) => v,
                    Some(other) => {
                        return Err(ValidationError::WrongType {
                            field: "args.values".into(),
                            expected: "an object",
                            found: type_name(&other),
                        });
                    }
                };
                DeploymentKind::Helm(HelmArgs {
                    chart,
                    values,
                    extra: args,
                })
            }
            "process-direct" => DeploymentKind::ProcessDirect(args.unwrap_or_default()),
            "kubernetes-direct" => DeploymentKind::KubernetesDirect(args.unwrap_or_default()),
            _ => {
                return Err(ValidationError::NotAllowed {
                    field: "type".into(),
                    allowed: "helm, process-direct, kubernetes-direct",
                    found: kind,
                });
            }
        };
        Ok(Deployment {
            id,
            kind,
            extra: map,
        })
    }

    /// As a JSON value, unknown fields included.
    pub fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        map.insert("deploy_id".into(), Value::String(self.id.clone()));
        map.insert("type".into(), Value::String(self.kind.type_name().into()));
        let args = match &self.kind {
            DeploymentKind::Helm(h) => {
                let mut a = h.extra.clone();
                a.insert("chart".into(), Value::String(h.chart.clone()));
                a.insert("values".into(), Value::Object(h.values.clone()));
                a
            }
            DeploymentKind::ProcessDirect(a) | DeploymentKind::KubernetesDirect(a) => a.clone(),
        };
        map.insert("args".into(), Value::Object(args));
        Value::Object(map)
    }

    /// Formatted as the Python tools write it.
    pub fn to_json(&self) -> String {
        to_python_string(&self.to_value())
    }
}

/// What the Helm deployer reports at `/deploy/<id>/state`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentState {
    /// `PENDING`, `INSTALLING`, `UPGRADING`, `DEPLOYED`, `FAILED`, `UNINSTALLING`.
    pub status: Option<String>,
    /// Helm release name.
    pub release: Option<String>,
    /// Target namespace.
    pub namespace: Option<String>,
    /// Helm release revision.
    pub revision: Option<i64>,
    /// Digest of the deployed spec.
    pub digest: Option<String>,
    /// Attempts made for the current spec.
    pub attempts: Option<i64>,
    /// Human-readable detail (helm's error on failure).
    pub message: Option<String>,
    /// RFC 3339 time of the report.
    pub updated: Option<String>,
    /// Unknown fields, kept.
    pub extra: Map<String, Value>,
}

impl DeploymentState {
    /// The status as a known value.
    pub fn known_status(&self) -> Option<DeploymentStatus> {
        self.status.as_deref().and_then(DeploymentStatus::parse)
    }

    /// Parse a stored state.
    ///
    /// # Errors
    /// Not a JSON object or a field of the wrong type.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let mut map = parse_object(text)?;
        let mut int = |key: &str| -> Result<Option<i64>, ValidationError> {
            match map.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
                Some(other) => Err(ValidationError::WrongType {
                    field: key.into(),
                    expected: "an integer",
                    found: type_name(&other),
                }),
            }
        };
        let revision = int("revision")?;
        let attempts = int("attempts")?;
        Ok(DeploymentState {
            status: take_opt_str(&mut map, "status", "status")?,
            release: take_opt_str(&mut map, "release", "release")?,
            namespace: take_opt_str(&mut map, "namespace", "namespace")?,
            revision,
            digest: take_opt_str(&mut map, "digest", "digest")?,
            attempts,
            message: take_opt_str(&mut map, "message", "message")?,
            updated: take_opt_str(&mut map, "updated", "updated")?,
            extra: map,
        })
    }

    /// As a JSON value (absent fields omitted).
    pub fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                map.insert(k.into(), v);
            }
        };
        put("status", self.status.clone().map(Value::String));
        put("release", self.release.clone().map(Value::String));
        put("namespace", self.namespace.clone().map(Value::String));
        put("revision", self.revision.map(Value::from));
        put("digest", self.digest.clone().map(Value::String));
        put("attempts", self.attempts.map(Value::from));
        put("message", self.message.clone().map(Value::String));
        put("updated", self.updated.clone().map(Value::String));
        Value::Object(map)
    }

    /// Formatted as the Python tools write it.
    pub fn to_json(&self) -> String {
        to_python_string(&self.to_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_DASK: &str = r#"{"deploy_id": "realtime-20191121-0000-dask", "type": "helm",
      "args": {"chart": "stable/dask", "values": {"jupyter.enabled": "false",
      "scheduler.serviceType": "ClusterIP", "worker.replicas": 2}}}"#;

    #[test]
    fn the_seed_helm_deployment_parses_and_formats_byte_identically() {
        let d = Deployment::parse(SEED_DASK, Some("realtime-20191121-0000-dask")).unwrap();
        let DeploymentKind::Helm(h) = &d.kind else {
            panic!("not helm")
        };
        assert_eq!(h.chart, "stable/dask");
        assert_eq!(h.values["worker.replicas"], 2);
        assert_eq!(
            d.to_json(),
            "{\n  \"args\": {\n    \"chart\": \"stable/dask\",\n    \"values\": {\n      \"jupyter.enabled\": \"false\",\n      \"scheduler.serviceType\": \"ClusterIP\",\n      \"worker.replicas\": 2\n    }\n  },\n  \"deploy_id\": \"realtime-20191121-0000-dask\",\n  \"type\": \"helm\"\n}"
        );
    }

    #[test]
    fn all_three_types_parse_and_unknown_types_are_rejected() {
        for t in ["process-direct", "kubernetes-direct"] {
            let text =
                format!(r#"{{"deploy_id":"d","type":"{t}","args":{{"x":1}},"note":"kept"}}"#);
            let d = Deployment::parse(&text, None).unwrap();
            assert_eq!(d.kind.type_name(), t);
            assert_eq!(d.to_value()["note"], "kept");
        }
        let err =
            Deployment::parse(r#"{"deploy_id":"d","type":"docker","args":{}}"#, None).unwrap_err();
        assert!(
            err.to_string().contains(
                "must be one of helm, process-direct, kubernetes-direct, found \"docker\""
            ),
            "{err}"
        );
    }

    #[test]
    fn ids_come_back_out_of_the_paths_built_for_them() {
        assert_eq!(
            Deployment::id_from_path(&Deployment::path("a-b")),
            Some("a-b")
        );
        assert_eq!(
            Deployment::id_from_state_path(&Deployment::state_path("a-b")),
            Some("a-b")
        );
        assert_eq!(Deployment::id_from_path("/deploy/a/state"), None);
        assert_eq!(Deployment::id_from_state_path("/deploy/a/b/state"), None);
        assert_eq!(Deployment::id_from_path("/pb/a"), None);
        use crate::entity::ProcessingBlock;
        assert_eq!(
            ProcessingBlock::id_from_path(&ProcessingBlock::path("x")),
            Some("x")
        );
        assert_eq!(
            ProcessingBlock::id_from_state_path(&ProcessingBlock::state_path("x")),
            Some("x")
        );
        assert_eq!(
            ProcessingBlock::id_from_state_path(&ProcessingBlock::owner_path("x")),
            None
        );
        assert_eq!(
            ProcessingBlock::id_from_owner_path(&ProcessingBlock::owner_path("x")),
            Some("x")
        );
        assert_eq!(
            ProcessingBlock::id_from_owner_path(&ProcessingBlock::state_path("x")),
            None
        );
        assert_eq!(ProcessingBlock::id_from_path("/pb/"), None);
    }

    #[test]
    fn deployment_ids_are_checked() {
        assert!(validate_deploy_id(&"a".repeat(96)).is_ok());
        for bad in [String::new(), "a".repeat(97), "A_b".into(), "x.y".into()] {
            let err = validate_deploy_id(&bad).unwrap_err();
            assert!(err.to_string().contains("{1,96}"), "{err}");
        }
    }

    #[test]
    fn helm_args_are_checked() {
        let cases = [
            (r#"{"deploy_id":"d","type":"helm"}"#, "missing field `args`"),
            (
                r#"{"deploy_id":"d","type":"helm","args":[]}"#,
                "field `args` must be an object",
            ),
            (
                r#"{"deploy_id":"d","type":"helm","args":{}}"#,
                "missing field `args.chart`",
            ),
            (
                r#"{"deploy_id":"d","type":"helm","args":{"chart":1}}"#,
                "`args.chart` must be a string",
            ),
            (
                r#"{"deploy_id":"d","type":"helm","args":{"chart":"c","values":"x"}}"#,
                "`args.values` must be an object",
            ),
        ];
        for (text, want) in cases {
            let err = Deployment::parse(text, None).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_fields_in_helm_args_round_trip() {
        let d = Deployment::parse(
            r#"{"deploy_id":"d","type":"helm","args":{"chart":"c","values":{},"timeout":5}}"#,
            None,
        )
        .unwrap();
        assert_eq!(d.to_value()["args"]["timeout"], 5);
    }

    #[test]
    fn deployment_state_round_trips() {
        let text = r#"{"status":"DEPLOYED","release":"r","namespace":"sdp","revision":2,"digest":"ab","attempts":1,"message":"ok","updated":"2026-01-01T00:00:00Z","x":true}"#;
        let st = DeploymentState::parse(text).unwrap();
        assert_eq!(st.known_status(), Some(DeploymentStatus::Deployed));
        assert_eq!(DeploymentState::parse(&st.to_json()).unwrap(), st);
    }
}
