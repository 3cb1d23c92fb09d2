//! SDP Helm deployer: `/deploy/<id>` entries in, Helm releases out.
//!
//! Only the elected leader (`helm-deployer` election) runs helm; every state write is
//! conditional on that leadership and on the entry still asking for what was done.
//! Where things are decided, done and reported: `decide` (every rule, pure), `reconcile`
//! (plan → effect → outcome rounds), `effects` (helm calls and state writes), `store`
//! (conditional state writes), `term` (one leadership term: watches, work queue, resync),
//! `workload` (what became of each release in Kubernetes: its pods, summarised into the
//! state).

mod chart;
mod decide;
mod direct;
mod effects;
mod error;
#[cfg(test)]
mod fixtures;
mod guard;
mod helm;
mod memory;
mod metrics;
pub mod naming;
mod reconcile;
mod resync;
mod settings;
mod setup;
mod spec;
mod store;
mod term;
mod values;
mod view;
mod workload;

use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use sdp_config::Config;
use sdp_runtime::election::{resign, run_while_elected};
use sdp_runtime::health::{Component, Health};
use sdp_runtime::queue::QueueMetrics;
use tokio_util::sync::CancellationToken;

pub use direct::DEFAULT_KINDS as DEFAULT_DIRECT_KINDS;
pub use error::{Error, Result};
pub use settings::{HelmTarget, Settings};

use crate::metrics::Metrics;

/// Name of the leader election among deployer replicas.
const ELECTION: &str = "helm-deployer";

/// Run the deployer until `shutdown` fires: serve health and metrics, connect (retrying),
/// campaign for leadership, and lead (watch, reconcile, resync) while elected.
///
/// # Errors
/// Unusable settings or HTTP address; a configuration-database error retrying cannot fix.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let mut registry = Registry::with_prefix("sdp_deployer");
    let metrics = Arc::new(Metrics::new(&mut registry));
    let queue_metrics = QueueMetrics::new();
    queue_metrics.register(&mut registry);
    let setup = Arc::new(setup::setup(&settings, metrics, queue_metrics)?);
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
    tracing::info!(
        target = setup.helm.target(),
        namespace = %setup.spec.namespace,
        concurrency = setup.concurrency,
        "sdp-deployer starting"
    );
    let db = match Config::connect_retrying(&settings.daemon.connection, &shutdown).await {
        Ok(db) => db,
        Err(sdp_config::Error::Cancelled) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    health.attach(db.clone(), Arc::clone(&setup) as Arc<dyn Component>);
    let leadership = run_while_elected(
        &db,
        ELECTION,
        &sdp_runtime::identity(),
        settings.daemon.leader_ttl(),
        &shutdown,
        |term| {
            let (db, setup, shutdown) = (db.clone(), Arc::clone(&setup), shutdown.clone());
            async move {
                tracing::info!("leading: this replica runs helm");
                term::lead(&db, term, &setup, &shutdown).await;
            }
        },
    )
    .await?;
    if let Some(leadership) = leadership {
        resign(leadership).await;
    }
    Ok(())
}
