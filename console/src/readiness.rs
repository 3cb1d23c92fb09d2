//! What the console tells the health server: ready once the read model has listed
//! everything and while its follower runs (the health server checks etcd first).

use std::sync::Arc;

use sdp_config::overview::Follower;
use sdp_runtime::health::Component;

use crate::hub::Hub;

/// The console as a [`Component`].
pub(crate) struct Console {
    pub hub: Arc<Hub>,
    pub follower: Follower,
}

#[async_trait::async_trait]
impl Component for Console {
    async fn readiness(&self) -> Result<String, String> {
        // The follower's sender is gone once its task has ended.
        if self.follower.snapshots().has_changed().is_err() {
            return Err("the overview follower has stopped".into());
        }
        let published = self.hub.published();
        let s = &published.snapshot;
        if s.revision == 0 {
            return Err("still listing processing blocks and deployments".into());
        }
        Ok(format!(
            "revision {}, {} blocks, {} pages open",
            s.revision,
            s.blocks.len(),
            self.hub.metrics.pages.get()
        ))
    }
}
