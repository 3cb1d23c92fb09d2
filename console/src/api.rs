//! The page's routes: its files, the JSON API and the event stream.
//!
//! - `GET /api/overview`: the whole snapshot (`{"revision", "blocks", "deployments",
//!   "orphans", "totals"}`), the same JSON the page starts from;
//! - `GET /api/blocks/{id}`: one block with its deployments, 404 when unknown;
//! - `GET /api/changes`: the recent change records, oldest first;
//! - `GET /api/events`: server-sent events (see [`crate::events`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sdp_config::overview::{BlockSummary, DeploymentSummary};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::assets::ASSETS;
use crate::events::{self, Events};
use crate::hub::{Hub, to_json};

/// Every route of the console but the health server's own.
pub(crate) fn router(hub: Arc<Hub>, shutdown: CancellationToken) -> Router {
    let mut router = Router::new();
    for asset in &ASSETS {
        router = router.route(asset.path, get(move || async move { asset.response() }));
    }
    let api = Router::new()
        .route("/api/overview", get(overview))
        .route("/api/blocks/{id}", get(block))
        .route("/api/changes", get(changes))
        .with_state(Arc::clone(&hub));
    let events = Router::new()
        .route("/api/events", get(events::handler))
        .with_state(Events { hub, shutdown });
    router.merge(api).merge(events)
}

fn json(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn overview(State(hub): State<Arc<Hub>>) -> Response {
    json(StatusCode::OK, hub.published().json())
}

async fn changes(State(hub): State<Arc<Hub>>) -> Response {
    json(StatusCode::OK, hub.recent_json())
}

#[derive(Serialize)]
struct BlockDetail<'a> {
    revision: i64,
    block: &'a BlockSummary,
    deployments: Vec<&'a DeploymentSummary>,
}

#[derive(Serialize)]
struct NotFound<'a> {
    error: &'a str,
}

async fn block(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    let published = hub.published();
    let snapshot = &published.snapshot;
    match snapshot.block(&id) {
        Some(block) => {
            let detail = BlockDetail {
                revision: snapshot.revision,
                block,
                deployments: snapshot.deployments_of(block).collect(),
            };
            json(StatusCode::OK, to_json(&detail))
        }
        None => json(
            StatusCode::NOT_FOUND,
            to_json(&NotFound {
                error: "no such processing block",
            }),
        ),
    }
}
