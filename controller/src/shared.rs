//! What the controller's tasks share: the database, the watch-fed view, the work queue,
//! the leadership guard while leading, and the metrics.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sdp_config::{Config, Guard};
use sdp_runtime::health::Component;
use sdp_runtime::queue::Queue;

use crate::metrics::Metrics;
use crate::template::DeployContext;
use crate::view::{View, Wake};

pub(crate) struct Shared {
    pub(crate) db: Config,
    view: RwLock<View>,
    /// Block IDs to reconcile (one lane).
    pub(crate) queue: Queue<String>,
    /// Set while leading: every write is conditional on it.
    leader: RwLock<Option<Guard>>,
    pub(crate) metrics: Metrics,
    /// Settings that go into deployments.
    pub(crate) deploy: DeployContext,
}

impl Shared {
    pub(crate) fn new(
        db: Config,
        view: View,
        deploy: DeployContext,
        metrics: Metrics,
        queue: Queue<String>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            db,
            view: RwLock::new(view),
            queue,
            leader: RwLock::new(None),
            metrics,
            deploy,
        })
    }

    pub(crate) fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the view and queue the blocks the change concerns.
    pub(crate) fn update(&self, change: impl FnOnce(&mut View) -> Wake) {
        let keys = {
            let mut view = self.view_mut();
            let wake = change(&mut view);
            view.keys(wake)
        };
        self.queue.add_all(keys);
    }

    /// Queue every block and every orphaned deployment (a full reconcile).
    pub(crate) fn wake_everything(&self) {
        self.update(|_| Wake::Everything);
    }

    /// The guard to make writes conditional on, while leading.
    pub(crate) fn leader_guard(&self) -> Option<Guard> {
        self.leader
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Start (`Some`) or stop (`None`) acting.
    pub(crate) fn set_leader(&self, guard: Option<Guard>) {
        self.metrics.is_leader.set(i64::from(guard.is_some()));
        *self.leader.write().unwrap_or_else(PoisonError::into_inner) = guard;
    }
}

#[async_trait::async_trait]
impl Component for Shared {
    /// Ready once every watch has listed, leading or standing by.
    async fn readiness(&self) -> Result<String, String> {
        if !self.view().is_synced() {
            return Err("still listing the configuration database".into());
        }
        Ok(if self.leader_guard().is_some() {
            "leader".into()
        } else {
            "standby".into()
        })
    }

    fn refresh_metrics(&self) {
        let reconnects = self
            .db
            .stats()
            .watch_reconnects
            .load(std::sync::atomic::Ordering::Relaxed);
        self.metrics.observe(&self.view(), reconnects);
    }
}
