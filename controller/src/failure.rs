//! Kinds of failure, a small fixed set used as a metrics label.

/// Why a block was failed (or a reconcile went wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FailureKind {
    /// The block's value is not JSON.
    InvalidJson,
    /// Missing or mistyped fields, or not an object.
    InvalidBlock,
    /// The block ID breaks the ID rules.
    InvalidId,
    /// The ID in the value names another block than the key.
    IdMismatch,
    /// The block or the rendered deployment is too large.
    TooLarge,
    /// Unknown workflow type, workflow or version.
    UnknownWorkflow,
    /// The workflow's deployment template does not render.
    TemplateError,
    /// A dependency FAILED or was CANCELLED.
    DependencyFailed,
    /// The block depends on itself, directly or through others.
    DependencyCycle,
    /// The workflow deployment failed (Helm gave up, or its workload failed).
    DeploymentFailed,
    /// The workflow's owner key stayed gone: the workflow exited without finishing.
    WorkflowExited,
    /// A workflow deployment of the block's name exists that differs from the one the
    /// controller would create (written by someone else).
    DeploymentConflict,
    /// A request to etcd failed (retried).
    EtcdError,
}

impl FailureKind {
    /// Every kind, for metrics.
    pub(crate) const ALL: [FailureKind; 13] = [
        FailureKind::InvalidJson,
        FailureKind::InvalidBlock,
        FailureKind::InvalidId,
        FailureKind::IdMismatch,
        FailureKind::TooLarge,
        FailureKind::UnknownWorkflow,
        FailureKind::TemplateError,
        FailureKind::DependencyFailed,
        FailureKind::DependencyCycle,
        FailureKind::DeploymentFailed,
        FailureKind::WorkflowExited,
        FailureKind::DeploymentConflict,
        FailureKind::EtcdError,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureKind::InvalidJson => "invalid_json",
            FailureKind::InvalidBlock => "invalid_block",
            FailureKind::InvalidId => "invalid_id",
            FailureKind::IdMismatch => "id_mismatch",
            FailureKind::TooLarge => "too_large",
            FailureKind::UnknownWorkflow => "unknown_workflow",
            FailureKind::TemplateError => "template_error",
            FailureKind::DependencyFailed => "dependency_failed",
            FailureKind::DependencyCycle => "dependency_cycle",
            FailureKind::DeploymentFailed => "deployment_failed",
            FailureKind::WorkflowExited => "workflow_exited",
            FailureKind::DeploymentConflict => "deployment_conflict",
            FailureKind::EtcdError => "etcd_error",
        }
    }
}
