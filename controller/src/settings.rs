//! The controller's settings: command-line flags, each also read from its `SDP_…`
//! environment variable (the names the Helm chart sets).

use std::time::Duration;

use clap::builder::BoolishValueParser;
use sdp_config::ConnectionSettings;

/// Everything the controller can be told.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "sdp-controller",
    version,
    about = "SDP processing controller: processing blocks in, workflow deployments out"
)]
pub struct Settings {
    /// How to reach the configuration database.
    #[command(flatten)]
    pub connection: ConnectionSettings,

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
    #[arg(long, env = "SDP_WORKFLOWS_REFRESH", default_value_t = 300)]
    pub workflows_refresh_secs: u64,

    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoint; empty disables it.
    #[arg(long, env = "SDP_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,

    /// Log filter (an `EnvFilter` directive such as `info` or `sdp_controller=debug`).
    #[arg(long, env = "SDP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// JSON log lines instead of human-readable ones.
    #[arg(long, env = "SDP_LOG_JSON", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub log_json: bool,

    /// Reconciles run concurrently (across different blocks).
    #[arg(long, env = "SDP_CONTROLLER_WORKERS", default_value_t = 32)]
    pub workers: usize,

    /// Seconds between full reconciles of every block and deployment.
    #[arg(long, env = "SDP_RESYNC_INTERVAL", default_value_t = 300)]
    pub resync_secs: u64,

    /// Time-to-live of the leadership lease, in seconds: a new leader takes over at
    /// most this long after the old one dies.
    #[arg(long, env = "SDP_LEADER_TTL", default_value_t = 10)]
    pub leader_ttl_secs: u64,

    /// Seconds in-flight reconciles get to finish at shutdown.
    #[arg(long, env = "SDP_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl Settings {
    /// Defaults (as documented on each flag) with the given connection, without
    /// reading the environment: for tests and embedding.
    pub fn new(connection: ConnectionSettings) -> Self {
        Settings {
            connection,
            helm_namespace: "sdp".into(),
            workflow_config_host: None,
            workflows_url: String::new(),
            workflows_refresh_secs: 300,
            http_addr: "0.0.0.0:8080".into(),
            log_level: "info".into(),
            log_json: false,
            workers: 32,
            resync_secs: 300,
            leader_ttl_secs: 10,
            shutdown_grace_secs: 10,
        }
    }

    /// The host workflows are told to reach the configuration database at.
    pub fn config_host_for_workflows(&self) -> &str {
        self.workflow_config_host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(&self.connection.host)
    }

    /// Registry reload interval (at least one second).
    pub fn workflows_refresh(&self) -> Duration {
        Duration::from_secs(self.workflows_refresh_secs.max(1))
    }

    /// Full reconcile interval (at least one second).
    pub fn resync_interval(&self) -> Duration {
        Duration::from_secs(self.resync_secs.max(1))
    }

    /// Leadership lease TTL (at least two seconds, etcd's minimum that makes sense).
    pub fn leader_ttl(&self) -> Duration {
        Duration::from_secs(self.leader_ttl_secs.max(2))
    }

    /// Shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
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
        assert!(s.log_json);
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
        assert_eq!(s.workers, 32);
        assert_eq!(s.config_host_for_workflows(), "127.0.0.1");
    }
}
