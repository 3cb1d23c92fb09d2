//! The watches that feed the view.

use std::sync::Arc;

use sdp_config::WatchEvent;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::shared::Shared;
use crate::view::Part;

/// Start one task per watched part; each applies its events to the view and queues
/// the blocks they concern.
///
/// # Errors
/// [`Error::WatchStartFailed`].
pub(crate) fn start(
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    for (part, prefix, levels) in Part::ALL {
        let mut watch = shared
            .db
            .watch(prefix, levels, None)
            .map_err(|source| Error::WatchStartFailed { prefix, source })?;
        let shared = Arc::clone(shared);
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
                shared.update(|view| view.apply(part, event, chrono::Utc::now()));
            }
        });
    }
    Ok(())
}
