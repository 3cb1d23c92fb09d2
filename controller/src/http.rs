//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;

/// Set once connected to the database.
pub type Shared = Arc<OnceLock<Arc<Ctx>>>;

/// How long `/readyz` waits for etcd.
const ETCD_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serve until `shutdown` fires.
pub async fn serve(listener: TcpListener, shared: Shared, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Ready when the view is complete and etcd answers, leading or standing by.
async fn readyz(State(shared): State<Shared>) -> (StatusCode, String) {
    let Some(ctx) = shared.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the configuration database yet\n".into(),
        );
    };
    if !ctx.view().is_synced() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "still listing the configuration database\n".into(),
        );
    }
    match tokio::time::timeout(ETCD_PROBE_TIMEOUT, ctx.db.current_revision()).await {
        Ok(Ok(_)) => {
            let role = if ctx.leader_guard().is_some() {
                "leader"
            } else {
                "standby"
            };
            (StatusCode::OK, format!("ready ({role})\n"))
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("configuration database not reachable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "configuration database not answering\n".into(),
        ),
    }
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let body = match shared.get() {
        Some(ctx) => {
            ctx.metrics.observe(
                &ctx.view(),
                ctx.queue.len(),
                ctx.db.stats().watch_reconnects.load(Ordering::Relaxed),
            );
            ctx.metrics.encode()
        }
        None => "# EOF\n".into(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
