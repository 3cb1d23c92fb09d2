//! Settings: command-line flags, each also read from its `SDP_*` environment variable. A
//! flag is its variable without `SDP_`, in lower case with dashes; durations are seconds.

use std::path::PathBuf;
use std::time::Duration;

use sdp_runtime::settings::{DaemonSettings, seconds};

/// Where releases go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HelmTarget {
    /// `helm upgrade --install` into the cluster of the current kubeconfig.
    Cluster,
    /// `helm template` into `<render dir>/<namespace>/<release>.yaml` (no cluster needed).
    Render,
}

/// Everything the deployer can be told.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "sdp-deployer",
    version,
    about = "SDP Helm deployer: /deploy entries in, Helm releases out"
)]
pub struct Settings {
    /// Connection, logging, leadership and shutdown.
    #[command(flatten)]
    pub daemon: DaemonSettings,

    /// Kubernetes namespace every release is installed in.
    #[arg(long, env = "SDP_HELM_NAMESPACE", default_value = "sdp")]
    pub helm_namespace: String,

    /// The helm binary.
    #[arg(long, env = "SDP_HELM", default_value = "helm")]
    pub helm: PathBuf,

    /// Seconds one helm call may take before it is stopped (SIGTERM, then SIGKILL).
    #[arg(long, env = "SDP_HELM_TIMEOUT", default_value = "300", value_parser = seconds)]
    pub helm_timeout: Duration,

    /// Seconds between SIGTERM and SIGKILL when a helm call is stopped.
    #[arg(long, env = "SDP_HELM_KILL_GRACE", default_value = "5", value_parser = seconds)]
    pub helm_kill_grace: Duration,

    /// Prefix of every release name.
    #[arg(long, env = "SDP_HELM_PREFIX", default_value = "")]
    pub helm_prefix: String,

    /// Helm operations running at once.
    #[arg(long, env = "SDP_HELM_CONCURRENCY", default_value_t = 4)]
    pub helm_concurrency: usize,

    /// `cluster` (install releases) or `render` (write manifests with `helm template`).
    #[arg(long, env = "SDP_HELM_TARGET", value_enum, default_value_t = HelmTarget::Cluster)]
    pub helm_target: HelmTarget,

    /// Directory of rendered manifests (render target).
    #[arg(long, env = "SDP_RENDER_DIR", default_value = "out")]
    pub render_dir: PathBuf,

    /// Directory of the bundled charts: a chart name without `/` is a directory here.
    #[arg(long, env = "SDP_CHARTS_DIR", default_value = "/charts")]
    pub charts_dir: PathBuf,

    /// Helm repositories, comma-separated `name=url`, added at start and refreshed on
    /// the resync interval; charts `name/chart` come from them.
    #[arg(long, env = "SDP_HELM_REPOS", default_value = "")]
    pub helm_repos: String,

    /// Repository names mapped to local directories, comma-separated `name=dir`.
    /// `stable` maps to the charts directory unless given here.
    #[arg(long, env = "SDP_HELM_REPO_DIRS", default_value = "")]
    pub helm_repo_dirs: String,

    /// Allowed OCI chart prefixes, comma-separated (`oci://registry/path`); none by default.
    #[arg(long, env = "SDP_HELM_OCI_ALLOW", default_value = "")]
    pub helm_oci_allow: String,

    /// Charts whose releases are replaced (uninstall + install) instead of upgraded when
    /// their deployment changes, comma-separated chart names. The `workflow` chart
    /// renders a bare Pod, whose spec Kubernetes does not let `helm upgrade` change.
    #[arg(long, env = "SDP_HELM_REPLACE_CHARTS", default_value = "workflow")]
    pub helm_replace_charts: String,

    /// Seconds between resyncs (list owned releases, remove orphans, reinstall missing ones).
    #[arg(long, env = "SDP_HELM_RESYNC", default_value = "300", value_parser = seconds)]
    pub helm_resync: Duration,

    /// Helm attempts per deployment spec before it is FAILED.
    #[arg(long, env = "SDP_HELM_RETRIES", default_value_t = 6)]
    pub helm_retries: u32,

    /// Seconds before the first retry; doubles on each failure (with jitter).
    #[arg(long, env = "SDP_HELM_BACKOFF", default_value = "2", value_parser = seconds)]
    pub helm_backoff: Duration,

    /// Longest delay between retries, in seconds.
    #[arg(long, env = "SDP_HELM_BACKOFF_MAX", default_value = "300", value_parser = seconds)]
    pub helm_backoff_max: Duration,

    /// Private directory (mode 0700) of the values files handed to helm; each process
    /// works in a subdirectory of its own and removes those of processes that are gone.
    /// Unset: `sdp-deployer` in the temporary directory (`TMPDIR`).
    #[arg(long, env = "SDP_HELM_VALUES_DIR")]
    pub helm_values_dir: Option<PathBuf>,

    /// Largest values document of a helm deployment, in bytes (as JSON); larger ones are
    /// FAILED without calling helm. helm keeps each release in a Secret, which
    /// Kubernetes limits to 1 MiB.
    #[arg(long, env = "SDP_MAX_VALUES_BYTES", default_value_t = 512 * 1024)]
    pub max_values_bytes: usize,

    /// Kinds `kubernetes-direct` deployments may create, comma-separated `Kind` (core
    /// group) or `group/Kind`; any other kind is refused before it reaches the cluster.
    #[arg(long, env = "SDP_DIRECT_KINDS", default_value = crate::direct::DEFAULT_KINDS)]
    pub direct_kinds: String,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "SDP_HTTP_ADDR", default_value = "0.0.0.0:8081")]
    pub http_addr: String,

    /// Kubeconfig for watching the pods of the releases (cluster target); unset: the
    /// in-cluster service account. A `:`-separated list is merged as kubectl does.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// A crash-looping pod with this many restarts makes its workload FAILED.
    #[arg(long, env = "SDP_WORKLOAD_MAX_RESTARTS", default_value_t = 5)]
    pub workload_max_restarts: u32,

    /// A pod unschedulable for this many seconds makes its workload FAILED.
    #[arg(long, env = "SDP_WORKLOAD_UNSCHEDULABLE", default_value = "300", value_parser = seconds)]
    pub workload_unschedulable: Duration,
}

/// Parse a comma-separated `name=value` list (empty items ignored).
///
/// # Errors
/// An item without `=` or with an empty side, naming the setting.
pub fn parse_pairs(setting: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("{setting}: {item:?} is not name=value")),
        })
        .collect()
}

/// Parse a comma-separated list (empty items ignored).
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Settings {
    /// Per-call helm timeout (at least 100 ms).
    pub fn helm_timeout(&self) -> Duration {
        self.helm_timeout.max(Duration::from_millis(100))
    }

    /// Resync interval (at least 100 ms).
    pub fn resync(&self) -> Duration {
        self.helm_resync.max(Duration::from_millis(100))
    }

    /// First retry delay (at least 1 ms).
    pub fn backoff(&self) -> Duration {
        self.helm_backoff.max(Duration::from_millis(1))
    }

    /// Retry delay cap (at least the first delay).
    pub fn backoff_max(&self) -> Duration {
        self.helm_backoff_max.max(self.backoff())
    }

    /// Helm operations at once (at least one).
    pub fn concurrency(&self) -> usize {
        self.helm_concurrency.max(1)
    }

    /// A pending release older than this, not known to be ours in flight, is stuck.
    pub fn stale_after(&self) -> Duration {
        self.helm_timeout() + self.helm_kill_grace + Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::try_parse_from(["sdp-deployer"]).unwrap();
        assert_eq!(s.helm_namespace, "sdp");
        assert_eq!(s.helm_timeout(), Duration::from_secs(300));
        assert_eq!(s.concurrency(), 4);
        assert_eq!(s.helm_target, HelmTarget::Cluster);
        assert_eq!(s.charts_dir, PathBuf::from("/charts"));
        assert_eq!(s.http_addr, "0.0.0.0:8081");
        assert!(!s.daemon.log_json);
        assert_eq!(s.backoff(), Duration::from_secs(2));
        assert_eq!(s.daemon.shutdown_grace, Duration::from_secs(25));
        assert_eq!(s.max_values_bytes, 524_288);
        assert_eq!(s.helm_values_dir, None);
    }

    #[test]
    fn pairs_and_lists_parse_and_report_bad_items() {
        assert_eq!(
            parse_pairs("SDP_HELM_REPOS", " a=http://x , ,b=http://y").unwrap(),
            vec![
                ("a".into(), "http://x".into()),
                ("b".into(), "http://y".into())
            ]
        );
        let err = parse_pairs("SDP_HELM_REPOS", "a").unwrap_err();
        assert!(err.contains("SDP_HELM_REPOS"), "{err}");
        assert_eq!(parse_list("a, b,,"), vec!["a", "b"]);
    }
}
