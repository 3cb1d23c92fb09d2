//! The SDP configuration database over etcd, wire-compatible with the Python
//! `ska-sdp-config` tools.
//!
//! This crate is the only code in the project that talks to etcd or builds keys and
//! JSON values. Daemons use [`Config`] for transactions ([`Config::transact`]), watches
//! ([`Config::watch`]), leases ([`Config::grant_lease`]) and leader election
//! ([`Config::election`]), and speak in the [`entity`] types. Front ends read the whole
//! system through [`overview`].

pub mod backoff;
mod client;
pub mod database;
mod election;
pub mod entity;
mod error;
pub mod identity;
pub mod json;
mod lease;
pub mod overview;
pub mod path;
mod settings;
mod txn;
mod watch;

pub use client::{Config, Stats};
pub use database::DatabaseRecord;
pub use election::{Election, Leadership};
pub use error::{Error, Result};
pub use lease::{DEFAULT_TTL, Lease};
pub use settings::{ConnectionSettings, Member, Protocol};
pub use txn::{Committed, Guard, MAX_ATTEMPTS, MAX_COMPARES, MAX_TXN_OPS, ReadSet, Txn, TxnFuture};
pub use watch::{Entry, Watch, WatchEvent};
