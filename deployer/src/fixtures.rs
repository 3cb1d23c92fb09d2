//! Builders of the values the deployer's unit tests start from: watch entries, desired
//! specs, reported states and observed releases. One place, so that every test reads the
//! same inputs the same way.

use std::time::Duration;

use sdp_config::entity::{DeploymentState, DeploymentStatus};
pub(crate) use sdp_testing::fixtures::entry;
use serde_json::json;

use crate::chart::ResolvedChart;
use crate::decide::{OwnedRelease, Policy};
use crate::helm::ReleaseStatus;
use crate::spec::{Desired, HelmSpec};

/// A retry policy with small, distinct figures (3 attempts, 2 s doubling to 300 s).
pub(crate) const POLICY: Policy = Policy {
    max_attempts: 3,
    backoff: Duration::from_secs(2),
    backoff_max: Duration::from_secs(300),
    stale_after: Duration::from_secs(60),
    dead_term_wait: Duration::from_secs(25),
    busy_poll: Duration::from_secs(5),
};

/// The desired `dask` release `d` in namespace `sdp`, with this digest.
pub(crate) fn helm_spec(digest: &str, replace_on_change: bool) -> Desired {
    Desired::Helm(Box::new(HelmSpec {
        deploy_id: "d".into(),
        release: "d".into(),
        namespace: "sdp".into(),
        chart: ResolvedChart {
            reference: "/charts/dask".into(),
            name: "dask".into(),
        },
        values: json!({}),
        digest: digest.into(),
        replace_on_change,
    }))
}

/// A reported state of release `d` (revision 1) after `attempts` attempts.
pub(crate) fn state(status: DeploymentStatus, digest: &str, attempts: i64) -> DeploymentState {
    DeploymentState {
        status: Some(status.as_str().into()),
        release: Some("d".into()),
        namespace: Some("sdp".into()),
        revision: Some(1),
        digest: Some(digest.into()),
        attempts: Some(attempts),
        message: Some("m".into()),
        updated: None,
        extra: Default::default(),
    }
}

/// A release this deployer owns at revision 1, as a listing shows it (no history read);
/// tests change the fields they are about with `..owned_release(status)`.
pub(crate) fn owned_release(status: ReleaseStatus) -> OwnedRelease {
    OwnedRelease {
        status,
        revision: 1,
        updated: None,
        digest: None,
        last_good: None,
        detailed: false,
    }
}
