//! Field extraction with errors that name the field and what was expected.

use serde_json::{Map, Value};

/// Why a stored value is not a valid entity. The messages are written for the person
/// who wrote the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// Dotted field name.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// Dotted field name.
        field: String,
        /// What was expected.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// An ID does not match its pattern.
    #[error("invalid {kind} ID {id:?}: must match {pattern}")]
    BadId {
        /// `processing block` or `deployment`.
        kind: &'static str,
        /// The ID (possibly truncated for display).
        id: String,
        /// The pattern.
        pattern: &'static str,
    },
    /// The ID in the value differs from the one in the key.
    #[error("{field} {in_value:?} does not match the key's ID {in_key:?}")]
    IdMismatch {
        /// The field holding the ID.
        field: &'static str,
        /// ID in the value.
        in_value: String,
        /// ID in the key path.
        in_key: String,
    },
    /// A field has a value outside its allowed set.
    #[error("field `{field}` must be one of {allowed}, found {found:?}")]
    NotAllowed {
        /// Dotted field name.
        field: String,
        /// Allowed values.
        allowed: &'static str,
        /// The value found.
        found: String,
    },
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parse text as a JSON object.
pub(crate) fn parse_object(text: &str) -> Result<Map<String, Value>, ValidationError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ValidationError::NotAnObject {
            found: type_name(&other),
        }),
        Err(e) => Err(ValidationError::NotJson(e.to_string())),
    }
}

pub(crate) fn as_object(v: Value) -> Result<Map<String, Value>, ValidationError> {
    match v {
        Value::Object(map) => Ok(map),
        other => Err(ValidationError::NotAnObject {
            found: type_name(&other),
        }),
    }
}

fn wrong(field: &str, expected: &'static str, v: &Value) -> ValidationError {
    ValidationError::WrongType {
        field: field.to_string(),
        expected,
        found: type_name(v),
    }
}

fn missing(field: &str) -> ValidationError {
    ValidationError::MissingField {
        field: field.to_string(),
    }
}

/// Remove and return a required string field.
pub(crate) fn take_str(
    map: &mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<String, ValidationError> {
    match map.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong(field, "a string", &other)),
        None => Err(missing(field)),
    }
}

/// Remove and return an optional string-or-null field.
pub(crate) fn take_opt_str(
    map: &mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, ValidationError> {
    match map.remove(key) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Null) | None => Ok(None),
        Some(other) => Err(wrong(field, "a string or null", &other)),
    }
}

/// Remove and return an object field (absent → `None`).
pub(crate) fn take_opt_object(
    map: &mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<Map<String, Value>>, ValidationError> {
    match map.remove(key) {
        Some(Value::Object(m)) => Ok(Some(m)),
        None => Ok(None),
        Some(other) => Err(wrong(field, "an object", &other)),
    }
}

/// Remove and return a required object field.
pub(crate) fn take_object(
    map: &mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Map<String, Value>, ValidationError> {
    take_opt_object(map, key, field)?.ok_or_else(|| missing(field))
}

/// Remove and return a list field (absent → `None`).
pub(crate) fn take_opt_list(
    map: &mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<Vec<Value>>, ValidationError> {
    match map.remove(key) {
        Some(Value::Array(v)) => Ok(Some(v)),
        None => Ok(None),
        Some(other) => Err(wrong(field, "a list", &other)),
    }
}

/// Check an ID against `^[A-Za-z0-9\-]{1,max}$`.
pub(crate) fn check_id(
    id: &str,
    max: usize,
    kind: &'static str,
    pattern: &'static str,
) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(100).collect();
        let shown = if shown.len() < id.len() {
            format!("{shown}…")
        } else {
            shown
        };
        Err(ValidationError::BadId {
            kind,
            id: shown,
            pattern,
        })
    }
}
