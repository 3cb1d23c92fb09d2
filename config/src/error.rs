//! The one error type of the configuration library.

use crate::entity::ValidationError;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to the configuration database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings (environment or code) are not usable.
    #[error("invalid connection settings: {0}")]
    InvalidSettings(String),
    /// etcd could not be reached at all.
    #[error(
        "cannot reach the configuration database at {endpoint}: {}",
        describe(source)
    )]
    ConnectFailed {
        /// The endpoint that was tried, e.g. `http://127.0.0.1:2379`.
        endpoint: String,
        /// What the client reported (its essence is in this error's message, so it is
        /// not also exposed as the `source()`, which would print it twice).
        source: etcd_client::Error,
    },
    /// A request to etcd failed (network, server, authentication).
    #[error(
        "configuration database request `{operation}` to {endpoint} failed: {}",
        describe(source)
    )]
    RequestFailed {
        /// The operation, e.g. `get`, `txn`, `watch`.
        operation: &'static str,
        /// The endpoint the request went to.
        endpoint: String,
        /// What the client reported (summarised in the message).
        source: etcd_client::Error,
    },
    /// A path does not follow the configuration path rules.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An entity failed validation.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// `create` of a key that already exists.
    #[error("{path} already exists")]
    AlreadyExists {
        /// The configuration path.
        path: String,
    },
    /// `update` or `delete` of a key that does not exist.
    #[error("{path} does not exist")]
    NotFound {
        /// The configuration path.
        path: String,
    },
    /// The transaction conflicted with a concurrent writer and must be re-run.
    #[error("transaction conflicted with a concurrent change")]
    Conflict,
    /// The transaction still conflicted after the bounded number of attempts.
    #[error("transaction gave up after {attempts} conflicting attempts")]
    RetriesExhausted {
        /// How many times the body ran.
        attempts: u32,
    },
    /// A single transaction would write more keys than etcd accepts in one request.
    #[error("transaction writes {operations} keys, more than the {limit} etcd accepts at once")]
    TooManyOperations {
        /// Operations the transaction asked for.
        operations: usize,
        /// The limit.
        limit: usize,
    },
    /// A write was made conditional on leadership and this process is no longer leader.
    #[error("no longer the leader of {election}")]
    NotLeader {
        /// The election's name.
        election: String,
    },
    /// A lease expired or could not be kept alive.
    #[error("lease {id:x} was lost: {reason}")]
    LeaseLost {
        /// The lease ID.
        id: i64,
        /// Why.
        reason: String,
    },
    /// The operation was cancelled by the caller (shutdown).
    #[error("cancelled")]
    Cancelled,
    /// An error raised by the caller's own code inside a transaction body.
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// True when the error is a transient problem with etcd (worth retrying later),
    /// as opposed to something the caller or its input got wrong.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::ConnectFailed { .. }
                | Error::RequestFailed { .. }
                | Error::Conflict
                | Error::RetriesExhausted { .. }
        )
    }
}

/// The useful part of a client error: etcd's own message for a gRPC status, the
/// innermost cause (e.g. "Connection refused (os error 111)") for a transport error,
/// instead of the client's debug dump.
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let msg = status.message().trim();
            if msg.is_empty() {
                format!("{:?}", status.code())
            } else {
                msg.to_string()
            }
        }
        etcd_client::Error::TransportError(t) => {
            let mut innermost: &dyn std::error::Error = t;
            while let Some(next) = innermost.source() {
                innermost = next;
            }
            innermost.to_string()
        }
        other => other.to_string(),
    }
}
