//! What the overview shows of one processing block and of one deployment.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A processing block: its entry, state and owner in a few fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlockSummary {
    /// The block ID.
    pub id: String,
    /// `type:id:version`; `None` when the stored block names no readable workflow.
    pub workflow: Option<String>,
    /// `status` of `/pb/<id>/state` (or the older workflows' `state`); `None` while the
    /// state key is absent, i.e. the block is still starting.
    pub status: Option<String>,
    /// Why the block failed (`reason`).
    pub reason: Option<String>,
    /// When the controller first wrote the block's state (RFC 3339), the start of its age.
    pub since: Option<String>,
    /// The owner key, present while the owning workflow process is alive (it is attached
    /// to the owner's lease); `None` when no process owns the block.
    pub owner: Option<OwnerSummary>,
    /// IDs of the deployments that belong to the block, sorted.
    pub deployments: Vec<String>,
}

impl BlockSummary {
    /// [`BlockSummary::since`] as a time, when it is valid RFC 3339.
    pub fn since_time(&self) -> Option<DateTime<Utc>> {
        let since = self.since.as_deref()?;
        DateTime::parse_from_rfc3339(since)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Where the owner of a block runs (its command line is not kept).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OwnerSummary {
    /// Host name the owner reported.
    pub hostname: Option<String>,
    /// Process ID the owner reported.
    pub pid: Option<u64>,
}

impl std::fmt::Display for OwnerSummary {
    /// `host:pid`, or whichever of the two is known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.hostname, self.pid) {
            (Some(h), Some(p)) => write!(f, "{h}:{p}"),
            (Some(h), None) => f.write_str(h),
            (None, Some(p)) => write!(f, "pid {p}"),
            (None, None) => f.write_str("?"),
        }
    }
}

/// A deployment: its entry and the deployer's state in a few fields (never its values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeploymentSummary {
    /// The deployment ID.
    pub id: String,
    /// The block it belongs to (`<pb_id>-…` or `proc-<pb_id>-…`, the longest existing
    /// block ID); `None` for a deployment of no block.
    pub block: Option<String>,
    /// `helm`, `process-direct`, `kubernetes-direct` (`type` of the entry).
    pub kind: Option<String>,
    /// The chart of a helm deployment.
    pub chart: Option<String>,
    /// Release status the deployer reported (`PENDING` … `DEPLOYED`, `FAILED`); `None`
    /// before its first report.
    pub status: Option<String>,
    /// The deployer's one line about the release.
    pub message: Option<String>,
    /// What became of the release in Kubernetes: `PENDING`, `RUNNING`, `FINISHED`,
    /// `FAILED`, `CANCELLED`, `NONE`; `None` when not reported.
    pub workload_phase: Option<String>,
    /// The cause when the workload is not well.
    pub workload_message: Option<String>,
}
