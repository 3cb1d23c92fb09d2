//! SDP processing controller: processing blocks in, workflow deployments out.
//!
//! Watches feed an in-memory [`view`]; every change queues the blocks it concerns;
//! a pool of workers [`decide`]s per block from the view (pure) and [`perform`]s the
//! decision in one small etcd transaction conditional on leadership. Only the elected
//! [`leader`] acts; every replica keeps its view warm. See [`run`].

pub mod context;
pub mod decide;
pub mod error;
pub mod failure;
mod http;
pub mod leader;
pub mod metrics;
pub mod ownership;
pub mod perform;
pub mod queue;
pub mod reconcile;
pub mod registry;
pub mod registry_source;
pub mod settings;
pub mod template;
pub mod validate;
pub mod view;
mod watchers;

use std::sync::{Arc, OnceLock};

use sdp_config::Config;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use settings::Settings;

use crate::context::Ctx;
use crate::registry_source::Source;
use crate::template::DeployContext;
use crate::view::{View, Wake};

/// How long background tasks get to stop after the workers have.
const TASK_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Run the controller until `shutdown` fires, then finish in-flight work (within the
/// grace period) and resign leadership.
///
/// # Errors
/// Only what makes running impossible: an unusable `SDP_WORKFLOWS_URL` or
/// `SDP_HTTP_ADDR`, or connection settings etcd can never accept. An unreachable etcd
/// is waited for; bad input is reported in the blocks' states.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let source = Source::from_url(&settings.workflows_url)?;
    let shared: http::Shared = Arc::new(OnceLock::new());
    let mut tasks = JoinSet::new();
    if !settings.http_addr.is_empty() {
        let listener = TcpListener::bind(&settings.http_addr)
            .await
            .map_err(|source| Error::HttpBindFailed {
                addr: settings.http_addr.clone(),
                source,
            })?;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
        }
        tasks.spawn(http::serve(listener, Arc::clone(&shared), shutdown.clone()));
    }
    let db = match Config::connect_retrying(&settings.connection, &shutdown).await {
        Ok(db) => db,
        Err(sdp_config::Error::Cancelled) => return Ok(()),
        Err(e) => return Err(Error::ConnectFailed(e)),
    };
    tracing::info!(
        endpoint = db.endpoint(),
        "connected to the configuration database"
    );
    let deploy = DeployContext {
        config_host: settings.config_host_for_workflows().to_string(),
        namespace: settings.helm_namespace.clone(),
    };
    let ctx = Ctx::new(db, View::new(source.is_some()), deploy);
    let _ = shared.set(Arc::clone(&ctx));
    watchers::start(&ctx, &shutdown, &mut tasks)?;
    if let Some(source) = source {
        let ctx = Arc::clone(&ctx);
        tasks.spawn(registry_source::follow(
            source,
            settings.workflows_refresh(),
            shutdown.clone(),
            move |file| {
                ctx.update(|view| {
                    view.registry.set_file(file);
                    Wake::NotStarted
                });
            },
        ));
    }
    let mut workers = JoinSet::new();
    for _ in 0..settings.workers.max(1) {
        workers.spawn(reconcile::worker(Arc::clone(&ctx)));
    }

    let leadership = leader::lead(
        Arc::clone(&ctx),
        settings.leader_ttl(),
        settings.resync_interval(),
        shutdown,
    )
    .await;

    tracing::info!("shutting down: finishing in-flight reconciles");
    ctx.queue.close();
    let drained = tokio::time::timeout(settings.shutdown_grace(), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "in-flight reconciles did not finish within the grace period; abandoning them"
        );
        workers.abort_all();
    }
    if let Some(leadership) = leadership {
        ctx.set_leader(None);
        match leadership.resign().await {
            Ok(()) => tracing::info!("resigned leadership"),
            Err(e) => {
                tracing::warn!(error = %e, "could not resign leadership; it expires with its lease")
            }
        }
    }
    if tokio::time::timeout(TASK_STOP_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
    }
    tracing::info!("stopped");
    Ok(())
}
