//! Connecting and claiming: the first two things a workflow does.
//!
//! The claim is the Python tools' convention: create `/pb/<id>/owner` =
//! `{"command": [...], "hostname": "...", "pid": N}` bound to a lease that is kept
//! alive, only if no owner exists. The owner key vanishes when the lease is revoked
//! ([`crate::Workflow::finish`]) or, if the process dies, when the TTL runs out.

use std::time::Duration;

use sdp_config::backoff::Backoff;
use sdp_config::entity::{Owner, ProcessingBlock};
use sdp_config::{Config, ConnectionSettings, Lease};
use tokio::time::Instant;

use crate::attempts::Attempts;
use crate::error::{Error, Result};
use crate::monitor::{Stored, one_line};

/// Connect, retrying with backoff (100 ms doubling to 5 s) until `limit` has passed.
///
/// # Errors
/// [`Error::ConnectFailed`] with the last failure; settings that retrying cannot fix
/// (unreadable certificate, invalid prefix) fail at once.
pub(crate) async fn connect(settings: &ConnectionSettings, limit: Duration) -> Result<Config> {
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let error = match Config::connect(settings).await {
            Ok(db) => return Ok(db),
            Err(
                e @ (sdp_config::Error::InvalidSettings(_) | sdp_config::Error::InvalidPath { .. }),
            ) => {
                return Err(Error::ConnectFailed {
                    waited: started.elapsed(),
                    source: e,
                });
            }
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        if started.elapsed() + delay > limit {
            return Err(Error::ConnectFailed {
                waited: started.elapsed(),
                source: error,
            });
        }
        tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "configuration database not reachable yet");
        tokio::time::sleep(delay).await;
    }
}

/// A successful claim.
pub(crate) struct Claim {
    pub block: ProcessingBlock,
    pub block_stored: Stored,
    pub owner_stored: Stored,
    pub lease: Lease,
}

/// Read and validate the block and create the leased owner key, in one transaction.
///
/// # Errors
/// [`Error::BlockNotFound`], [`Error::InvalidBlock`], [`Error::AlreadyClaimed`], or a
/// request failure. The lease is revoked when the claim fails.
pub(crate) async fn claim(db: &Config, pb_id: &str, owner: &Owner, ttl: Duration) -> Result<Claim> {
    let lease = db.grant_lease(ttl).await?;
    match claim_with(db, pb_id, owner, &lease).await {
        Ok((block, block_stored, owner_stored)) => Ok(Claim {
            block,
            block_stored,
            owner_stored,
            lease,
        }),
        Err(e) => {
            if let Err(revoke) = lease.revoke().await {
                tracing::debug!(error = %revoke, "could not revoke the unused lease (it expires by itself)");
            }
            Err(e)
        }
    }
}

async fn claim_with(
    db: &Config,
    pb_id: &str,
    owner: &Owner,
    lease: &Lease,
) -> Result<(ProcessingBlock, Stored, Stored)> {
    let block_path = ProcessingBlock::path(pb_id);
    let owner_path = ProcessingBlock::owner_path(pb_id);
    let owner_json = owner.to_json();
    let mut attempts = Attempts::new();
    loop {
        let mut txn = db.txn();
        let Some((text, revision)) = txn.get_with_revision(&block_path).await? else {
            return Err(Error::BlockNotFound {
                pb_id: pb_id.into(),
            });
        };
        let block =
            ProcessingBlock::parse(&text, Some(pb_id)).map_err(|source| Error::InvalidBlock {
                pb_id: pb_id.into(),
                source,
            })?;
        if let Some(current) = txn.get(&owner_path).await? {
            return Err(Error::AlreadyClaimed {
                pb_id: pb_id.into(),
                owner: one_line(&current),
            });
        }
        txn.create_leased(&owner_path, &owner_json, Some(lease.id()))
            .await?;
        if let Some(committed) = attempts.commit(txn).await? {
            let block_stored = Stored { text, revision };
            let owner_stored = Stored {
                text: owner_json,
                revision: committed.revision,
            };
            return Ok((block, block_stored, owner_stored));
        }
    }
}
