//! One read model of the whole system, for front ends (`sdpcfg status`, the web
//! console): every processing block with its workflow, status, reason, age and owner,
//! every deployment with its chart, release status and workload phase, which
//! deployments belong to which block, the deployments of no block, and totals.
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo(db: sdp_config::Config) -> sdp_config::Result<()> {
//! use sdp_config::overview;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let follower = overview::follow(&db, shutdown.clone());
//! let first = follower.listed().await?;           // the first complete picture
//! println!("{} blocks", first.totals.blocks);
//! let mut snapshots = follower.snapshots();       // a new snapshot after each change
//! let mut changes = follower.subscribe();         // one record per change
//! while snapshots.changed().await.is_ok() {
//!     let now = snapshots.borrow_and_update().clone();
//!     while let Ok(change) = changes.try_recv() {
//!         println!("{} {}", change.time, change.summary);
//!     }
//!     println!("revision {}: {} blocks", now.revision, now.blocks.len());
//! }
//! # Ok(()) }
//! ```
//!
//! - [`Snapshot`]: the plain, serialisable picture at one revision (`serde::Serialize`;
//!   `{"revision", "blocks", "deployments", "orphans", "totals"}`, sorted by ID), with
//!   [`BlockSummary`], [`DeploymentSummary`] and [`Totals`]. Entries are behind `Arc`,
//!   so successive snapshots share what did not change.
//! - [`Overview`]: the model itself, built from `(path, value)` pairs by
//!   [`Overview::from_pairs`] and changed by [`Overview::apply`] one watch event at a
//!   time; no etcd involved (what the tests use).
//! - [`follow`]: a task that feeds an [`Overview`] from one etcd watch under the
//!   connection's global prefix and publishes through a [`Follower`]: a
//!   `tokio::sync::watch` of `Arc<Snapshot>` and a `tokio::sync::broadcast` of
//!   [`Change`] records (`time`, `kind` added/changed/removed, `entity`, `id`, a
//!   one-line `summary`) for a "recent changes" feed. Any number of readers share one
//!   watch, so they cost etcd nothing.
//! - [`read`]: one snapshot, read once, with the error when etcd cannot be read (for
//!   one-shot commands; [`follow`] retries instead).
//! - [`short_age`]: `5m`, `2h`, `3d` from a block's [`BlockSummary::since`].
//!
//! # Guarantees
//!
//! - Stored values may hold credentials: only the fields listed on the summaries are
//!   read out of them (texts bounded to [`MAX_TEXT`] characters), never a value whole.
//! - A snapshot reflects every change up to its revision, never part of a transaction
//!   (the watch delivers a transaction's events together and they are applied as one
//!   batch), and no change is missed or applied twice across etcd restarts and
//!   compactions (see [`crate::Watch`]).
//! - Values of unexpected shape never fail the model: their fields read as absent.

mod age;
mod change;
mod follow;
mod model;
mod parse;
mod snapshot;
mod summary;

pub use age::short_age;
pub use change::{Change, ChangeKind, Entity};
pub use follow::{CHANGE_BUFFER, Follower, follow, read};
pub use model::Overview;
pub use parse::MAX_TEXT;
pub use snapshot::{NO_STATUS, Snapshot, Totals};
pub use summary::{BlockSummary, DeploymentSummary, OwnerSummary};
