//! Status values of processing blocks and deployments.

/// Status of a processing block, as the later tools write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PbStatus {
    /// Deployment requested.
    Starting,
    /// Waiting for dependencies.
    Waiting,
    /// The workflow runs.
    Running,
    /// Done.
    Finished,
    /// Failed (see `reason`).
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl PbStatus {
    /// Every status, for metrics.
    pub const ALL: [PbStatus; 6] = [
        PbStatus::Starting,
        PbStatus::Waiting,
        PbStatus::Running,
        PbStatus::Finished,
        PbStatus::Failed,
        PbStatus::Cancelled,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PbStatus::Starting => "STARTING",
            PbStatus::Waiting => "WAITING",
            PbStatus::Running => "RUNNING",
            PbStatus::Finished => "FINISHED",
            PbStatus::Failed => "FAILED",
            PbStatus::Cancelled => "CANCELLED",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        PbStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Status of a deployment as the Helm deployer reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeploymentStatus {
    /// Accepted, waiting for a worker.
    Pending,
    /// First install running.
    Installing,
    /// Upgrade running.
    Upgrading,
    /// Installed and up to date.
    Deployed,
    /// Gave up (see `message`).
    Failed,
    /// Being removed.
    Uninstalling,
}

impl DeploymentStatus {
    /// Every status, for metrics.
    pub const ALL: [DeploymentStatus; 6] = [
        DeploymentStatus::Pending,
        DeploymentStatus::Installing,
        DeploymentStatus::Upgrading,
        DeploymentStatus::Deployed,
        DeploymentStatus::Failed,
        DeploymentStatus::Uninstalling,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "PENDING",
            DeploymentStatus::Installing => "INSTALLING",
            DeploymentStatus::Upgrading => "UPGRADING",
            DeploymentStatus::Deployed => "DEPLOYED",
            DeploymentStatus::Failed => "FAILED",
            DeploymentStatus::Uninstalling => "UNINSTALLING",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        DeploymentStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}
