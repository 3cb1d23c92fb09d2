//! The block's deployments (`/deploy/<pb_id>-<suffix>`), which the deployer turns into
//! Helm releases.
//!
//! A workflow manages the deployments named `<pb_id>-<suffix>`, except
//! `<pb_id>-workflow`: that one is the controller's deployment of the workflow itself.
//! Creating and changing them is conditional on owning the block; removing them is
//! allowed as long as nobody else owns it, so that a workflow can clean up after its
//! block was deleted or its lease expired.

use std::collections::BTreeMap;

use sdp_config::entity::{Deployment, ProcessingBlock, ValidationError, validate_deploy_id};

use crate::attempts::Attempts;
use crate::error::{Error, Result};
use crate::workflow::Workflow;

/// Suffix of the controller's deployment of the workflow itself (`<pb_id>-workflow`).
pub const WORKFLOW_SUFFIX: &str = "workflow";

impl Workflow {
    /// The ID of this block's deployment with `suffix`: `<pb_id>-<suffix>`.
    pub fn deploy_id(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.pb_id())
    }

    fn check_managed(&self, deploy_id: &str) -> Result<()> {
        validate_deploy_id(deploy_id).map_err(Error::InvalidDeployment)?;
        let foreign = |reason| Error::ForeignDeployment {
            deploy_id: deploy_id.into(),
            pb_id: self.pb_id().into(),
            reason,
        };
        match deploy_id
            .strip_prefix(self.pb_id())
            .and_then(|rest| rest.strip_prefix('-'))
        {
            None | Some("") => Err(foreign("its ID must be <pb_id>-<suffix>")),
            Some(WORKFLOW_SUFFIX) => Err(foreign(
                "<pb_id>-workflow is the controller's deployment of the workflow itself",
            )),
            Some(_) => Ok(()),
        }
    }

    /// Create `/deploy/<id>` with `deployment`, conditional on owning the block.
    ///
    /// # Errors
    /// [`Error::ForeignDeployment`] for an ID that is not `<pb_id>-<suffix>` (or is the
    /// workflow's own), [`Error::DeploymentExists`], [`Error::NotOwner`],
    /// [`Error::BlockDeleted`], or a request failure.
    pub async fn request_deployment(&self, deployment: &Deployment) -> Result<()> {
        self.check_managed(&deployment.id)?;
        let path = Deployment::path(&deployment.id);
        let text = deployment.to_json();
        let exists = || Error::DeploymentExists {
            deploy_id: deployment.id.clone(),
        };
        let mut attempts = Attempts::new();
        loop {
            let mut txn = self.config().txn();
            self.require_owner(&mut txn, attempts.first()).await?;
            match txn.create(&path, &text).await {
                Err(sdp_config::Error::AlreadyExists { .. }) => return Err(exists()),
                other => other?,
            }
            match attempts.commit(txn).await {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(sdp_config::Error::AlreadyExists { .. }) => return Err(exists()),
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(pb_id = self.pb_id(), deploy_id = %deployment.id, "requested deployment");
        Ok(())
    }

    /// Rewrite `/deploy/<id>` with `deployment` (read-modify-write against the revision
    /// read), conditional on owning the block. Returns `false` when the stored value
    /// already equals `deployment` (nothing written).
    ///
    /// # Errors
    /// [`Error::DeploymentNotFound`], and as [`Workflow::request_deployment`].
    pub async fn update_deployment(&self, deployment: &Deployment) -> Result<bool> {
        self.check_managed(&deployment.id)?;
        let path = Deployment::path(&deployment.id);
        let mut attempts = Attempts::new();
        loop {
            let mut txn = self.config().txn();
            self.require_owner(&mut txn, attempts.first()).await?;
            let Some(current) = txn.get(&path).await? else {
                return Err(Error::DeploymentNotFound {
                    deploy_id: deployment.id.clone(),
                });
            };
            if Deployment::parse(&current, Some(&deployment.id)).as_ref() == Ok(deployment) {
                return Ok(false);
            }
            txn.update(&path, &deployment.to_json()).await?;
            if attempts.commit(txn).await?.is_some() {
                tracing::info!(pb_id = self.pb_id(), deploy_id = %deployment.id, "updated deployment");
                return Ok(true);
            }
        }
    }

    /// Delete `/deploy/<id>` and everything below it (its state), unless another process
    /// owns the block now. Works after the block was deleted or ownership lapsed, for
    /// clean-up. Returns whether the deployment existed.
    ///
    /// # Errors
    /// [`Error::ForeignDeployment`], [`Error::NotOwner`] (someone else owns the block),
    /// or a request failure.
    pub async fn remove_deployment(&self, deploy_id: &str) -> Result<bool> {
        self.check_managed(deploy_id)?;
        let path = Deployment::path(deploy_id);
        let mut attempts = Attempts::new();
        loop {
            let mut txn = self.config().txn();
            self.require_no_other_owner(&mut txn).await?;
            let existed = txn.get(&path).await?.is_some();
            txn.delete_tree(&path)?;
            if attempts.commit(txn).await?.is_some() {
                if existed {
                    tracing::info!(pb_id = self.pb_id(), deploy_id, "removed deployment");
                }
                return Ok(existed);
            }
        }
    }

    /// The deployments this workflow manages: `/deploy/<pb_id>-<suffix>` except
    /// `<pb_id>-workflow`, and except those of another block whose ID starts with
    /// `<pb_id>-` (`<pb_id>-x-dask` belongs to block `<pb_id>-x` while that exists).
    /// Each with its parsed value, or why the stored value is not a valid deployment.
    ///
    /// # Errors
    /// A request failure.
    pub async fn deployments(
        &self,
    ) -> Result<BTreeMap<String, Result<Deployment, ValidationError>>> {
        let prefix = format!("{}-", self.pb_id());
        let mut txn = self.config().txn();
        let stored = txn.list_values(&format!("/deploy/{prefix}"), 0).await?;
        let longer_blocks: Vec<String> = txn
            .list_keys(&format!("/pb/{prefix}"), 0)
            .await?
            .into_iter()
            .filter_map(|p| ProcessingBlock::id_from_path(&p).map(|id| format!("{id}-")))
            .collect();
        let mut out = BTreeMap::new();
        for (path, text) in stored {
            let Some(id) = Deployment::id_from_path(&path) else {
                continue;
            };
            if id == self.deploy_id(WORKFLOW_SUFFIX)
                || longer_blocks
                    .iter()
                    .any(|other| id.starts_with(other.as_str()))
            {
                continue;
            }
            out.insert(id.to_string(), Deployment::parse(&text, Some(id)));
        }
        Ok(out)
    }
}
