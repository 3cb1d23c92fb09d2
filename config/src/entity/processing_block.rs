//! Processing blocks (`/pb/<id>`) in both the 2019 (`pb_id`) and 2021 (`id`) shapes,
//! and their state (`/pb/<id>/state`).

use serde_json::{Map, Value, json};

use super::fields::{
    ValidationError, as_object, check_id, parse_object, take_object, take_opt_list,
    take_opt_object, take_opt_str, take_str, type_name,
};
use crate::json::to_python_string;

const PB_ID_PATTERN: &str = "^[A-Za-z0-9\\-]{1,64}$";

/// Check a processing block ID.
///
/// # Errors
/// [`ValidationError::BadId`].
pub fn validate_pb_id(id: &str) -> Result<(), ValidationError> {
    check_id(id, 64, "processing block", PB_ID_PATTERN)
}

/// Which generation of the tools wrote the block; kept so a rewrite keeps the shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PbShape {
    /// 2019: `pb_id`, `scan_parameters`.
    PbId,
    /// 2021: `id`, optional `dependencies`.
    Id,
}

/// `realtime` or `batch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkflowType {
    /// Runs while the telescope observes.
    Realtime,
    /// Runs afterwards, possibly after other blocks.
    Batch,
}

impl WorkflowType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowType::Realtime => "realtime",
            WorkflowType::Batch => "batch",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "realtime" => Some(WorkflowType::Realtime),
            "batch" => Some(WorkflowType::Batch),
            _ => None,
        }
    }
}

/// The workflow a block runs: `type`, `id`, `version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkflowRef {
    /// `realtime` or `batch`.
    pub kind: WorkflowType,
    /// Workflow name, e.g. `testdask`.
    pub id: String,
    /// Version, e.g. `0.1.0`.
    pub version: String,
}

impl WorkflowRef {
    /// Parse `type:id:version` as `sdpcfg process` takes it.
    pub fn parse_spec(spec: &str) -> Option<Self> {
        let mut parts = spec.split(':');
        let (kind, id, version) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.is_empty() || version.is_empty() {
            return None;
        }
        Some(WorkflowRef {
            kind: WorkflowType::parse(kind)?,
            id: id.into(),
            version: version.into(),
        })
    }

    fn from_map(mut map: Map<String, Value>) -> Result<Self, ValidationError> {
        let kind = take_str(&mut map, "type", "workflow.type")?;
        let id = take_str(&mut map, "id", "workflow.id")?;
        let version = take_str(&mut map, "version", "workflow.version")?;
        let kind = WorkflowType::parse(&kind).ok_or_else(|| ValidationError::NotAllowed {
            field: "workflow.type".into(),
            allowed: "realtime, batch",
            found: kind.clone(),
        })?;
        if let Some(extra) = map.keys().next() {
            return Err(ValidationError::Other(format!(
                "field `workflow` must have exactly type, id and version; found also `{extra}`"
            )));
        }
        Ok(WorkflowRef { kind, id, version })
    }

    fn to_value(&self) -> Value {
        json!({"type": self.kind.as_str(), "id": self.id, "version": self.version})
    }
}

impl std::fmt::Display for WorkflowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.kind.as_str(), self.id, self.version)
    }
}

/// A dependency of a (batch) block on another block.
#[derive(Clone, Debug, PartialEq)]
pub struct Dependency {
    /// The block depended on.
    pub pb_id: String,
    /// Kinds of dependency (free text in the tools, e.g. `calibration`).
    pub kind: Vec<String>,
    /// Unknown fields, kept.
    pub extra: Map<String, Value>,
}

/// A processing block.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessingBlock {
    /// The block ID (`pb_id` or `id` in the value).
    pub id: String,
    /// Which shape to write back.
    pub shape: PbShape,
    /// Scheduling block instance, if any.
    pub sbi_id: Option<String>,
    /// The workflow to run.
    pub workflow: WorkflowRef,
    /// Workflow parameters.
    pub parameters: Map<String, Value>,
    /// Scan parameters (2019 shape only).
    pub scan_parameters: Option<Map<String, Value>>,
    /// Blocks this one waits for (2021 shape).
    pub dependencies: Vec<Dependency>,
    /// Unknown fields, kept.
    pub extra: Map<String, Value>,
}

impl ProcessingBlock {
    /// Path of a block.
    pub fn path(id: &str) -> String {
        format!("/pb/{id}")
    }

    /// Path of a block's state.
    pub fn state_path(id: &str) -> String {
        format!("/pb/{id}/state")
    }

    /// The block ID of a block path (`/pb/<id>`), the inverse of [`ProcessingBlock::path`].
    pub fn id_from_path(path: &str) -> Option<&str> {
        super::id_in(path, "/pb/", "")
    }

    /// The block ID of a state path (`/pb/<id>/state`).
    pub fn id_from_state_path(path: &str) -> Option<&str> {
        super::id_in(path, "/pb/", "/state")
    }

    /// Path of a block's owner.
    pub fn owner_path(id: &str) -> String {
        format!("/pb/{id}/owner")
    }

    /// The block ID of an owner path (`/pb/<id>/owner`).
    pub fn id_from_owner_path(path: &str) -> Option<&str> {
        super::id_in(path, "/pb/", "/owner")
    }

    /// A new block in the shape `sdpcfg process` writes (2019: `pb_id`, `sbi_id: null`,
    /// empty `parameters` and `scan_parameters`).
    pub fn new(id: impl Into<String>, workflow: WorkflowRef) -> Self {
        ProcessingBlock {
            id: id.into(),
            shape: PbShape::PbId,
            sbi_id: None,
            workflow,
            parameters: Map::new(),
            scan_parameters: Some(Map::new()),
            dependencies: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Parse and validate a stored block; `key_id` is the ID from the key path, which
    /// the value's ID must equal.
    ///
    /// # Errors
    /// A [`ValidationError`] naming the first problem found.
    pub fn parse(text: &str, key_id: Option<&str>) -> Result<Self, ValidationError> {
        let map = parse_object(text)?;
        Self::from_map(map, key_id)
    }

    /// Validate an already-parsed value.
    ///
    /// # Errors
    /// See [`ProcessingBlock::parse`].
    pub fn from_value(value: Value, key_id: Option<&str>) -> Result<Self, ValidationError> {
        Self::from_map(as_object(value)?, key_id)
    }

    fn from_map(
        mut map: Map<String, Value>,
        key_id: Option<&str>,
    ) -> Result<Self, ValidationError> {
        let (shape, field) = if map.contains_key("pb_id") {
            (PbShape::PbId, "pb_id")
        } else if map.contains_key("id") {
            (PbShape::Id, "id")
        } else {
            return Err(ValidationError::MissingField {
                field: "pb_id".into(),
            });
        };
        let id = take_str(&mut map, field, field)?;
        validate_pb_id(&id)?;
        if let Some(key_id) = key_id
            && key_id != id
        {
            return Err(ValidationError::IdMismatch {
                field: if shape == PbShape::PbId {
                    "pb_id"
                } else {
                    "id"
                },
                in_value: id,
                in_key: key_id.to_string(),
            });
        }
        let sbi_id = take_opt_str(&mut map, "sbi_id", "sbi_id")?;
        let workflow = WorkflowRef::from_map(take_object(&mut map, "workflow", "workflow")?)?;
        let parameters = take_opt_object(&mut map, "parameters", "parameters")?.unwrap_or_default();
        let scan_parameters = take_opt_object(&mut map, "scan_parameters", "scan_parameters")?;
        let mut dependencies = Vec::new();
        for (i, dep) in take_opt_list(&mut map, "dependencies", "dependencies")?
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let field = format!("dependencies[{i}]");
            let Value::Object(mut dep) = dep else {
                return Err(ValidationError::WrongType {
                    field,
                    expected: "an object",
                    found: type_name(&dep),
                });
            };
            let pb_id = take_str(&mut dep, "pb_id", &format!("{field}.pb_id"))?;
            validate_pb_id(&pb_id)?;
            let kind = match dep.remove("type") {
                None => Vec::new(),
                Some(Value::Array(items)) => items
                    .into_iter()
                    .map(|t| match t {
                        Value::String(s) => Ok(s),
                        other => Err(ValidationError::WrongType {
                            field: format!("{field}.type[]"),
                            expected: "a string",
                            found: type_name(&other),
                        }),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(ValidationError::WrongType {
                        field: format!("{field}.type"),
                        expected: "a list of strings",
                        found: type_name(&other),
                    });
                }
            };
            dependencies.push(Dependency {
                pb_id,
                kind,
                extra: dep,
            });
        }
        Ok(ProcessingBlock {
            id,
            shape,
            sbi_id,
            workflow,
            parameters,
            scan_parameters,
            dependencies,
            extra: map,
        })
    }

    /// The block as a JSON value, in its original shape, unknown fields included.
    pub fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        let id_field = match self.shape {
            PbShape::PbId => "pb_id",
            PbShape::Id => "id",
        };
        map.insert(id_field.into(), Value::String(self.id.clone()));
        map.insert(
            "sbi_id".into(),
            self.sbi_id.clone().map_or(Value::Null, Value::String),
        );
        map.insert("workflow".into(), self.workflow.to_value());
        map.insert("parameters".into(), Value::Object(self.parameters.clone()));
        if let Some(scan) = &self.scan_parameters {
            map.insert("scan_parameters".into(), Value::Object(scan.clone()));
        }
        if !self.dependencies.is_empty()
            || self.shape == PbShape::Id && self.extra.contains_key("dependencies")
        {
            let deps = self
                .dependencies
                .iter()
                .map(|d| {
                    let mut m = d.extra.clone();
                    m.insert("pb_id".into(), Value::String(d.pb_id.clone()));
                    m.insert("type".into(), json!(d.kind));
                    Value::Object(m)
                })
                .collect();
            map.insert("dependencies".into(), Value::Array(deps));
        }
        Value::Object(map)
    }

    /// The block formatted as the Python tools write it.
    pub fn to_json(&self) -> String {
        to_python_string(&self.to_value())
    }
}

/// The state of a processing block (`/pb/<id>/state`). Every field is optional because
/// older workflows write their own shape; unknown fields are kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessingBlockState {
    /// `STARTING`, `WAITING`, `RUNNING`, `FINISHED`, `FAILED`, `CANCELLED` (or anything a
    /// workflow wrote).
    pub status: Option<String>,
    /// Whether the block's resources are available.
    pub resources_available: Option<bool>,
    /// Why the block failed.
    pub reason: Option<String>,
    /// Unknown fields, kept.
    pub extra: Map<String, Value>,
}

impl ProcessingBlockState {
    /// A state with a status.
    pub fn with_status(status: super::PbStatus) -> Self {
        ProcessingBlockState {
            status: Some(status.as_str().into()),
            ..Default::default()
        }
    }

    /// `{"resources_available": false, "status": "STARTING"}`.
    pub fn starting() -> Self {
        ProcessingBlockState {
            resources_available: Some(false),
            ..Self::with_status(super::PbStatus::Starting)
        }
    }

    /// `{"status": "FAILED", "reason": …}`.
    pub fn failed(reason: impl Into<String>) -> Self {
        ProcessingBlockState {
            reason: Some(reason.into()),
            ..Self::with_status(super::PbStatus::Failed)
        }
    }

    /// The status as a known value, if it is one.
    pub fn known_status(&self) -> Option<super::PbStatus> {
        self.status.as_deref().and_then(super::PbStatus::parse)
    }

    /// Parse a stored state (any JSON object).
    ///
    /// # Errors
    /// Not a JSON object, or a known field of the wrong type.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let mut map = parse_object(text)?;
        let status = take_opt_str(&mut map, "status", "status")?;
        let reason = take_opt_str(&mut map, "reason", "reason")?;
        let resources_available = match map.remove("resources_available") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(other) => {
                return Err(ValidationError::WrongType {
                    field: "resources_available".into(),
                    expected: "a boolean",
                    found: type_name(&other),
                });
            }
        };
        Ok(ProcessingBlockState {
            status,
            resources_available,
            reason,
            extra: map,
        })
    }

    /// As JSON value (absent fields omitted, unknown fields kept).
    pub fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        if let Some(s) = &self.status {
            map.insert("status".into(), Value::String(s.clone()));
        }
        if let Some(r) = self.resources_available {
            map.insert("resources_available".into(), Value::Bool(r));
        }
        if let Some(r) = &self.reason {
            map.insert("reason".into(), Value::String(r.clone()));
        }
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

    const SDPCFG_2019: &str = r#"{"pb_id": "realtime-20191121-0000", "sbi_id": null,
 "workflow": {"id": "testdask", "type": "realtime", "version": "0.1.0"},
 "parameters": {}, "scan_parameters": {}}"#;

    const TOOLS_2021: &str = r#"{"id": "pb-mvp01-20200425-00000", "sbi_id": "sbi-mvp01-20200425-00000",
 "workflow": {"type": "batch", "id": "vis_receive", "version": "0.2.0"}, "parameters": {"n": 1},
 "dependencies": [{"pb_id": "pb-mvp01-20200425-00001", "type": ["calibration"]}]}"#;

    #[test]
    fn the_2019_shape_parses_and_writes_back_identically() {
        let pb = ProcessingBlock::parse(SDPCFG_2019, Some("realtime-20191121-0000")).unwrap();
        assert_eq!(pb.shape, PbShape::PbId);
        assert_eq!(pb.workflow.to_string(), "realtime:testdask:0.1.0");
        assert_eq!(
            pb.to_json(),
            "{\n  \"parameters\": {},\n  \"pb_id\": \"realtime-20191121-0000\",\n  \"sbi_id\": null,\n  \"scan_parameters\": {},\n  \"workflow\": {\n    \"id\": \"testdask\",\n    \"type\": \"realtime\",\n    \"version\": \"0.1.0\"\n  }\n}"
        );
    }

    #[test]
    fn the_2021_shape_parses_with_dependencies() {
        let pb = ProcessingBlock::parse(TOOLS_2021, None).unwrap();
        assert_eq!(pb.shape, PbShape::Id);
        assert_eq!(pb.workflow.kind, WorkflowType::Batch);
        assert_eq!(pb.dependencies[0].pb_id, "pb-mvp01-20200425-00001");
        assert_eq!(pb.dependencies[0].kind, vec!["calibration"]);
        let again = ProcessingBlock::from_value(pb.to_value(), None).unwrap();
        assert_eq!(again, pb);
        assert!(pb.to_value().get("scan_parameters").is_none());
    }

    #[test]
    fn unknown_fields_round_trip() {
        let text = r#"{"pb_id":"a","sbi_id":null,"workflow":{"type":"batch","id":"x","version":"1"},
            "parameters":{},"scan_parameters":{},"priority":7,"notes":{"k":["v"]}}"#;
        let pb = ProcessingBlock::parse(text, None).unwrap();
        let v = pb.to_value();
        assert_eq!(v["priority"], 7);
        assert_eq!(v["notes"]["k"][0], "v");
    }

    #[test]
    fn bad_ids_are_rejected_with_the_pattern() {
        for id in ["", "a_b", "ä", &"x".repeat(65), "a/b"] {
            let text = format!(
                r#"{{"pb_id":{},"workflow":{{"type":"batch","id":"x","version":"1"}}}}"#,
                serde_json::to_string(id).unwrap()
            );
            let err = ProcessingBlock::parse(&text, None).unwrap_err();
            assert!(matches!(err, ValidationError::BadId { .. }), "{id}: {err}");
            assert!(err.to_string().contains("{1,64}"), "{err}");
        }
        assert!(validate_pb_id(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let cases = [
            ("[1]", "must be a JSON object, found a list"),
            ("{", "not valid JSON"),
            (r#"{"sbi_id":null}"#, "missing field `pb_id`"),
            (
                r#"{"pb_id":5}"#,
                "field `pb_id` must be a string, found a number",
            ),
            (r#"{"pb_id":"a"}"#, "missing field `workflow`"),
            (
                r#"{"pb_id":"a","workflow":"x"}"#,
                "field `workflow` must be an object",
            ),
            (
                r#"{"pb_id":"a","workflow":{"type":"x","id":"i","version":"v"}}"#,
                "must be one of realtime, batch",
            ),
            (
                r#"{"pb_id":"a","workflow":{"type":"batch","version":"v"}}"#,
                "missing field `workflow.id`",
            ),
            (
                r#"{"pb_id":"a","workflow":{"type":"batch","id":"i","version":"v"},"parameters":[]}"#,
                "field `parameters` must be an object",
            ),
        ];
        for (text, want) in cases {
            let err = ProcessingBlock::parse(text, None).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = ProcessingBlock::parse(SDPCFG_2019, Some("other")).unwrap_err();
        assert!(err.to_string().contains("does not match the key"), "{err}");
    }

    #[test]
    fn state_keeps_fields_written_by_workflows() {
        let st = ProcessingBlockState::parse(
            r#"{"state":"executing","subarray":"x","status":"RUNNING"}"#,
        )
        .unwrap();
        assert_eq!(st.status.as_deref(), Some("RUNNING"));
        assert_eq!(st.to_value()["state"], "executing");
        assert_eq!(
            ProcessingBlockState::starting().to_json(),
            "{\n  \"resources_available\": false,\n  \"status\": \"STARTING\"\n}"
        );
    }

    #[test]
    fn workflow_specs_parse_like_sdpcfg_process() {
        assert!(WorkflowRef::parse_spec("realtime:testdask:0.1.0").is_some());
        for bad in ["realtime:testdask", "foo:x:1", "realtime::1", "a:b:c:d"] {
            assert!(WorkflowRef::parse_spec(bad).is_none(), "{bad}");
        }
    }
}
