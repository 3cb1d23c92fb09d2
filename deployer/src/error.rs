//! The deployer's error type: what can stop `run` (bad settings, unusable address);
//! everything an entry causes goes to its state key instead.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the deployer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is unusable.
    #[error("invalid setting: {0}")]
    InvalidSettings(String),
    /// The health/metrics address cannot be bound.
    #[error("cannot serve HTTP on {addr}")]
    HttpBindFailed {
        /// The address from `SDP_HTTP_ADDR`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration database refused something retrying cannot fix.
    #[error(transparent)]
    Config(#[from] sdp_config::Error),
}
