//! The console's error type.

/// Result with the console's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stops the console (everything else is logged, retried or shown on the page).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration database could not be reached or the settings are unusable.
    #[error("cannot connect to the configuration database")]
    ConnectFailed(#[source] sdp_config::Error),
    /// The console could not listen.
    #[error("cannot serve HTTP on {addr:?}")]
    HttpBindFailed {
        /// The address from `SDP_HTTP_ADDR`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The console's task panicked.
    #[error("the console stopped unexpectedly")]
    TaskFailed(#[source] tokio::task::JoinError),
}
