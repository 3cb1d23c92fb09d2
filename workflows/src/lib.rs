//! The SDP workflow SDK and the example workflows (`testdask`, `teststate`,
//! `testdeploy`).
//!
//! A workflow is a program started with one argument, the ID of the processing block it
//! runs for (in a pod made from the `workflow` chart, or as a local process). It claims
//! the block, reports progress in the block's state, requests deployments (Helm
//! releases made by the deployer), and stops when the block is deleted or it loses
//! ownership. The SDK keeps the Python tools' conventions (see the wire format):
//!
//! - the claim is `/pb/<id>/owner` = `{"command": [...], "hostname": ..., "pid": ...}`,
//!   created only if absent and bound to a lease that is kept alive
//!   ([`Workflow::start`]); it vanishes at once on [`Workflow::finish`], or when the
//!   lease's TTL runs out if the process dies;
//! - every write (state, deployments) is one transaction that also checks the owner key
//!   still holds this process's value and the block still exists;
//! - the state is changed by read-modify-write and keeps fields others wrote
//!   ([`Workflow::update_state`]);
//! - changes of the block, its deletion and loss of ownership arrive as [`Event`]s
//!   ([`Workflow::wait_for_change`], [`Workflow::events`], [`Workflow::ended`]).
//!
//! ```no_run
//! use sdp_config::ConnectionSettings;
//! use sdp_config::entity::{Deployment, PbStatus};
//! use sdp_workflows::Workflow;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = ConnectionSettings::from_env()?;
//! let wf = Workflow::start(&settings, "realtime-20191121-0000").await?;
//! wf.set_status(PbStatus::Running, None).await?;
//! let id = wf.deploy_id("dask");
//! wf.request_deployment(&Deployment::helm(&id, "stable/dask", Default::default())).await?;
//! let why = wf.ended().await; // block deleted or ownership lost
//! tracing::info!(%why, "done");
//! wf.remove_deployment(&id).await?;
//! wf.finish().await?;
//! # Ok(()) }
//! ```

mod attempts;
mod claim;
pub mod cli;
mod deployments;
mod ended;
mod error;
mod events;
mod guard;
mod monitor;
mod options;
mod state;
mod workflow;

pub use deployments::WORKFLOW_SUFFIX;
pub use ended::Ended;
pub use error::{Error, Result};
pub use events::{Event, Events};
pub use options::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_NAMESPACE, Options};
pub use workflow::Workflow;
