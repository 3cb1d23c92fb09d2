//! What each verb does: list, watch, create and delete-collection on a collection;
//! get, replace, patch (merge or apply) and delete on an object or its `/status`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::apply;
use super::resources::Kind;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{ApiError, json_response, not_allowed};
use super::store::Update;
use super::watch::{self, WatchRequest};
use super::{Shared, lock};

/// A request on a collection: `…/pods` or `…/namespaces/<ns>/pods`.
pub(crate) fn collection(
    shared: &Arc<Shared>,
    method: &Method,
    query: &HashMap<String, String>,
    body: &[u8],
    kind: &'static Kind,
    namespace: Option<String>,
) -> Result<Response, ApiError> {
    let watching = matches!(param(query, "watch"), "true" | "1");
    let verb = match *method {
        Method::GET if watching => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    shared.count(verb, kind.kind);
    refuse_dry_run(query)?;
    let labels =
        LabelSelector::parse(param(query, "labelSelector")).map_err(ApiError::bad_request)?;
    let fields =
        FieldSelector::parse(param(query, "fieldSelector")).map_err(ApiError::bad_request)?;
    match *method {
        Method::GET if watching => {
            let resource_version = match param(query, "resourceVersion") {
                "" | "0" => None,
                rv => Some(parse_rv(rv)?),
            };
            let timeout = match param(query, "timeoutSeconds") {
                "" => None,
                seconds => Some(Duration::from_secs(seconds.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid timeoutSeconds {seconds:?}"))
                })?)),
            };
            let request = WatchRequest {
                kind,
                namespace,
                labels,
                fields,
                resource_version,
                bookmarks: matches!(param(query, "allowWatchBookmarks"), "true" | "1"),
                timeout,
            };
            let body = Body::from_stream(watch::stream(Arc::clone(shared), request));
            Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        Method::GET => {
            let list = list(shared, query, kind, namespace.as_deref(), &labels, &fields)?;
            Ok(json_response(StatusCode::OK, &list))
        }
        Method::POST => {
            let namespace = match namespace {
                Some(ns) => ns,
                None if kind.namespaced => return Err(not_allowed()),
                None => String::new(),
            };
            let object = parse_json(body)?;
            let created = lock(&shared.store).create(kind, &namespace, object, Update::Main)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        Method::DELETE => {
            let mut store = lock(&shared.store);
            let doomed: Vec<(String, String)> = store
                .list(kind, namespace.as_deref(), None)
                .filter(|o| labels.matches(o) && fields.matches(o))
                .map(|o| (namespace_of(o).to_owned(), name_of(o).to_owned()))
                .collect();
            let mut items = Vec::new();
            for (ns, name) in doomed {
                items.push(store.delete(kind, &ns, &name)?);
            }
            let list = list_value(kind, store.rv(), items, None);
            Ok(json_response(StatusCode::OK, &list))
        }
        _ => Err(not_allowed()),
    }
}

/// A list, one page of `limit` items when asked, continuing after the object a
/// `continue` token names.
fn list(
    shared: &Shared,
    query: &HashMap<String, String>,
    kind: &'static Kind,
    namespace: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Result<Value, ApiError> {
    let store = lock(&shared.store);
    let limit: usize = match param(query, "limit") {
        "" | "0" => usize::MAX,
        n => n
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {n:?}")))?,
    };
    // A token is "<version of the first page>/<namespace>/<name of the last item>".
    let token = param(query, "continue");
    let (rv, after) = if token.is_empty() {
        (store.rv(), None)
    } else {
        let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
        let mut parts = token.splitn(3, '/');
        let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let rv: u64 = rv.parse().map_err(|_| bad())?;
        if rv < store.compacted() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ));
        }
        (rv, Some((ns.to_owned(), name.to_owned())))
    };
    let after = after
        .as_ref()
        .map(|(ns, name)| (ns.as_str(), name.as_str()));
    let mut items: Vec<Value> = store
        .list(kind, namespace, after)
        .filter(|o| labels.matches(o) && fields.matches(o))
        .take(limit.saturating_add(1))
        .cloned()
        .collect();
    let next = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|last| format!("{rv}/{}/{}", namespace_of(last), name_of(last)))
    } else {
        None
    };
    Ok(list_value(kind, rv, items, next))
}

fn list_value(kind: &Kind, rv: u64, items: Vec<Value>, next: Option<String>) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// One object, or its `/status`.
pub(crate) struct ObjectRef {
    pub kind: &'static Kind,
    pub namespace: String,
    pub name: String,
    pub status: bool,
}

impl ObjectRef {
    pub fn handle(
        &self,
        shared: &Shared,
        method: &Method,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let (kind, ns, name) = (self.kind, self.namespace.as_str(), self.name.as_str());
        let how = if self.status {
            Update::Status
        } else {
            Update::Main
        };
        let verb = match *method {
            Method::GET => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "other",
        };
        shared.count(verb, kind.kind);
        refuse_dry_run(query)?;
        match *method {
            Method::GET => {
                let store = lock(&shared.store);
                let object = store
                    .get(kind, ns, name)
                    .ok_or_else(|| ApiError::not_found(kind, name))?;
                Ok(json_response(StatusCode::OK, object))
            }
            Method::PUT => {
                let object = parse_json(body)?;
                let updated = lock(&shared.store).update(kind, ns, name, object, how)?;
                Ok(json_response(StatusCode::OK, &updated))
            }
            Method::PATCH => self.patch(shared, query, headers, body, how),
            Method::DELETE => {
                let deleted = lock(&shared.store).delete(kind, ns, name)?;
                Ok(json_response(StatusCode::OK, &deleted))
            }
            _ => Err(not_allowed()),
        }
    }

    fn patch(
        &self,
        shared: &Shared,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
        how: Update,
    ) -> Result<Response, ApiError> {
        let (kind, ns, name) = (self.kind, self.namespace.as_str(), self.name.as_str());
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let content_type = content_type.split(';').next().unwrap_or("").trim();
        let mut store = lock(&shared.store);
        let old = store.get(kind, ns, name).cloned();
        match content_type {
            "application/apply-patch+yaml" => {
                let manager = param(query, "fieldManager");
                if manager.is_empty() {
                    return Err(ApiError::bad_request(
                        "fieldManager is required for apply requests",
                    ));
                }
                let force = param(query, "force") == "true";
                let mut config: Value = serde_yaml::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                if !config.is_object() || !config["metadata"].is_object() {
                    return Err(ApiError::bad_request(
                        "an applied configuration is an object with metadata",
                    ));
                }
                match config["metadata"]["name"].as_str() {
                    None => config["metadata"]["name"] = json!(name),
                    Some(n) if n != name => {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({n}) does not match the name on the URL ({name})"
                        )));
                    }
                    Some(_) => {}
                }
                if self.status {
                    return Err(ApiError::bad_request(
                        "the stand-in does not apply to /status",
                    ));
                }
                let object = apply::apply(kind, old.as_ref(), config, manager, force)?;
                if old.is_none() {
                    let created = store.create(kind, ns, object, Update::Main)?;
                    return Ok(json_response(StatusCode::CREATED, &created));
                }
                let updated = store.update(kind, ns, name, object, how)?;
                Ok(json_response(StatusCode::OK, &updated))
            }
            // A strategic merge patch is taken as a merge patch: lists are replaced
            // rather than merged by key.
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let mut object = old.ok_or_else(|| ApiError::not_found(kind, name))?;
                let patch = parse_json(body)?;
                apply::merge_patch(&mut object, &patch);
                let updated = store.update(kind, ns, name, object, how)?;
                Ok(json_response(StatusCode::OK, &updated))
            }
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
            )),
        }
    }
}

fn refuse_dry_run(query: &HashMap<String, String>) -> Result<(), ApiError> {
    if query.contains_key("dryRun") {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the stand-in",
        ));
    }
    Ok(())
}

pub(crate) fn param<'a>(query: &'a HashMap<String, String>, name: &str) -> &'a str {
    query.get(name).map_or("", String::as_str)
}

fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
}

fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or("")
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}
