//! Typed entities stored in the configuration database, with validation that says
//! exactly what is wrong, and unknown fields kept for read-modify-write.

pub mod belongs;
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
/// The ID in `<dir><id><suffix>`, when `path` has that shape and the ID is one path
/// segment (the inverse of the entities' `path` functions).
fn id_in<'p>(path: &'p str, dir: &str, suffix: &str) -> Option<&'p str> {
    path.strip_prefix(dir)?
        .strip_suffix(suffix)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

pub use workflow::{DeployTemplate, WorkflowDefinition, WorkflowRegistry, WorkflowsFile};
