//! SDP console: a live, read-only web page of every processing block and deployment.
//!
//! One [`sdp_config::overview`] follower (one etcd watch) feeds a [`publish`]er that
//! turns each new snapshot into a delta, formatted once and pushed to every open page
//! as a server-sent event ([`events`]); the page ([`assets`]) keeps the table current
//! from those. The console never writes to etcd, and shows only the overview's summary
//! fields (never an entry's values, which may hold credentials). See [`run`].

mod api;
mod assets;
mod delta;
mod error;
mod events;
mod hub;
mod metrics;
mod publish;
mod readiness;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use sdp_config::{Config, overview};
use sdp_runtime::health::{Component, Health};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use settings::{DEFAULT_PORT, Settings};

use crate::hub::Hub;

/// A started console.
#[derive(Debug)]
pub struct Console {
    addr: SocketAddr,
    task: JoinHandle<Result<()>>,
}

impl Console {
    /// Where the page is served (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Wait until the console has stopped (its shutdown token fired).
    ///
    /// # Errors
    /// As [`run`].
    pub async fn wait(self) -> Result<()> {
        self.task.await.map_err(Error::TaskFailed)?
    }
}

/// Serve the page on `settings.http_addr`, then connect to etcd (waiting for it) and
/// follow it; returns once listening. Until the first listing the page shows an empty
/// picture and `/readyz` says why it is not ready.
///
/// # Errors
/// The address is empty or cannot be bound.
pub async fn start(settings: Settings, shutdown: CancellationToken) -> Result<Console> {
    let bind_failed = |source| Error::HttpBindFailed {
        addr: settings.http_addr.clone(),
        source,
    };
    if settings.http_addr.trim().is_empty() {
        return Err(bind_failed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the console needs an address to serve its page on",
        )));
    }
    let hub = Hub::new(settings.history);
    let mut registry = Registry::with_prefix("sdp_console");
    hub.metrics.register(&mut registry);
    let routes = api::router(Arc::clone(&hub), shutdown.clone());
    let health = Health::serve(&settings.http_addr, registry, routes, shutdown.clone())
        .await
        .map_err(bind_failed)?;
    let addr = health.addr().ok_or_else(|| {
        bind_failed(std::io::Error::other(
            "the health server reports no address",
        ))
    })?;
    tracing::info!(url = %format!("http://{addr}/"), "serving the console");
    let task = tokio::spawn(follow(settings, hub, health, shutdown));
    Ok(Console { addr, task })
}

/// Run the console until `shutdown` fires.
///
/// # Errors
/// Only what makes running impossible: an unusable `SDP_HTTP_ADDR`, or connection
/// settings etcd can never accept. An unreachable etcd is waited for.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    start(settings, shutdown).await?.wait().await
}

async fn follow(
    settings: Settings,
    hub: Arc<Hub>,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    let db = match Config::connect_retrying(&settings.daemon.connection, &shutdown).await {
        Ok(db) => db,
        Err(sdp_config::Error::Cancelled) => return Ok(()),
        Err(e) => return Err(Error::ConnectFailed(e)),
    };
    tracing::info!(
        endpoint = db.endpoint(),
        "connected to the configuration database"
    );
    let follower = overview::follow(&db, shutdown.clone());
    let component = readiness::Console {
        hub: Arc::clone(&hub),
        follower: follower.clone(),
    };
    health.attach(db, Arc::new(component) as Arc<dyn Component>);
    publish::run(hub, follower, shutdown).await;
    Ok(())
}
