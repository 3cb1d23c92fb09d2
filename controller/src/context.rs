//! State shared by the controller's tasks.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sdp_config::{Config, Guard};

use crate::metrics::Metrics;
use crate::queue::WorkQueue;
use crate::template::DeployContext;
use crate::view::{View, Wake};

/// Everything the tasks share.
pub struct Ctx {
    /// The database.
    pub db: Config,
    /// The view, fed by the watches.
    view: RwLock<View>,
    /// Blocks to reconcile.
    pub queue: Arc<WorkQueue>,
    /// The leadership guard while leading.
    leader: RwLock<Option<Guard>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings that go into deployments.
    pub deploy: DeployContext,
}

impl Ctx {
    /// New shared state.
    pub fn new(db: Config, view: View, deploy: DeployContext) -> Arc<Self> {
        Arc::new(Ctx {
            db,
            view: RwLock::new(view),
            queue: crate::queue::WorkQueue::new(),
            leader: RwLock::new(None),
            metrics: Metrics::new(),
            deploy,
        })
    }

    /// Read the view.
    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the view.
    pub fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the view and queue the blocks the change concerns.
    pub fn update(&self, change: impl FnOnce(&mut View) -> Wake) {
        let keys = {
            let mut view = self.view_mut();
            let wake = change(&mut view);
            view.keys(wake)
        };
        self.queue.add_all(keys);
    }

    /// Queue every block and every orphaned deployment (a full reconcile).
    pub fn wake_everything(&self) {
        self.update(|_| Wake::Everything);
    }

    /// The guard to make writes conditional on, while leading.
    pub fn leader_guard(&self) -> Option<Guard> {
        self.leader
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Start (`Some`) or stop (`None`) acting.
    pub fn set_leader(&self, guard: Option<Guard>) {
        self.metrics.is_leader.set(i64::from(guard.is_some()));
        *self.leader.write().unwrap_or_else(PoisonError::into_inner) = guard;
    }
}
