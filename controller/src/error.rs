//! The controller's error type.

/// Result with the controller's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stops the controller (everything else is logged, reported in a block's state,
/// or retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration database could not be reached or the settings are unusable.
    #[error("cannot connect to the configuration database")]
    ConnectFailed(#[source] sdp_config::Error),
    /// The leader election refused this replica for a reason retrying cannot fix.
    #[error("cannot take part in the leader election")]
    ElectionFailed(#[source] sdp_config::Error),
    /// A watch could not be set up.
    #[error("cannot watch {prefix}")]
    WatchStartFailed {
        /// The watched prefix.
        prefix: &'static str,
        /// Why.
        #[source]
        source: sdp_config::Error,
    },
    /// The health and metrics endpoint could not listen.
    #[error("cannot serve HTTP on {addr}")]
    HttpBindFailed {
        /// The address from `SDP_HTTP_ADDR`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The workflow registry URL is not a path, `file://` or `http(s)://` URL, or the
    /// HTTP client cannot be built.
    #[error("invalid SDP_WORKFLOWS_URL {url:?}: {reason}")]
    InvalidWorkflowsUrl {
        /// The URL as given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// A setting has a value the controller cannot use.
    #[error("invalid {name}: {reason}")]
    InvalidSetting {
        /// The setting's environment variable.
        name: &'static str,
        /// Why it is refused.
        reason: String,
    },
}
