//! Typed entities stored in the configuration database, with validation that says
//! exactly what is wrong, and unknown fields kept for read-modify-write.

mod deployment;
mod fields;
mod owner;
mod processing_block;
mod state;
mod workflow;

pub use deployment::{Deployment, DeploymentKind, DeploymentState, HelmArgs, validate_deploy_id};
pub use fields::ValidationError;
pub use owner::Owner;
pub use processing_block::{
    Dependency, PbShape, ProcessingBlock, ProcessingBlockState, WorkflowRef, WorkflowType,
    validate_pb_id,
};
pub use state::{DeploymentStatus, PbStatus};
pub use workflow::{DeployTemplate, WorkflowDefinition, WorkflowRegistry, WorkflowsFile};
