//! SDP workflow SDK and example workflows (testdask, teststate, testdeploy)
