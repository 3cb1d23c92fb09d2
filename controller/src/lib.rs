//! SDP processing controller: processing blocks in, workflow deployments out
