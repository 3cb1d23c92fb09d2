//! The block's state (`/pb/<id>/state`): read-modify-write, conditional on ownership.
//!
//! The rules of the wire format: create the state only if it is absent, change it only
//! against the revision read, and never drop fields someone else set
//! ([`ProcessingBlockState`] keeps unknown fields, such as the older workflows'
//! `{"state": "executing", ...}`).

use sdp_config::entity::{PbStatus, ProcessingBlock, ProcessingBlockState};

use crate::attempts::Attempts;
use crate::error::{Error, Result};
use crate::workflow::Workflow;

impl Workflow {
    /// Change the block's state with `change`, in one transaction that also checks that
    /// this workflow still owns the block. An absent state is created, starting from an
    /// empty one. Nothing is written when `change` leaves the state as it was.
    ///
    /// `change` may run more than once (after a conflicting concurrent change it runs
    /// again on the fresh state), so it must only modify the state it is given.
    /// Returns the state as written.
    ///
    /// # Errors
    /// [`Error::NotOwner`], [`Error::BlockDeleted`], [`Error::StateUnreadable`] (the
    /// stored state is not an object with the known fields' types: it is left alone), or
    /// a request failure.
    pub async fn update_state<F>(&self, mut change: F) -> Result<ProcessingBlockState>
    where
        F: FnMut(&mut ProcessingBlockState),
    {
        let path = ProcessingBlock::state_path(self.pb_id());
        let mut attempts = Attempts::new();
        loop {
            let mut txn = self.config().txn();
            self.require_owner(&mut txn, attempts.first()).await?;
            let current = txn.get(&path).await?;
            let before = match &current {
                Some(text) => {
                    ProcessingBlockState::parse(text).map_err(|source| Error::StateUnreadable {
                        pb_id: self.pb_id().into(),
                        source,
                    })?
                }
                None => ProcessingBlockState::default(),
            };
            let mut state = before.clone();
            change(&mut state);
            if state == before {
                return Ok(state);
            }
            let text = state.to_json();
            if current.is_some() {
                txn.update(&path, &text).await?;
            } else {
                txn.create(&path, &text).await?;
            }
            if attempts.commit(txn).await?.is_some() {
                return Ok(state);
            }
        }
    }

    /// Set the state's `status`, and its `reason` (removed when `None`), keeping every
    /// other field.
    ///
    /// # Errors
    /// See [`Workflow::update_state`].
    pub async fn set_status(
        &self,
        status: PbStatus,
        reason: Option<&str>,
    ) -> Result<ProcessingBlockState> {
        let state = self
            .update_state(|state| {
                state.status = Some(status.as_str().to_string());
                state.reason = reason.map(str::to_string);
            })
            .await?;
        tracing::info!(
            pb_id = self.pb_id(),
            status = status.as_str(),
            reason,
            "state"
        );
        Ok(state)
    }

    /// The block's current state (`None` while absent).
    ///
    /// # Errors
    /// [`Error::StateUnreadable`] or a request failure.
    pub async fn state(&self) -> Result<Option<ProcessingBlockState>> {
        let mut txn = self.config().txn();
        let Some(text) = txn.get(&ProcessingBlock::state_path(self.pb_id())).await? else {
            return Ok(None);
        };
        ProcessingBlockState::parse(&text)
            .map(Some)
            .map_err(|source| Error::StateUnreadable {
                pb_id: self.pb_id().into(),
                source,
            })
    }
}
