//! What every long-running SDP program shares, written once: log set-up ([`logging`]),
//! signals into a cancellation token ([`signals`], [`program::run`]), the settings every
//! daemon has ([`settings`]), "run while elected" ([`election`]), the health and metrics
//! server whose readiness asks the component ([`health`]) and the keyed work queue
//! ([`queue`]).
//!
//! A daemon's `main` is: parse settings, [`logging::init`], [`program::run`] its
//! library's `run(settings, shutdown)`.

pub mod election;
pub mod health;
pub mod logging;
pub mod program;
pub mod queue;
pub mod settings;
pub mod signals;

pub use sdp_config::identity::identity;
