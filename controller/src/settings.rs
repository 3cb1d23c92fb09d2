//! The controller's settings: command-line flags, each also read from its `SDP_…`
//! environment variable (the names the Helm chart sets). A flag is its variable without
//! `SDP_`, in lower case with dashes; durations are seconds.

use std::time::Duration;

use sdp_config::ConnectionSettings;
use sdp_runtime::settings::{DaemonSettings, seconds};

/// Everything the controller can be told.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "sdp-controller",
    version,
    about = "SDP processing controller: processing blocks in, workflow deployments out"
)]
pub struct Settings {
    /// Connection, logging, leadership and shutdown.
    #[command(flatten)]
    pub daemon: DaemonSettings,

    /// Kubernetes namespace passed to workflows (`env.SDP_HELM_NAMESPACE`).
    #[arg(long, env = "SDP_HELM_NAMESPACE", default_value = "sdp")]
    pub helm_namespace: String,

    /// Configuration database host passed to workflows (`env.SDP_CONFIG_HOST`); by
    /// default the controller's own `SDP_CONFIG_HOST`.
    #[arg(long, env = "SDP_WORKFLOW_CONFIG_HOST")]
    pub workflow_config_host: Option<String>,

    /// Where the workflow registry file is: a path, `file://…` or `http(s)://…`.
    /// Empty: only `/workflow/…` keys define workflows.
    #[arg(long, env = "SDP_WORKFLOWS_URL", default_value = "")]
    pub workflows_url: String,

    /// Seconds between registry reloads (a local file is also reloaded as soon as it
    /// changes).
    #[arg(long, alias = "workflows-refresh-secs", env = "SDP_WORKFLOWS_REFRESH",
          default_value = "300", value_parser = seconds)]
    pub workflows_refresh: Duration,

    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoint; empty disables it.
    #[arg(long, env = "SDP_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,

    /// Reconciles run concurrently (across different blocks).
    #[arg(
        long,
        alias = "workers",
        env = "SDP_CONTROLLER_WORKERS",
        default_value_t = 32
    )]
    pub controller_workers: usize,

    /// Seconds between full reconciles of every block and deployment.
    #[arg(long, alias = "resync-secs", env = "SDP_RESYNC_INTERVAL", default_value = "300",
          value_parser = seconds)]
    pub resync_interval: Duration,

    /// Seconds a block's owner key (`/pb/<id>/owner`, held by its workflow) may be gone
    /// before the block, neither FINISHED nor FAILED, is set FAILED ("workflow exited
    /// without finishing"): long enough for a restarted workflow pod to claim it again.
    #[arg(long, env = "SDP_OWNER_GRACE", default_value = "120", value_parser = seconds)]
    pub owner_grace: Duration,
}

impl Settings {
    /// Defaults (as documented on each flag) with the given connection, without
    /// reading the environment: for tests and embedding.
    pub fn new(connection: ConnectionSettings) -> Self {
        Settings {
            daemon: DaemonSettings::new(connection),
            helm_namespace: "sdp".into(),
            workflow_config_host: None,
            workflows_url: String::new(),
            workflows_refresh: Duration::from_secs(300),
            http_addr: "0.0.0.0:8080".into(),
            controller_workers: 32,
            resync_interval: Duration::from_secs(300),
            owner_grace: Duration::from_secs(120),
        }
    }

    /// The host workflows are told to reach the configuration database at.
    pub fn config_host_for_workflows(&self) -> &str {
        self.workflow_config_host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(&self.daemon.connection.host)
    }

    /// Registry reload interval (at least one second).
    pub fn workflows_refresh(&self) -> Duration {
        self.workflows_refresh.max(Duration::from_secs(1))
    }

    /// Full reconcile interval (at least one second).
    pub fn resync_interval(&self) -> Duration {
        self.resync_interval.max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_parse_and_workflows_get_the_controllers_host_by_default() {
        let s = Settings::try_parse_from([
            "sdp-controller",
            "--config-host",
            "etcd",
            "--helm-namespace",
            "ns",
            "--log-json",
            "true",
            "--workflows-refresh-secs",
            "7",
        ])
        .unwrap();
        assert_eq!(s.config_host_for_workflows(), "etcd");
        assert_eq!(s.helm_namespace, "ns");
        assert!(s.daemon.log_json);
        assert_eq!(s.workflows_refresh(), Duration::from_secs(7));
        let s = Settings {
            workflow_config_host: Some("etcd.sdp".into()),
            ..s
        };
        assert_eq!(s.config_host_for_workflows(), "etcd.sdp");
    }

    #[test]
    fn new_has_the_documented_defaults() {
        let s = Settings::new(ConnectionSettings::default());
        assert_eq!(s.http_addr, "0.0.0.0:8080");
        assert_eq!(s.helm_namespace, "sdp");
        assert_eq!(s.controller_workers, 32);
        assert_eq!(s.owner_grace, Duration::from_secs(120));
        assert_eq!(s.config_host_for_workflows(), "127.0.0.1");
    }
}
