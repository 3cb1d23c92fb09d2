//! [`Workflow`]: a claimed processing block and everything a workflow does with it.

use sdp_config::entity::{Owner, ProcessingBlock, validate_pb_id};
use sdp_config::{Config, ConnectionSettings, Lease};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::claim;
use crate::ended::Ended;
use crate::error::{Error, Result};
use crate::events::{self, Event, Events};
use crate::monitor::{self, BlockView, Target, View};
use crate::options::Options;

/// A processing block claimed by this process.
///
/// Created by [`Workflow::start`]; released by [`Workflow::finish`]. Dropping it without
/// `finish` stops refreshing the claim, as if the process had died: the owner key then
/// vanishes when its lease's TTL runs out.
pub struct Workflow {
    db: Config,
    pb_id: String,
    block: ProcessingBlock,
    pub(crate) owner: Owner,
    options: Options,
    lease: Lease,
    pub(crate) view: watch::Receiver<View>,
    changes: Mutex<Events>,
    _monitor: DropGuard,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("pb_id", &self.pb_id)
            .field("lease", &self.lease.id())
            .finish()
    }
}

impl Workflow {
    /// Connect, read and validate the block `pb_id`, and claim it, with the options
    /// from the environment ([`Options::from_env`]).
    ///
    /// # Errors
    /// See [`Workflow::start_with`].
    pub async fn start(settings: &ConnectionSettings, pb_id: &str) -> Result<Workflow> {
        Self::start_with(settings, pb_id, Options::from_env()).await
    }

    /// Connect (retrying with backoff for up to `options.connect_timeout`), read and
    /// validate the block `pb_id`, and claim it with an owner key bound to a lease of
    /// `options.lease_ttl` that is kept alive in the background.
    ///
    /// # Errors
    /// [`Error::InvalidPbId`], [`Error::ConnectFailed`], [`Error::BlockNotFound`],
    /// [`Error::InvalidBlock`], [`Error::AlreadyClaimed`] (another owner exists: it is
    /// never overwritten), or a request failure.
    pub async fn start_with(
        settings: &ConnectionSettings,
        pb_id: &str,
        options: Options,
    ) -> Result<Workflow> {
        validate_pb_id(pb_id).map_err(Error::InvalidPbId)?;
        let db = claim::connect(settings, options.connect_timeout).await?;
        Self::claim(db, pb_id, options).await
    }

    /// Claim `pb_id` over an existing connection.
    ///
    /// # Errors
    /// As [`Workflow::start_with`], without the connection errors.
    pub async fn claim(db: Config, pb_id: &str, options: Options) -> Result<Workflow> {
        validate_pb_id(pb_id).map_err(Error::InvalidPbId)?;
        let owner = Owner::this_process();
        let claimed = claim::claim(&db, pb_id, &owner, options.lease_ttl).await?;
        let from_revision = claimed.owner_stored.revision + 1;
        let initial = View {
            block: BlockView::Valid(Box::new(claimed.block.clone())),
            block_stored: Some(claimed.block_stored),
            owner_stored: Some(claimed.owner_stored),
            ended: None,
        };
        let stop = CancellationToken::new();
        let target = Target {
            db: db.clone(),
            pb_id: pb_id.to_string(),
            owner: owner.clone(),
            lease_lost: claimed.lease.subscribe(),
        };
        let view = match monitor::spawn(target, initial, from_revision, stop.clone()) {
            Ok(view) => view,
            Err(e) => {
                let _ = claimed.lease.revoke().await;
                return Err(e.into());
            }
        };
        tracing::info!(
            pb_id,
            lease = claimed.lease.id(),
            "claimed processing block"
        );
        Ok(Workflow {
            db,
            pb_id: pb_id.to_string(),
            block: claimed.block,
            owner,
            options,
            lease: claimed.lease,
            changes: Mutex::new(Events::new(view.clone())),
            view,
            _monitor: stop.drop_guard(),
        })
    }

    /// The processing block's ID.
    pub fn pb_id(&self) -> &str {
        &self.pb_id
    }

    /// The block as read when it was claimed. See [`Workflow::latest_block`] for changes.
    pub fn block(&self) -> &ProcessingBlock {
        &self.block
    }

    /// The block's `parameters` as read when it was claimed.
    pub fn parameters(&self) -> &Map<String, Value> {
        &self.block.parameters
    }

    /// The latest valid value of the block seen since the claim (`None` once deleted or
    /// while its value is invalid).
    pub fn latest_block(&self) -> Option<ProcessingBlock> {
        match &self.view.borrow().block {
            BlockView::Valid(block) => Some((**block).clone()),
            BlockView::Invalid(_) | BlockView::Deleted => None,
        }
    }

    /// The Kubernetes namespace the deployer installs into (`SDP_HELM_NAMESPACE`, `sdp`).
    pub fn namespace(&self) -> &str {
        &self.options.namespace
    }

    /// The owner value this workflow wrote to `/pb/<id>/owner`.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The connection, for anything the SDK does not cover.
    pub fn config(&self) -> &Config {
        &self.db
    }

    /// A new, independent stream of events from now on.
    pub fn events(&self) -> Events {
        Events::new(self.view.clone())
    }

    /// The next change since the previous call (or since the claim, on the first call).
    /// Once the workflow has ended, every call returns the final event at once. Calls
    /// share one cursor; use [`Workflow::events`] for independent streams.
    pub async fn wait_for_change(&self) -> Event {
        let next = self.changes.lock().await.next().await;
        match next {
            Some(event) => event,
            None => self.ended().await.into(),
        }
    }

    /// Resolves when the block is deleted or ownership is lost (at once if that has
    /// already happened).
    pub async fn ended(&self) -> Ended {
        events::ended(self.view.clone()).await
    }

    /// `Some` once the workflow has ended.
    pub fn has_ended(&self) -> Option<Ended> {
        self.view.borrow().ended.clone()
    }

    /// Release the claim: revoke the lease, so the owner key vanishes at once.
    ///
    /// # Errors
    /// A request failure (the owner key then vanishes when the TTL runs out).
    pub async fn finish(self) -> Result<()> {
        let Workflow {
            lease,
            _monitor: monitor,
            pb_id,
            ..
        } = self;
        drop(monitor); // stop following the block before the owner key goes
        lease.revoke().await?;
        tracing::info!(pb_id, "released processing block");
        Ok(())
    }
}
