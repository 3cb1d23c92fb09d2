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

    /// Configuration database port passed to workflows (`env.SDP_CONFIG_PORT`, left out
    /// when 2379); by default the controller's own `SDP_CONFIG_PORT`. The controller's
    /// `SDP_CONFIG_PROTOCOL` and `SDP_CONFIG_PREFIX` are passed on the same way.
    #[arg(long, env = "SDP_WORKFLOW_CONFIG_PORT")]
    pub workflow_config_port: Option<u16>,

    /// Name of a Secret in the workflows' namespace holding their etcd credentials and
    /// CA (keys `username`, `password`, `ca.crt`, each optional), passed to workflows as
    /// `config_secret`. Only the name goes into the configuration database, never the
    /// controller's own `SDP_CONFIG_USERNAME`/`PASSWORD`/`CERT`. Empty: none.
    #[arg(long, env = "SDP_WORKFLOW_CONFIG_SECRET", value_parser = secret_name)]
    pub workflow_config_secret: Option<String>,

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
            workflow_config_port: None,
            workflow_config_secret: None,
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

    /// Checks what clap checks when the settings come from the command line, for
    /// settings built in code.
    ///
    /// # Errors
    /// An invalid `SDP_WORKFLOW_CONFIG_SECRET`.
    pub fn check(&self) -> crate::Result<()> {
        if let Some(name) = &self.workflow_config_secret {
            secret_name(name).map_err(|reason| crate::Error::InvalidSetting {
                name: "SDP_WORKFLOW_CONFIG_SECRET",
                reason,
            })?;
        }
        Ok(())
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

/// A Kubernetes object name (RFC 1123 subdomain: at most 253 lower-case letters, digits,
/// `-` and `.`, alphanumeric at both ends), or empty for none. Checked here so that a
/// mistyped name stops the controller at start instead of failing every workflow pod.
fn secret_name(text: &str) -> Result<String, String> {
    let valid = text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && text.split('.').all(|label| {
            let b = label.as_bytes();
            b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
        });
    if text.is_empty() || valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a Kubernetes Secret name (lower-case letters, digits, '-' and '.', \
             alphanumeric at both ends, at most 253 characters)"
        ))
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
        assert_eq!(s.workflow_config_port, None);
        assert_eq!(s.workflow_config_secret, None);
    }

    #[test]
    fn the_workflow_secret_must_be_a_kubernetes_name() {
        let parse = |name: &str| {
            Settings::try_parse_from([
                "sdp-controller".to_string(),
                format!("--workflow-config-secret={name}"),
            ])
            .map(|s| s.workflow_config_secret)
        };
        assert_eq!(
            parse("sdp-etcd-client").unwrap().as_deref(),
            Some("sdp-etcd-client")
        );
        assert_eq!(parse("a.b-1").unwrap().as_deref(), Some("a.b-1"));
        assert_eq!(parse("").unwrap().as_deref(), Some(""));
        for bad in [
            "Sdp",
            "sdp_etcd",
            "-sdp",
            "sdp-",
            "a..b",
            "a b",
            &"a".repeat(254),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a Kubernetes Secret name"), "{bad}: {err}");
        }
    }
}
