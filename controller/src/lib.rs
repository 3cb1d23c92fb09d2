//! SDP processing controller: processing blocks in, workflow deployments out.
//!
//! Watches feed an in-memory [`view`]; every change queues the blocks it concerns;
//! a pool of workers [`decide`]s per block from the view (pure) and [`perform`]s the
//! decision in one small etcd transaction conditional on leadership. Only the elected
//! [`leader`] acts; every replica keeps its view warm. See [`run`].

mod decide;
mod deleted;
mod dependents;
mod deploy_report;
mod error;
mod failure;
#[cfg(test)]
mod fixtures;
mod fold;
mod leader;
mod metrics;
mod ownership;
mod perform;
mod reconcile;
mod registry;
mod registry_source;
mod settings;
mod shared;
mod state_class;
mod template;
mod validate;
mod view;
mod watchers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use prometheus_client::registry::Registry;
use sdp_config::Config;
use sdp_runtime::election::{resign, run_while_elected};
use sdp_runtime::health::{Component, Health};
use sdp_runtime::queue::{LaneSpec, Queue, QueueMetrics, Retry};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use settings::Settings;

use crate::metrics::Metrics;
use crate::registry_source::Source;
use crate::shared::Shared;
use crate::template::DeployContext;
use crate::view::{View, Wake};

/// How long background tasks get to stop after the workers have.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Retries of a reconcile that failed on etcd: 50 ms doubling to 30 s.
const ETCD_RETRY: Retry = Retry {
    initial: Duration::from_millis(50),
    max: Duration::from_secs(30),
};

/// Says once, at start, when the controller itself needs credentials or a CA for etcd
/// but has no Secret to hand workflows: they would start and fail to connect.
fn warn_if_workflows_lack_credentials(settings: &Settings, deploy: &DeployContext) {
    let connection = &settings.daemon.connection;
    if deploy.config_secret.is_none()
        && (connection.username.is_some() || connection.cert.is_some())
    {
        tracing::warn!(
            "the controller authenticates to etcd or verifies it with a CA, but \
             SDP_WORKFLOW_CONFIG_SECRET is not set: workflows get no credentials or CA \
             (they are never copied into their deployments)"
        );
    }
}

/// Run the controller until `shutdown` fires, then finish in-flight work (within the
/// grace period) and resign leadership.
///
/// # Errors
/// Only what makes running impossible: an unusable `SDP_WORKFLOWS_URL` or
/// `SDP_HTTP_ADDR`, or connection settings etcd can never accept. An unreachable etcd
/// is waited for; bad input is reported in the blocks' states.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    settings.check()?;
    let source = Source::from_url(&settings.workflows_url)?;
    let mut registry = Registry::with_prefix("sdp_controller");
    let metrics = Metrics::new(&mut registry);
    let queue_metrics = QueueMetrics::new();
    queue_metrics.register(&mut registry);
    let health = Health::serve(
        &settings.http_addr,
        registry,
        Router::new(),
        shutdown.clone(),
    )
    .await
    .map_err(|source| Error::HttpBindFailed {
        addr: settings.http_addr.clone(),
        source,
    })?;
    let db = match Config::connect_retrying(&settings.daemon.connection, &shutdown).await {
        Ok(db) => db,
        Err(sdp_config::Error::Cancelled) => return Ok(()),
        Err(e) => return Err(Error::ConnectFailed(e)),
    };
    tracing::info!(
        endpoint = db.endpoint(),
        "connected to the configuration database"
    );
    let deploy = DeployContext::from_settings(&settings);
    warn_if_workflows_lack_credentials(&settings, &deploy);
    let lanes = [LaneSpec {
        name: "reconcile",
        concurrency: settings.controller_workers.max(1),
    }];
    let queue = Queue::new(&lanes, ETCD_RETRY, queue_metrics);
    let shared = Shared::new(
        db.clone(),
        View::new(source.is_some()),
        deploy,
        metrics,
        queue.clone(),
    );
    health.attach(db.clone(), Arc::clone(&shared) as Arc<dyn Component>);
    let mut tasks = JoinSet::new();
    watchers::start(&shared, &shutdown, &mut tasks)?;
    if let Some(source) = source {
        let shared = Arc::clone(&shared);
        tasks.spawn(registry_source::follow(
            source,
            settings.workflows_refresh(),
            shutdown.clone(),
            move |file| {
                shared.update(|view| {
                    view.registry.set_file(file);
                    Wake::NotStarted
                });
            },
        ));
    }
    let mut workers = {
        let shared = Arc::clone(&shared);
        let queue = queue.clone();
        tokio::spawn(async move {
            queue
                .work(0, move |key: String| {
                    let shared = Arc::clone(&shared);
                    async move { reconcile::reconcile(&shared, &key).await }
                })
                .await;
        })
    };

    let resync = settings.resync_interval();
    let leadership = run_while_elected(
        &db,
        leader::ELECTION,
        &sdp_runtime::identity(),
        settings.daemon.leader_ttl(),
        &shutdown,
        |term| leader::lead(Arc::clone(&shared), term, resync, shutdown.clone()),
    )
    .await;

    tracing::info!("shutting down: finishing in-flight reconciles");
    queue.close();
    if tokio::time::timeout(settings.daemon.shutdown_grace, &mut workers)
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight reconciles did not finish within the grace period; abandoning them"
        );
        workers.abort();
    }
    shared.set_leader(None);
    let leadership = leadership.map_err(Error::ElectionFailed)?;
    if let Some(leadership) = leadership {
        resign(leadership).await;
    }
    if tokio::time::timeout(TASK_STOP_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
    }
    Ok(())
}
