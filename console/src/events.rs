//! `/api/events`: the page's live feed, as server-sent events.
//!
//! A page gets, in order: `hello` (the server's clock, for ages), `snapshot` (the whole
//! picture), `changes` (the recent feed), then a `delta` after every change of the
//! picture and a `change` per change record, from frames formatted once for all pages.
//! A page that reads too slowly to keep up gets a fresh `snapshot` instead of the deltas
//! it missed, and so does every page when too much changed at once for a delta (the first
//! listing, a listing again). Each delta names the revision it applies to, so a page can check that it
//! missed nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::hub::{Frame, Hub, event, to_json};

/// A comment this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long the browser waits before reconnecting (`retry:`), in milliseconds.
const RETRY_MS: u32 = 2_000;

/// The handler's state: the hub and the token that ends every stream at shutdown.
#[derive(Clone)]
pub(crate) struct Events {
    pub hub: Arc<Hub>,
    pub shutdown: CancellationToken,
}

/// `GET /api/events`.
pub(crate) async fn handler(State(events): State<Events>) -> Response {
    let body = Body::from_stream(stream(events.hub, events.shutdown));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Tell nginx-style proxies not to buffer the stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// The events of one page until it disconnects (the stream is dropped), the hub stops
/// or `shutdown` fires.
pub(crate) fn stream(
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    // Subscribed before the first snapshot is read: no delta can fall in between.
    let frames = hub.subscribe();
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    hub.metrics.pages.inc();
    let page = Page {
        _connected: Connected(Arc::clone(&hub)),
        hub,
        frames,
        revision: None,
        keepalive,
        shutdown,
    };
    stream::unfold(page, |mut page| async move {
        let chunks = page.next().await?;
        Some((chunks, page))
    })
    .flat_map(|chunks| stream::iter(chunks.into_iter().map(Ok)))
}

/// One connected page.
struct Page {
    hub: Arc<Hub>,
    frames: broadcast::Receiver<Frame>,
    /// Revision of the snapshot the page has; `None` before the first.
    revision: Option<i64>,
    keepalive: Interval,
    shutdown: CancellationToken,
    _connected: Connected,
}

/// Counts the page in the `pages` gauge while it exists.
struct Connected(Arc<Hub>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.metrics.pages.dec();
    }
}

#[derive(Serialize)]
struct Hello {
    /// The server's clock (RFC 3339), so that ages do not depend on the browser's.
    now: String,
}

impl Page {
    /// The next chunks to send, `None` to end the stream.
    async fn next(&mut self) -> Option<Vec<Bytes>> {
        let Some(at) = self.revision else {
            let hello = Hello {
                now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            let mut chunks = vec![
                Bytes::from(format!("retry: {RETRY_MS}\n\n")),
                event("hello", &to_json(&hello)),
            ];
            chunks.extend(self.snapshot());
            chunks.push(event("changes", &self.hub.recent_json()));
            return Some(chunks);
        };
        loop {
            let frame = tokio::select! {
                () = self.shutdown.cancelled() => return None,
                _ = self.keepalive.tick() => return Some(vec![Bytes::from_static(b":\n\n")]),
                frame = self.frames.recv() => frame,
            };
            match frame {
                Ok(Frame::Delta { to, .. }) if to <= at => continue,
                Ok(Frame::Delta { from, to, event }) if from == at => {
                    self.revision = Some(to);
                    return Some(vec![event]);
                }
                // Cannot happen (deltas are published in order, after their
                // snapshot); should it, the page starts again from the whole picture.
                Ok(Frame::Delta { .. }) => return Some(self.snapshot()),
                Ok(Frame::Reset { to }) if to <= at => continue,
                Ok(Frame::Reset { .. }) => return Some(self.snapshot()),
                Ok(Frame::Change(event)) => return Some(vec![event]),
                Err(RecvError::Lagged(_)) => {
                    self.hub.metrics.resent.inc();
                    return Some(self.snapshot());
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The `snapshot` event of the current snapshot, in three chunks so that its JSON
    /// is shared, not copied; the page is then at its revision.
    fn snapshot(&mut self) -> Vec<Bytes> {
        // Frames still buffered for this page are older than the snapshot: drop them, or
        // they would take room in the buffer and make the page fall behind again. A new
        // receiver, then the snapshot: as at the start, no delta falls in between.
        self.frames = self.frames.resubscribe();
        let published = self.hub.published();
        self.revision = Some(published.snapshot.revision);
        vec![
            Bytes::from_static(b"event: snapshot\ndata: "),
            published.json(),
            Bytes::from_static(b"\n\n"),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures::StreamExt;
    use sdp_config::overview::Snapshot;

    use super::*;
    use crate::hub::{FRAME_BUFFER, Published};

    fn publish(hub: &Hub, revision: i64, from: i64) {
        let snapshot = Arc::new(Snapshot::new(revision, vec![], vec![]));
        let frame = Frame::Delta {
            from,
            to: revision,
            event: event("delta", format!("{{\"revision\":{revision}}}").as_bytes()),
        };
        hub.publish(Arc::new(Published::new(snapshot)), Some(frame));
    }

    /// The text the stream sends until it has sent `events` whole events.
    async fn read(
        s: &mut (impl Stream<Item = Result<Bytes, Infallible>> + Unpin),
        events: usize,
    ) -> String {
        let mut text = String::new();
        while text.matches("event: ").count() < events || !text.ends_with("\n\n") {
            let chunk = s.next().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        text
    }

    #[tokio::test]
    async fn a_page_gets_the_picture_then_the_deltas_after_it() {
        let hub = Hub::new(10);
        publish(&hub, 3, 0);
        let mut s = Box::pin(stream(Arc::clone(&hub), CancellationToken::new()));
        let start = read(&mut s, 3).await;
        assert!(
            start.starts_with("retry: 2000\n\nevent: hello\n"),
            "{start}"
        );
        assert!(
            start.contains("event: snapshot\ndata: {\"revision\":3,"),
            "{start}"
        );
        assert!(start.ends_with("event: changes\ndata: []\n\n"), "{start}");
        publish(&hub, 4, 3);
        assert_eq!(
            read(&mut s, 1).await,
            "event: delta\ndata: {\"revision\":4}\n\n"
        );
        assert_eq!(hub.metrics.pages.get(), 1);
        drop(s);
        assert_eq!(hub.metrics.pages.get(), 0);
    }

    #[tokio::test]
    async fn a_page_that_falls_behind_gets_the_whole_picture_again() {
        let hub = Hub::new(10);
        publish(&hub, 1, 0);
        let mut s = Box::pin(stream(Arc::clone(&hub), CancellationToken::new()));
        read(&mut s, 3).await;
        // More deltas than the buffer holds while the page reads nothing.
        let last = 1 + FRAME_BUFFER as i64 + 10;
        for revision in 2..=last {
            publish(&hub, revision, revision - 1);
        }
        let again = read(&mut s, 1).await;
        assert!(
            again.starts_with(&format!("event: snapshot\ndata: {{\"revision\":{last},")),
            "{again}"
        );
        assert_eq!(hub.metrics.resent.get(), 1);
        // Then only what comes after that snapshot (the buffered deltas are older).
        publish(&hub, last + 1, last);
        assert_eq!(
            read(&mut s, 1).await,
            format!("event: delta\ndata: {{\"revision\":{}}}\n\n", last + 1)
        );
    }

    #[tokio::test]
    async fn shutdown_ends_every_stream() {
        let hub = Hub::new(10);
        let shutdown = CancellationToken::new();
        let mut s = Box::pin(stream(Arc::clone(&hub), shutdown.clone()));
        read(&mut s, 3).await;
        shutdown.cancel();
        assert!(s.next().await.is_none());
    }
}
