//! The metadata the server owns or checks: `uid`, `creationTimestamp`, names and
//! `generateName`, and the agreement of a body with its URL.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use serde_json::{Map, Value, json};

use super::resources::Kind;
use super::status::ApiError;

/// Makes unique ids: a process-random hash of a counter.
#[derive(Debug, Default)]
pub(crate) struct Uids {
    seed: RandomState,
    count: u64,
}

impl Uids {
    /// A version-4-shaped UUID, unique within this process.
    pub fn uid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    /// Five characters for `generateName`, from the apiserver's alphabet.
    pub fn suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut bits = self.next();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
                bits /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn next(&mut self) -> u64 {
        self.count += 1;
        let mut h = self.seed.build_hasher();
        h.write_u64(self.count);
        h.finish()
    }
}

/// The current time as Kubernetes writes timestamps.
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metadata` as a map, created if absent.
pub(crate) fn metadata(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let object = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
    object
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not an object"))
}

pub(crate) fn name_of(object: &Value) -> Result<String, ApiError> {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if name.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "metadata.name: Required value: name or generateName is required",
        ));
    }
    if name.len() > 253
        || !name.chars().all(valid)
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Refuses a body whose kind, namespace or name contradicts the request.
pub(crate) fn check_body(
    kind: &Kind,
    namespace: &str,
    name: Option<&str>,
    object: &Value,
) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request("the body is not a JSON object"));
    }
    if let Some(k) = object["kind"].as_str().filter(|k| *k != kind.kind) {
        return Err(ApiError::bad_request(format!(
            "the kind of the body ({k}) is not that of the request ({})",
            kind.kind
        )));
    }
    let body_ns = object["metadata"]["namespace"].as_str().unwrap_or("");
    if kind.namespaced && !body_ns.is_empty() && body_ns != namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body_name = object["metadata"]["name"].as_str().unwrap_or("");
    if let Some(name) = name.filter(|n| !body_name.is_empty() && body_name != *n) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

pub(crate) fn set_or_remove(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(value) => map.insert(field.into(), value),
            None => map.remove(field),
        };
    }
}

pub(crate) fn without(object: &Value, fields: &[&str]) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        for field in fields {
            map.remove(*field);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_lowercase_subdomains() {
        let name = |n: &str| name_of(&json!({"metadata": {"name": n}})).map_err(|e| e.code);
        assert_eq!(name("web-0.a"), Ok("web-0.a".to_owned()));
        assert_eq!(name("Web"), Err(422));
        assert_eq!(name("-web"), Err(422));
        assert_eq!(name(""), Err(422));
    }

    #[test]
    fn a_body_must_agree_with_its_url() {
        let pods = Kind::named("Pod").unwrap();
        let body = json!({"kind": "Pod", "metadata": {"name": "a", "namespace": "ns"}});
        assert_eq!(check_body(pods, "ns", Some("a"), &body), Ok(()));
        assert_eq!(
            check_body(pods, "other", Some("a"), &body).map_err(|e| e.code),
            Err(400)
        );
        assert_eq!(
            check_body(pods, "ns", Some("b"), &body).map_err(|e| e.code),
            Err(400)
        );
        let jobs = Kind::named("Job").unwrap();
        assert_eq!(
            check_body(jobs, "ns", None, &body).map_err(|e| e.code),
            Err(400)
        );
    }

    #[test]
    fn uids_are_uuid_shaped_and_distinct() {
        let mut uids = Uids::default();
        let (a, b) = (uids.uid(), uids.uid());
        assert_ne!(a, b);
        let lengths: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12]);
        assert_eq!(uids.suffix().len(), 5);
    }
}
