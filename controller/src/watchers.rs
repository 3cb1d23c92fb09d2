//! The four watches that feed the view.

use std::sync::Arc;

use sdp_config::WatchEvent;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::view::Part;

/// Start one task per watched part; each applies its events to the view and queues
/// the blocks they concern.
///
/// # Errors
/// [`Error::WatchStartFailed`].
pub fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken, tasks: &mut JoinSet<()>) -> Result<()> {
    for (part, prefix, levels) in Part::ALL {
        let mut watch = ctx
            .db
            .watch(prefix, levels, None)
            .map_err(|source| Error::WatchStartFailed { prefix, source })?;
        let ctx = Arc::clone(ctx);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    e = watch.next() => e,
                };
                let Some(event) = event else { return };
                if let WatchEvent::Listed { entries, revision } = &event {
                    tracing::info!(part = ?part, entries = entries.len(), revision, "listed");
                }
                ctx.update(|view| view.apply(part, event));
            }
        });
    }
    Ok(())
}
