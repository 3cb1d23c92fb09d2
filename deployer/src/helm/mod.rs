//! The helm CLI behind one trait, so that the reconciler does not care whether releases
//! go into a cluster ([`cli::HelmCli`]) or into rendered files ([`render::RenderTarget`]).

pub(crate) mod cli;
pub(crate) mod process;
pub(crate) mod render;
pub(crate) mod values_dir;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What helm prints when a release is locked by an unfinished operation.
pub(crate) const BUSY_MESSAGE: &str = "another operation (install/upgrade/rollback) is in progress";

/// A release's status as helm names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReleaseStatus {
    /// `deployed`.
    Deployed,
    /// `failed`.
    Failed,
    /// `pending-install`: an install started and did not finish.
    PendingInstall,
    /// `pending-upgrade`.
    PendingUpgrade,
    /// `pending-rollback`.
    PendingRollback,
    /// `superseded` (older revisions).
    Superseded,
    /// `uninstalling`.
    Uninstalling,
    /// `uninstalled` (kept history).
    Uninstalled,
    /// Anything else.
    Other(String),
}

impl ReleaseStatus {
    /// Parse helm's name.
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "deployed" => Self::Deployed,
            "failed" => Self::Failed,
            "pending-install" => Self::PendingInstall,
            "pending-upgrade" => Self::PendingUpgrade,
            "pending-rollback" => Self::PendingRollback,
            "superseded" => Self::Superseded,
            "uninstalling" => Self::Uninstalling,
            "uninstalled" => Self::Uninstalled,
            other => Self::Other(other.to_string()),
        }
    }

    /// helm's name.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Deployed => "deployed",
            Self::Failed => "failed",
            Self::PendingInstall => "pending-install",
            Self::PendingUpgrade => "pending-upgrade",
            Self::PendingRollback => "pending-rollback",
            Self::Superseded => "superseded",
            Self::Uninstalling => "uninstalling",
            Self::Uninstalled => "uninstalled",
            Self::Other(s) => s,
        }
    }

    /// One of the `pending-*` states that lock a release.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(
            self,
            Self::PendingInstall | Self::PendingUpgrade | Self::PendingRollback
        )
    }
}

/// One release as `helm list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReleaseInfo {
    /// Release name.
    pub name: String,
    /// Status of the latest revision.
    pub status: ReleaseStatus,
    /// Latest revision.
    pub revision: i64,
}

/// One revision as `helm history` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Revision {
    /// Revision number.
    pub revision: i64,
    /// Its status.
    pub status: ReleaseStatus,
    /// When it was last updated.
    pub updated: Option<DateTime<Utc>>,
    /// Its description (ours carries the spec digest).
    pub description: String,
}

/// Which releases to list.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ListQuery<'a> {
    /// Only the release with exactly this name.
    pub name: Option<&'a str>,
    /// Only releases carrying this deployer's ownership labels (its prefix).
    pub owned_only: bool,
    /// With `owned_only`: only releases with this database label.
    pub database: crate::naming::DbFilter<'a>,
}

/// An install or upgrade.
#[derive(Clone, Debug)]
pub(crate) struct InstallRequest<'a> {
    /// Release name.
    pub release: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Chart reference (resolved from an allowed source).
    pub chart: &'a str,
    /// Values document (goes into a private file).
    pub values: &'a Value,
    /// Deployment ID (for the ownership label and rendered files).
    pub deploy_id: &'a str,
    /// Spec digest (carried in the release description).
    pub digest: &'a str,
    /// Identity of the configuration database (the database label).
    pub database: &'a str,
}

/// A helm call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HelmError {
    /// helm could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// helm exited non-zero; `message` is its trimmed error output.
    #[error("{message}")]
    Failed {
        /// `upgrade`, `uninstall`, …
        operation: &'static str,
        /// helm's own words.
        message: String,
    },
    /// helm passed the timeout and was stopped.
    #[error("helm {operation} did not finish within {} s and was stopped", after.as_secs_f64())]
    TimedOut {
        /// `upgrade`, `uninstall`, …
        operation: &'static str,
        after: Duration,
    },
    /// The deployer stopped it (shutdown or lost leadership).
    #[error("helm {operation} was stopped because the deployer is stopping")]
    Cancelled {
        /// `upgrade`, `uninstall`, …
        operation: &'static str,
    },
    /// helm's output could not be understood.
    #[error("unexpected output from helm {operation}: {detail}")]
    BadOutput {
        /// `list`, `history`, …
        operation: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A local file (values, rendered manifest) could not be written or read.
    #[error("{0}")]
    Local(String),
}

impl HelmError {
    /// The release is locked by an unfinished operation (`pending-*`).
    pub(crate) fn is_busy(&self) -> bool {
        matches!(self, HelmError::Failed { message, .. } if message.contains(BUSY_MESSAGE))
    }

    /// The call was stopped by the deployer itself.
    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(self, HelmError::Cancelled { .. })
    }
}

/// Everything the deployer asks of helm. `cancel` stops a running call (SIGTERM, then
/// SIGKILL).
#[async_trait]
pub(crate) trait Helm: Send + Sync {
    /// `cluster` or `render`.
    fn target(&self) -> &'static str;

    /// `helm upgrade --install` with ownership labels and the digest in the description;
    /// returns the new revision.
    async fn upgrade_install(
        &self,
        req: &InstallRequest<'_>,
        cancel: &CancellationToken,
    ) -> Result<i64, HelmError>;

    /// `helm uninstall --ignore-not-found`.
    async fn uninstall(
        &self,
        namespace: &str,
        release: &str,
        cancel: &CancellationToken,
    ) -> Result<(), HelmError>;

    /// `helm list` (all statuses), optionally one name and/or only owned releases.
    async fn list(
        &self,
        namespace: &str,
        query: ListQuery<'_>,
        cancel: &CancellationToken,
    ) -> Result<Vec<ReleaseInfo>, HelmError>;

    /// `helm history`, oldest first.
    async fn history(
        &self,
        namespace: &str,
        release: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<Revision>, HelmError>;

    /// `helm rollback <release> <revision>`.
    async fn rollback(
        &self,
        namespace: &str,
        release: &str,
        revision: i64,
        cancel: &CancellationToken,
    ) -> Result<(), HelmError>;

    /// `helm repo add` (first call) / `helm repo update` for configured repositories.
    async fn refresh_repos(
        &self,
        repos: &[(String, String)],
        cancel: &CancellationToken,
    ) -> Result<(), HelmError>;
}
