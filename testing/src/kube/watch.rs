//! `?watch=true`: a chunked stream of JSON lines `{"type":…,"object":…}`.
//!
//! A stream starts after the requested resource version (replaying the retained history
//! after it), or with an `ADDED` event per existing object when none is given (`""` or
//! `"0"`). It sends `BOOKMARK`s at the handle's bookmark interval when asked to, ends
//! after `timeoutSeconds`, answers a version older than the history with one `ERROR`
//! event carrying a `410 Expired` Status, and is cut without the closing chunk, as a
//! lost connection, by [`KubeApi::drop_watches`](super::KubeApi::drop_watches).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::Shared;
use super::resources::Kind;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Change, EventType, Store};

/// What one watch request asked for.
#[derive(Debug, Clone)]
pub(crate) struct WatchRequest {
    pub kind: &'static Kind,
    /// `None`: all namespaces (or a cluster-scoped kind).
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// `None`: start with the current objects as `ADDED` events.
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event this watch sees for a change, if any: an object that moves into the
    /// selection is `ADDED` for it, one that moves out is `DELETED`.
    fn event_for<'c>(&self, change: &'c Change) -> Option<(EventType, &'c Value)> {
        if change.kind != self.kind {
            return None;
        }
        let now = self.selects(&change.object);
        let before = change.before.as_ref().is_some_and(|b| self.selects(b));
        let event = match (change.event, before, now) {
            (EventType::Added, _, true) => EventType::Added,
            (EventType::Modified, true, true) => EventType::Modified,
            (EventType::Modified, false, true) => EventType::Added,
            (EventType::Modified, true, false) => EventType::Deleted,
            (EventType::Deleted, _, true) => EventType::Deleted,
            _ => return None,
        };
        Some((event, &change.object))
    }
}

/// The state of one open watch stream.
struct Watch {
    shared: Arc<Shared>,
    request: WatchRequest,
    /// Every change up to this version has been sent (or did not concern this watch).
    cursor: Option<u64>,
    /// The store's drop count when the stream started.
    drops: u64,
    wake: watch::Receiver<u64>,
    deadline: Option<Instant>,
    next_bookmark: Instant,
    done: bool,
}

/// The body of a watch response.
pub(crate) fn stream(
    shared: Arc<Shared>,
    request: WatchRequest,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let (drops, wake) = {
        let store = super::lock(&shared.store);
        (store.drops(), store.subscribe())
    };
    let now = Instant::now();
    let watch = Watch {
        deadline: request.timeout.map(|t| now + t),
        next_bookmark: now + shared.bookmark_interval(),
        cursor: request.resource_version,
        shared,
        request,
        drops,
        wake,
        done: false,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        let chunk = watch.next_chunk().await?;
        Some((chunk, watch))
    })
}

impl Watch {
    /// The next piece of the body: some event lines, an error that cuts the connection,
    /// or `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.done {
            return None;
        }
        loop {
            // Seen before looking, so that a write after the look wakes the wait below.
            self.wake.borrow_and_update();
            {
                let shared = Arc::clone(&self.shared);
                let store = super::lock(&shared.store);
                if store.drops() != self.drops {
                    self.done = true;
                    return Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "watch dropped by the test",
                    )));
                }
                match self.pending(&store) {
                    Err(error) => {
                        self.done = true;
                        return Some(Ok(line("ERROR", &error.to_status())));
                    }
                    Ok(lines) if !lines.is_empty() => return Some(Ok(lines.into())),
                    Ok(_) => {}
                }
                if self.request.bookmarks && Instant::now() >= self.next_bookmark {
                    self.next_bookmark = Instant::now() + self.shared.bookmark_interval();
                    let bookmark = json!({
                        "kind": self.request.kind.kind,
                        "apiVersion": self.request.kind.api_version(),
                        "metadata": {"resourceVersion": store.rv().to_string()},
                    });
                    return Some(Ok(line("BOOKMARK", &bookmark)));
                }
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.done = true;
                return None;
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let bookmark = if self.request.bookmarks {
                self.next_bookmark
            } else {
                far
            };
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        // The store is gone: the server is stopping.
                        self.done = true;
                        return None;
                    }
                }
                () = sleep_until(bookmark) => {}
                () = sleep_until(self.deadline.unwrap_or(far)) => {}
            }
        }
    }

    /// The event lines not sent yet, moving the cursor to the store's version.
    fn pending(&mut self, store: &Store) -> Result<Vec<u8>, ApiError> {
        let mut lines = Vec::new();
        match self.cursor {
            None => {
                let namespace = self.request.namespace.as_deref();
                for object in store.list(self.request.kind, namespace, None) {
                    if self.request.selects(object) {
                        lines.extend_from_slice(&line("ADDED", object));
                    }
                }
            }
            Some(cursor) => {
                for change in store.changes_after(cursor)? {
                    if let Some((event, object)) = self.request.event_for(change) {
                        lines.extend_from_slice(&line(event.as_str(), object));
                    }
                }
            }
        }
        self.cursor = Some(store.rv());
        Ok(lines)
    }
}

fn line(event: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event, "object": object})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line.into()
}
