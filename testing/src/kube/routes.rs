//! Request routing: the apiserver's URL layout, query strings and JSON answers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::Shared;
use super::handlers::{ObjectRef, collection};
use super::resources::{self, Kind};
use super::status::{ApiError, json_response, not_allowed};

/// What a URL names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A discovery document, with the kind of document it is (for request counts).
    Discovery(&'static str, Value),
    /// `…/pods`, `…/namespaces/<ns>/pods`: `namespace` is `None` for all namespaces
    /// and for cluster-scoped kinds.
    Collection {
        kind: &'static Kind,
        namespace: Option<String>,
    },
    /// `…/pods/<name>` and `…/pods/<name>/status`.
    Object {
        kind: &'static Kind,
        namespace: String,
        name: String,
        status: bool,
    },
}

/// The only handler: every request comes here.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query().unwrap_or(""));
    let target = match target(uri.path(), &shared.address) {
        Ok(target) => target,
        Err(error) => {
            shared.count(&method.as_str().to_lowercase(), "");
            return failure(&error);
        }
    };
    let result = match target {
        Target::Discovery(document, value) => {
            shared.count("get", document);
            if method == Method::GET {
                Ok(json_response(StatusCode::OK, &value))
            } else {
                Err(not_allowed())
            }
        }
        Target::Collection { kind, namespace } => {
            collection(&shared, &method, &query, &body, kind, namespace)
        }
        Target::Object {
            kind,
            namespace,
            name,
            status,
        } => {
            let object = ObjectRef {
                kind,
                namespace,
                name,
                status,
            };
            object.handle(&shared, &method, &query, &headers, &body)
        }
    };
    result.unwrap_or_else(|error| failure(&error))
}

/// Resolves a path to what it names.
fn target(path: &str, address: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let found = |value: Option<Value>, document| {
        value
            .map(|v| Target::Discovery(document, v))
            .ok_or_else(not_found)
    };
    match segments.as_slice() {
        ["version"] => found(Some(resources::version()), "Version"),
        ["api"] => found(Some(resources::core_versions(address)), "APIVersions"),
        ["api", version] => found(resources::resource_list("", version), "APIResourceList"),
        ["apis"] => found(Some(resources::group_list()), "APIGroupList"),
        ["apis", group] => found(resources::group(group), "APIGroup"),
        ["apis", group, version] => {
            found(resources::resource_list(group, version), "APIResourceList")
        }
        ["api", version, rest @ ..] => resource_target("", version, rest).ok_or_else(not_found),
        ["apis", group, version, rest @ ..] => {
            resource_target(group, version, rest).ok_or_else(not_found)
        }
        _ => Err(not_found()),
    }
}

fn resource_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let namespaced = match rest {
        ["namespaces", ns, plural, tail @ ..] => Kind::find(group, version, plural)
            .filter(|k| k.namespaced)
            .map(|k| (k, Some((*ns).to_owned()), tail)),
        _ => None,
    };
    let (kind, namespace, tail) = match namespaced {
        Some(found) => found,
        None => {
            let (plural, tail) = rest.split_first()?;
            (Kind::find(group, version, plural)?, None, tail)
        }
    };
    let object = |name: &str, status| {
        // A namespaced object is only reachable through its namespace.
        (namespace.is_some() || !kind.namespaced).then(|| Target::Object {
            kind,
            namespace: namespace.clone().unwrap_or_default(),
            name: name.to_owned(),
            status,
        })
    };
    match tail {
        [] => Some(Target::Collection { kind, namespace }),
        [name] => object(name, false),
        [name, "status"] if kind.status => object(name, true),
        _ => None,
    }
}

fn failure(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

/// `a=1&b=x%2Fy` → `{a: 1, b: x/y}`; the last of repeated names wins.
fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::super::handlers::param;
    use super::*;

    type Resolved = (&'static str, Option<String>, Option<String>, bool);

    /// The plural, namespace, name and status flag of what a path names.
    fn resolve(path: &str) -> Option<Resolved> {
        match target(path, "127.0.0.1:1").ok()? {
            Target::Collection { kind, namespace } => Some((kind.plural, namespace, None, false)),
            Target::Object {
                kind,
                namespace,
                name,
                status,
            } => Some((kind.plural, Some(namespace), Some(name), status)),
            Target::Discovery(..) => None,
        }
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn paths_name_collections_objects_and_status() {
        assert_eq!(resolve("/api/v1/pods"), Some(("pods", None, None, false)));
        assert_eq!(
            resolve("/api/v1/namespaces/ns/pods"),
            Some(("pods", some("ns"), None, false))
        );
        assert_eq!(
            resolve("/api/v1/namespaces/ns/pods/p/status"),
            Some(("pods", some("ns"), some("p"), true))
        );
        assert_eq!(
            resolve("/apis/batch/v1/namespaces/ns/jobs/j"),
            Some(("jobs", some("ns"), some("j"), false))
        );
        assert_eq!(
            resolve("/api/v1/namespaces"),
            Some(("namespaces", None, None, false))
        );
        assert_eq!(
            resolve("/api/v1/namespaces/ns"),
            Some(("namespaces", some(""), some("ns"), false))
        );
        assert_eq!(
            resolve("/api/v1/namespaces/ns/status"),
            Some(("namespaces", some(""), some("ns"), true))
        );
    }

    #[test]
    fn unknown_paths_and_subresources_are_not_found() {
        for path in [
            "/api/v1/pods/p",
            "/api/v1/namespaces/ns/configmaps/c/status",
            "/api/v1/namespaces/ns/pods/p/log",
            "/apis/apps/v1/namespaces/ns/cronjobs",
            "/apis/apps/v2/deployments",
            "/healthz",
        ] {
            let error = target(path, "127.0.0.1:1").err();
            assert_eq!(error.map(|e| e.code), Some(404), "{path}");
        }
    }

    #[test]
    fn queries_are_percent_decoded() {
        let query = parse_query("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true&x");
        assert_eq!(param(&query, "labelSelector"), "app=web,tier in (a)");
        assert_eq!(param(&query, "watch"), "true");
        assert_eq!(param(&query, "x"), "");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
