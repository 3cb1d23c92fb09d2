//! The one error type of the workflow SDK.

use std::time::Duration;

use sdp_config::entity::ValidationError;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while running a workflow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The processing block ID given to the workflow is not a valid ID.
    #[error("invalid processing block ID: {0}")]
    InvalidPbId(#[source] ValidationError),
    /// The configuration database did not answer within the connect time limit.
    #[error("cannot connect to the configuration database (gave up after {waited:?}): {source}")]
    ConnectFailed {
        /// How long connecting was tried.
        waited: Duration,
        /// The last failure.
        #[source]
        source: sdp_config::Error,
    },
    /// A request to the configuration database failed.
    #[error("configuration database: {0}")]
    Database(#[from] sdp_config::Error),
    /// The block to claim does not exist.
    #[error("processing block {pb_id} does not exist")]
    BlockNotFound {
        /// The block's ID.
        pb_id: String,
    },
    /// The block to claim exists but its value is not a valid processing block.
    #[error("processing block {pb_id} is invalid: {source}")]
    InvalidBlock {
        /// The block's ID.
        pb_id: String,
        /// What is wrong with it.
        #[source]
        source: ValidationError,
    },
    /// Another process (or an earlier claim) owns the block.
    #[error("processing block {pb_id} is already claimed by {owner}")]
    AlreadyClaimed {
        /// The block's ID.
        pb_id: String,
        /// The current owner value, on one line.
        owner: String,
    },
    /// This workflow no longer owns the block, so it must not change anything of it.
    #[error("no longer the owner of processing block {pb_id}: {reason}")]
    NotOwner {
        /// The block's ID.
        pb_id: String,
        /// Why (owner key gone, claimed by someone else, lease expired).
        reason: String,
    },
    /// The block was deleted while the workflow ran.
    #[error("processing block {pb_id} was deleted")]
    BlockDeleted {
        /// The block's ID.
        pb_id: String,
    },
    /// The block's state holds a value that cannot be changed without losing data.
    #[error(
        "the state of processing block {pb_id} is not a state object that can be updated: {source}"
    )]
    StateUnreadable {
        /// The block's ID.
        pb_id: String,
        /// What is wrong with the stored state.
        #[source]
        source: ValidationError,
    },
    /// A deployment given to the SDK is not valid.
    #[error("invalid deployment: {0}")]
    InvalidDeployment(#[source] ValidationError),
    /// The deployment is not one this workflow may manage (see [`crate::Workflow::deploy_id`]).
    #[error("deployment {deploy_id} is not a deployment of processing block {pb_id}: {reason}")]
    ForeignDeployment {
        /// The deployment's ID.
        deploy_id: String,
        /// The block's ID.
        pb_id: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// `request_deployment` of a deployment that already exists.
    #[error("deployment {deploy_id} already exists")]
    DeploymentExists {
        /// The deployment's ID.
        deploy_id: String,
    },
    /// `update_deployment` of a deployment that does not exist.
    #[error("deployment {deploy_id} does not exist")]
    DeploymentNotFound {
        /// The deployment's ID.
        deploy_id: String,
    },
}

impl Error {
    /// True when the error means the workflow's claim has ended (block deleted, or
    /// ownership lost): the normal way for a workflow to stop, not a failure.
    pub fn ends_workflow(&self) -> bool {
        matches!(self, Error::BlockDeleted { .. } | Error::NotOwner { .. })
    }
}
