//! How a workflow connects and claims: lease TTL, connect time limit, target namespace.

use std::time::Duration;

use sdp_config::DEFAULT_TTL;

/// Namespace the deployer installs into when `SDP_HELM_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "sdp";

/// How long [`crate::Workflow::start`] keeps trying to reach the configuration database.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a workflow besides the database connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// TTL of the lease the owner key is bound to (whole seconds, at least 2). The owner
    /// key vanishes this long after the workflow stops refreshing it (e.g. dies).
    pub lease_ttl: Duration,
    /// How long to keep retrying the first connection before giving up.
    pub connect_timeout: Duration,
    /// Kubernetes namespace the deployer installs this workflow's deployments into
    /// (`SDP_HELM_NAMESPACE`).
    pub namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease_ttl: DEFAULT_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            namespace: DEFAULT_NAMESPACE.to_string(),
        }
    }
}

impl Options {
    /// Defaults, with the namespace from `SDP_HELM_NAMESPACE` when it is set and not empty.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Options::from_env`], from any variable lookup.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut options = Options::default();
        if let Some(ns) = get("SDP_HELM_NAMESPACE")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
        {
            options.namespace = ns;
        }
        options
    }

    /// Replace the lease TTL (tests use short ones).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Replace the connect time limit.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Replace the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_defaults_to_sdp_and_follows_the_environment() {
        assert_eq!(Options::from_lookup(|_| None).namespace, "sdp");
        assert_eq!(
            Options::from_lookup(|_| Some(String::new())).namespace,
            "sdp"
        );
        let o =
            Options::from_lookup(|k| (k == "SDP_HELM_NAMESPACE").then(|| "lab-sdp".to_string()));
        assert_eq!(o.namespace, "lab-sdp");
        assert_eq!(o.lease_ttl, Duration::from_secs(10));
    }
}
