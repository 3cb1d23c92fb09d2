//! The workers: take a block ID from the queue, decide from the view, perform, and
//! retry with backoff when etcd failed.

use std::sync::Arc;
use std::time::Instant;

use crate::context::Ctx;
use crate::decide::{Action, decide};
use crate::failure::FailureKind;
use crate::perform::{Outcome, perform};

/// Process queued blocks until the queue closes.
pub async fn worker(ctx: Arc<Ctx>) {
    while let Some(key) = ctx.queue.next().await {
        reconcile(&ctx, &key).await;
        ctx.queue.done(&key);
    }
}

/// Reconcile one block. Only the leader acts, and only on a complete view: keys taken
/// otherwise are dropped, because becoming leader and completing the view both queue
/// every block again.
#[tracing::instrument(skip_all, fields(pb_id = %key))]
async fn reconcile(ctx: &Ctx, key: &str) {
    let Some(guard) = ctx.leader_guard() else {
        return;
    };
    let start = Instant::now();
    let action = {
        let view = ctx.view();
        if !view.is_synced() {
            return;
        }
        decide(&view, key, &ctx.deploy)
    };
    if action == Action::Nothing {
        ctx.queue.forget(key);
        ctx.metrics
            .reconcile_duration
            .observe(start.elapsed().as_secs_f64());
        return;
    }
    match perform(ctx, key, &action, &guard).await {
        Ok(Outcome::Done) => {
            ctx.queue.forget(key);
            report(ctx, &action);
        }
        Ok(Outcome::Stale) => tracing::debug!("view was behind etcd; the watch brings the change"),
        Ok(Outcome::NotLeader) => tracing::info!("no longer the leader; nothing written"),
        Err(e) if e.is_transient() => {
            ctx.metrics.failed(FailureKind::EtcdError);
            let (delay, failures) = ctx.queue.retry(key);
            let retry_in_ms = delay.as_millis() as u64;
            // Once per outage and key, then rarely: an etcd restart must not flood the log.
            if failures == 1 || failures % 10 == 0 {
                tracing::warn!(error = %e, failures, retry_in_ms, "reconcile failed; retrying");
            } else {
                tracing::debug!(error = %e, failures, retry_in_ms, "reconcile failed; retrying");
            }
        }
        Err(e) => {
            ctx.queue.forget(key);
            tracing::error!(error = %e, "cannot act on this processing block");
        }
    }
    ctx.metrics
        .reconcile_duration
        .observe(start.elapsed().as_secs_f64());
}

fn report(ctx: &Ctx, action: &Action) {
    match action {
        Action::Deploy {
            deployment: Some(d),
            ..
        } => {
            tracing::info!(deploy_id = %d.id, "requested the workflow deployment; state STARTING");
        }
        Action::Deploy {
            deployment: None, ..
        } => tracing::info!("workflow deployment exists; state STARTING"),
        Action::SetState {
            failure: Some(kind),
            reason,
            ..
        } => {
            ctx.metrics.failed(*kind);
            tracing::warn!(kind = kind.as_str(), %reason, "processing block cannot start; state FAILED");
        }
        Action::SetState {
            failure: None,
            reason,
            ..
        } => tracing::info!(%reason, "state WAITING"),
        Action::Cleanup(_) | Action::Nothing => {}
    }
}
