//! SDP Helm deployer: `/deploy/<id>` entries in, Helm releases out.
//!
//! - [`settings`]: flags and `SDP_*` variables.
//! - [`spec`], [`chart`], [`values`], [`naming`]: what an entry asks for, checked
//!   (allowed chart sources, `--set`-typed values, release names, digests).
//! - [`decide`]: the pure decision of the next step for a release.
//! - [`reconcile`]: one release's decide-and-act loop (its helm steps and failure
//!   handling in `perform`); [`store`]: conditional state writes.
//! - [`dispatch`]: watches, per-release queue, worker pool, retries, resyncs.
//! - [`helm`]: the helm CLI behind one trait (cluster or render target).
//! - [`http`], [`metrics`]: `/healthz`, `/readyz`, `/metrics`.
//!
//! Only the elected leader (`helm-deployer` election) runs helm; every state write is
//! conditional on that leadership and on the entry still asking for what was done.

pub mod chart;
pub mod decide;
pub mod dispatch;
pub mod error;
pub mod helm;
pub mod http;
pub mod metrics;
pub mod naming;
mod perform;
pub mod reconcile;
pub mod settings;
pub mod spec;
pub mod store;
pub mod values;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sdp_config::Config;
use tokio_util::sync::CancellationToken;

pub use error::{Error, Result};
pub use settings::{Settings, Target};

use crate::chart::ChartSources;
use crate::decide::Policy;
use crate::dispatch::Base;
use crate::helm::Helm;
use crate::helm::cli::HelmCli;
use crate::helm::process::Limits;
use crate::helm::render::RenderTarget;
use crate::metrics::Metrics;
use crate::spec::SpecContext;

/// Name of the leader election among deployer replicas.
pub const ELECTION: &str = "helm-deployer";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Everything derived from the settings, checked.
///
/// # Errors
/// [`Error::InvalidSettings`] naming the setting.
pub fn base(settings: &Settings) -> Result<Base> {
    let bad = |s: String| Error::InvalidSettings(s);
    if !is_dns_label(&settings.helm_namespace) {
        return Err(bad(format!(
            "SDP_HELM_NAMESPACE {:?} is not a valid namespace name",
            settings.helm_namespace
        )));
    }
    let repos = settings::parse_pairs("SDP_HELM_REPOS", &settings.helm_repos).map_err(bad)?;
    let repo_dirs =
        settings::parse_pairs("SDP_HELM_REPO_DIRS", &settings.helm_repo_dirs).map_err(bad)?;
    let oci = settings::parse_list(&settings.helm_oci_allow);
    if let Some(p) = oci
        .iter()
        .find(|p| !p.starts_with("oci://") || p.len() <= "oci://".len())
    {
        return Err(bad(format!(
            "SDP_HELM_OCI_ALLOW: {p:?} is not an oci:// prefix"
        )));
    }
    if !settings.charts_dir.is_dir() {
        tracing::warn!(dir = %settings.charts_dir.display(), "SDP_CHARTS_DIR is not a directory: bundled charts will not be found");
    }
    let charts = ChartSources::new(settings.charts_dir.clone(), repo_dirs, repos.clone(), oci);
    let spec = Arc::new(SpecContext {
        prefix: settings.helm_prefix.clone(),
        namespace: settings.helm_namespace.clone(),
        charts,
        replace_charts: settings::parse_list(&settings.helm_replace_charts),
    });
    let limits = Limits {
        timeout: settings.helm_timeout(),
        kill_grace: settings.helm_kill_grace(),
    };
    let cli = HelmCli::new(settings.helm.clone(), limits);
    let helm: Arc<dyn Helm> = match settings.helm_target {
        Target::Cluster => Arc::new(cli),
        Target::Render => {
            std::fs::create_dir_all(&settings.render_dir).map_err(|e| {
                bad(format!(
                    "SDP_RENDER_DIR {}: {e}",
                    settings.render_dir.display()
                ))
            })?;
            Arc::new(RenderTarget::new(cli, settings.render_dir.clone()))
        }
    };
    Ok(Base {
        helm,
        spec,
        metrics: Arc::new(Metrics::new()),
        policy: Policy {
            max_attempts: settings.helm_retries.max(1),
            stale_after: settings.stale_after(),
            busy_poll: Duration::from_secs(5).min(settings.helm_timeout()),
        },
        backoff: settings.backoff(),
        backoff_max: settings.backoff_max(),
        concurrency: settings.concurrency(),
        resync: settings.resync(),
        repos,
        shutdown_grace: settings.shutdown_grace(),
    })
}

fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{host}:{}", std::process::id())
}

/// Run the deployer until `shutdown` fires: serve health and metrics, connect (retrying),
/// campaign for leadership, and lead (watch, reconcile, resync) while elected.
///
/// # Errors
/// Unusable settings or HTTP address; a configuration-database error retrying cannot fix.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    let base = base(&settings)?;
    let metrics = base.metrics.clone();
    let http_stop = CancellationToken::new();
    let _http_guard = http_stop.clone().drop_guard();
    http::serve(settings.http_addr, metrics.clone(), http_stop).await?;
    tracing::info!(
        target = base.helm.target(),
        namespace = %base.spec.namespace,
        concurrency = base.concurrency,
        "sdp-deployer starting"
    );
    let db = match Config::connect_retrying(&settings.connection, &shutdown).await {
        Ok(db) => db,
        Err(sdp_config::Error::Cancelled) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    metrics.connected.store(true, Ordering::Relaxed);
    let election = db.election(ELECTION);
    let me = identity();
    let ttl = Duration::from_secs(settings.leader_ttl.max(2));
    loop {
        metrics.set_ready(true); // a standby replica is ready
        let leadership = match election.campaign(&me, ttl, &shutdown).await {
            Ok(l) => l,
            Err(sdp_config::Error::Cancelled) => break,
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed; retrying");
                continue;
            }
        };
        tracing::info!(identity = %me, "leading: this replica runs helm");
        metrics.set_ready(false);
        metrics.is_leader.set(1);
        dispatch::lead(&db, &leadership, &base, &shutdown).await;
        metrics.is_leader.set(0);
        if shutdown.is_cancelled() {
            if let Err(e) = leadership.resign().await {
                tracing::warn!(error = %e, "cannot resign leadership; it ends with its lease");
            }
            break;
        }
        tracing::warn!("no longer leading; campaigning again");
    }
    tracing::info!("sdp-deployer stopped");
    Ok(())
}
