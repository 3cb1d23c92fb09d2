//! End-to-end tests of the whole SDP processing-control loop
