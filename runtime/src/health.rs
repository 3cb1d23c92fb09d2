//! `/healthz`, `/readyz` and `/metrics` for every daemon, on one small HTTP server.
//!
//! Readiness is asked, never remembered: on each `/readyz` the server checks that the
//! configuration database answers (within [`PROBE_TIMEOUT`]) and then asks the
//! component ([`Component::readiness`]). A daemon whose etcd is frozen is therefore
//! not ready within a few seconds, and ready again as soon as etcd answers.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use sdp_config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long `/readyz` waits for etcd before saying it does not answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a daemon tells the health server.
#[async_trait::async_trait]
pub trait Component: Send + Sync + 'static {
    /// `Ok(detail)` when the component can do its work (e.g. "leader", "standby"),
    /// `Err(why)` otherwise. Called on every `/readyz`, after etcd answered.
    async fn readiness(&self) -> Result<String, String>;

    /// Bring gauges up to date just before `/metrics` is encoded.
    fn refresh_metrics(&self) {}
}

struct Attached {
    db: Config,
    component: Arc<dyn Component>,
}

struct Shared {
    registry: Registry,
    attached: OnceLock<Attached>,
}

/// The running server's handle: attach the component once it is connected.
#[derive(Clone)]
pub struct Health {
    shared: Arc<Shared>,
    addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("addr", &self.addr).finish()
    }
}

impl Health {
    /// Bind `addr` and serve until `shutdown` fires; an empty `addr` serves nothing.
    /// Until [`Health::attach`] is called, `/readyz` says "not connected". `extra` adds
    /// routes of the daemon's own.
    ///
    /// # Errors
    /// The address cannot be parsed or bound.
    pub async fn serve(
        addr: &str,
        registry: Registry,
        extra: Router,
        shutdown: CancellationToken,
    ) -> std::io::Result<Health> {
        let shared = Arc::new(Shared {
            registry,
            attached: OnceLock::new(),
        });
        if addr.is_empty() {
            return Ok(Health { shared, addr: None });
        }
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(&shared))
            .merge(extra);
        tokio::spawn(async move {
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(addr = %bound, "serving /healthz, /readyz and /metrics");
        Ok(Health {
            shared,
            addr: Some(bound),
        })
    }

    /// The bound address (useful with port 0); `None` when not serving.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// From now on, readiness probes `db` and asks `component`. Only the first call counts.
    pub fn attach(&self, db: Config, component: Arc<dyn Component>) {
        let _ = self.shared.attached.set(Attached { db, component });
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    let unavailable = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    };
    let Some(attached) = shared.attached.get() else {
        return unavailable("not connected to the configuration database yet".into());
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attached.db.current_revision()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return unavailable(format!("configuration database: {e}")),
        Err(_) => {
            return unavailable(format!(
                "configuration database did not answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
    }
    match attached.component.readiness().await {
        Ok(detail) => (StatusCode::OK, format!("ready ({detail})\n")),
        Err(why) => unavailable(why),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if let Some(attached) = shared.attached.get() {
        attached.component.refresh_metrics();
    }
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &shared.registry) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
