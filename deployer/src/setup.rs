//! The settings, checked and turned into what the deployer works with across leadership
//! terms: helm (cluster or render target), how entries are read, retry policy, metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sdp_runtime::queue::QueueMetrics;

use crate::chart::ChartSources;
use crate::decide::Policy;
use crate::direct::{Direct, Kinds, Marks};
use crate::error::{Error, Result};
use crate::helm::Helm;
use crate::helm::cli::HelmCli;
use crate::helm::process::Limits;
use crate::helm::render::RenderTarget;
use crate::helm::values_dir::ValuesDir;
use crate::metrics::Metrics;
use crate::settings::{self, HelmTarget, Settings};
use crate::spec::SpecContext;
use crate::workload::{Limits as WorkloadLimits, Source};

/// What a replica is doing, for readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Role {
    /// Campaigning: ready (it can take over).
    Standby = 0,
    /// Leading, still listing entries, states and releases: not ready yet.
    Starting = 1,
    /// Leading and working.
    Leading = 2,
}

pub(crate) struct Setup {
    pub(crate) helm: Arc<dyn Helm>,
    pub(crate) spec: Arc<SpecContext>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) queue_metrics: QueueMetrics,
    pub(crate) policy: Policy,
    pub(crate) concurrency: usize,
    pub(crate) resync: Duration,
    /// Helm repositories to add and refresh.
    pub(crate) repos: Vec<(String, String)>,
    /// Time running helm calls get to finish at shutdown.
    pub(crate) shutdown_grace: Duration,
    /// Time running helm calls get to finish after leadership is lost (one lease TTL).
    pub(crate) lost_grace: Duration,
    /// Where workloads come from (pods of the cluster, or nothing on the render target).
    pub(crate) workloads: Source,
    /// When a workload counts as failed.
    pub(crate) workload_limits: WorkloadLimits,
    /// `kubernetes-direct` objects.
    pub(crate) direct: Arc<Direct>,
    /// The database-identity guard.
    pub(crate) guard: Arc<crate::guard::Guard>,
    role: AtomicU8,
}

impl Setup {
    pub(crate) fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
        self.metrics.is_leader.set(i64::from(role != Role::Standby));
    }

    pub(crate) fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            1 => Role::Starting,
            2 => Role::Leading,
            _ => Role::Standby,
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Check the settings and build the parts.
///
/// # Errors
/// [`Error::InvalidSettings`] naming the setting.
pub(crate) fn setup(
    settings: &Settings,
    metrics: Arc<Metrics>,
    queue_metrics: QueueMetrics,
) -> Result<Setup> {
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
        config_prefix: settings.daemon.connection.prefix.clone(),
        namespace: settings.helm_namespace.clone(),
        charts,
        replace_charts: settings::parse_list(&settings.helm_replace_charts),
        direct_kinds: Kinds::parse(&settings.direct_kinds).map_err(bad)?,
        max_values_bytes: settings.max_values_bytes,
    });
    let limits = Limits {
        timeout: settings.helm_timeout(),
        kill_grace: settings.helm_kill_grace,
    };
    let values_base = settings
        .helm_values_dir
        .clone()
        .unwrap_or_else(crate::helm::values_dir::default_base);
    let values_dir =
        ValuesDir::create(&values_base).map_err(|e| bad(format!("SDP_HELM_VALUES_DIR: {e}")))?;
    let cli = HelmCli::new(
        settings.helm.clone(),
        limits,
        crate::naming::Owner::new(&settings.daemon.connection.prefix),
        Arc::new(values_dir),
    );
    // A list of files is merged by the client's own inference.
    let kubeconfig = settings
        .kubeconfig
        .clone()
        .filter(|p| !p.as_os_str().is_empty() && !p.to_string_lossy().contains(':'));
    let workloads = match settings.helm_target {
        HelmTarget::Cluster => Source::Cluster {
            kubeconfig: kubeconfig.clone(),
        },
        HelmTarget::Render => Source::Render {
            dir: settings.render_dir.display().to_string(),
        },
    };
    let direct_marks = Marks {
        helm_prefix: settings.helm_prefix.clone(),
        config_prefix: settings.daemon.connection.prefix.clone(),
    };
    let direct = Arc::new(match settings.helm_target {
        HelmTarget::Cluster => Direct::cluster(kubeconfig, direct_marks),
        HelmTarget::Render => Direct::render(settings.render_dir.clone(), direct_marks),
    });
    let helm: Arc<dyn Helm> = match settings.helm_target {
        HelmTarget::Cluster => Arc::new(cli),
        HelmTarget::Render => {
            std::fs::create_dir_all(&settings.render_dir).map_err(|e| {
                bad(format!(
                    "SDP_RENDER_DIR {}: {e}",
                    settings.render_dir.display()
                ))
            })?;
            Arc::new(RenderTarget::new(cli, settings.render_dir.clone()))
        }
    };
    Ok(Setup {
        helm,
        spec,
        metrics,
        queue_metrics,
        policy: Policy {
            max_attempts: settings.helm_retries.max(1),
            backoff: settings.backoff(),
            backoff_max: settings.backoff_max(),
            stale_after: settings.stale_after(),
            dead_term_wait: 2 * settings.daemon.leader_ttl()
                + settings.helm_kill_grace
                + Duration::from_secs(1),
            busy_poll: Duration::from_secs(5).min(settings.helm_timeout()),
        },
        concurrency: settings.concurrency(),
        resync: settings.resync(),
        repos,
        shutdown_grace: settings.daemon.shutdown_grace,
        lost_grace: settings.daemon.leader_ttl(),
        workloads,
        workload_limits: WorkloadLimits {
            max_restarts: i64::from(settings.workload_max_restarts.max(1)),
            unschedulable_secs: i64::try_from(settings.workload_unschedulable.as_secs())
                .unwrap_or(i64::MAX),
        },
        direct,
        guard: Arc::default(),
        role: AtomicU8::new(Role::Standby as u8),
    })
}

#[async_trait::async_trait]
impl sdp_runtime::health::Component for Setup {
    async fn readiness(&self) -> std::result::Result<String, String> {
        match self.role() {
            Role::Standby => Ok("standby".into()),
            // Held releases do not stop the other deployments: ready, and saying why.
            Role::Leading => Ok(match self.guard.readiness_detail() {
                Some(detail) => format!("leader; {detail}"),
                None => "leader".into(),
            }),
            Role::Starting => Err("leading, still listing entries and releases".into()),
        }
    }
}
