//! SDP Helm deployer: deployment entries in, Helm releases out
