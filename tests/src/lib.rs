//! End-to-end tests of the whole SDP processing-control loop: a real etcd per test,
//! the processing controller and the Helm deployer as real child processes, `sdpcfg`
//! and the example workflows run the way their users run them, and the real `helm`
//! rendering the real charts (or the stand-in helm for the cluster target).
//!
//! The tests are in `tests/`; this library holds what they share:
//!
//! - [`binaries`]: finding (and if needed building) the workspace's binaries;
//! - [`process`]: child processes with captured logs, killed on drop;
//! - [`system`]: etcd + controller + deployer for one test, with helpers;
//! - [`history`]: every change under `/pb/` and `/deploy/`, in order;
//! - [`expected`]: the exact values of the seed walkthrough (from CPython-written fixtures);
//! - [`manifest`]: reading rendered manifests; [`fake_helm`]: reading the stand-in's state;
//! - [`walkthrough`]: the README walkthrough, step by step with its checks;
//!   [`releases`]: what it checks of the releases for each deployer target;
//! - [`wait`]: polling with deadlines.

pub mod binaries;
pub mod expected;
pub mod fake_helm;
pub mod history;
pub mod manifest;
pub mod process;
pub mod releases;
pub mod system;
pub mod wait;
pub mod walkthrough;
