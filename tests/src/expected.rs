//! The exact values the seed walkthrough produces, made from the byte-exact fixtures
//! that CPython's `json.dumps(…, indent=2, sort_keys=True, …)` wrote
//! (`config/tests/fixtures/`), with this run's IDs, namespace and image substituted.

use anyhow::{Context, Result, ensure};

use crate::binaries::repo_root;

/// The seed's processing block ID, as it appears in the fixtures.
const SEED_PB_ID: &str = "realtime-20191121-0000";

/// The workflow image the registry gives `realtime:testdask:0.1.0`.
pub const TESTDASK_IMAGE: &str = "sdp/workflow-testdask:0.1.0";

pub use sdp_testing::fixtures::is_starting;

fn fixture(name: &str) -> Result<String> {
    let path = repo_root().join("config/tests/fixtures").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// `text` with each `(from, to)` replaced, failing if a `from` does not occur (the
/// fixture changed and the substitution would silently do nothing).
fn substitute(mut text: String, pairs: &[(&str, &str)]) -> Result<String> {
    for (from, to) in pairs {
        ensure!(text.contains(from), "fixture has no {from:?}:\n{text}");
        text = text.replace(from, to);
    }
    Ok(text)
}

/// `/pb/<pb_id>` as `sdpcfg process realtime:testdask:0.1.0` writes it (2019 shape).
///
/// # Errors
/// The fixture cannot be read.
pub fn testdask_block(pb_id: &str) -> Result<String> {
    substitute(
        fixture("processing_block_2019.json")?,
        &[(SEED_PB_ID, pb_id)],
    )
}

/// `/deploy/<pb_id>-workflow` as the processing controller writes it: the seed's, with
/// `env.SDP_CONFIG_PORT` after the host when the port is not the default 2379.
///
/// # Errors
/// The fixture cannot be read.
pub fn workflow_deployment(
    pb_id: &str,
    config_host: &str,
    config_port: u16,
    namespace: &str,
    image: &str,
) -> Result<String> {
    let port = if config_port == 2379 {
        String::new()
    } else {
        format!(",\n      \"env.SDP_CONFIG_PORT\": \"{config_port}\"")
    };
    substitute(
        fixture("seed_workflow_deployment.json")?,
        &[
            (SEED_PB_ID, pb_id),
            (
                "\"env.SDP_CONFIG_HOST\": \"127.0.0.1\"",
                &format!("\"env.SDP_CONFIG_HOST\": \"{config_host}\"{port}"),
            ),
            (
                "\"env.SDP_HELM_NAMESPACE\": \"sdp\"",
                &format!("\"env.SDP_HELM_NAMESPACE\": \"{namespace}\""),
            ),
            (
                "\"nexus.engageska-portugal.pt/sdp-prototype/workflow-testdask:0.1.0\"",
                &format!("\"{image}\""),
            ),
        ],
    )
}

/// `/deploy/<pb_id>-dask` as `testdask` writes it: the wire format's seed, byte for
/// byte, with this block's ID.
///
/// # Errors
/// The fixture cannot be read.
pub fn dask_deployment(pb_id: &str) -> Result<String> {
    substitute(
        fixture("seed_dask_deployment.json")?,
        &[(SEED_PB_ID, pb_id)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_keep_the_python_layout() -> Result<()> {
        let text = workflow_deployment(
            "realtime-20260101-0003",
            "10.0.0.1",
            2379,
            "test-sdp",
            "sdp/workflow-testdask:0.1.0",
        )?;
        assert_eq!(
            text,
            "{\n  \"args\": {\n    \"chart\": \"workflow\",\n    \"values\": {\n      \"env.SDP_CONFIG_HOST\": \"10.0.0.1\",\n      \"env.SDP_HELM_NAMESPACE\": \"test-sdp\",\n      \"pb_id\": \"realtime-20260101-0003\",\n      \"wf_image\": \"sdp/workflow-testdask:0.1.0\"\n    }\n  },\n  \"deploy_id\": \"realtime-20260101-0003-workflow\",\n  \"type\": \"helm\"\n}"
        );
        let text = workflow_deployment("x-1", "10.0.0.1", 32379, "ns", "i")?;
        assert!(
            text.contains("\"env.SDP_CONFIG_HOST\": \"10.0.0.1\",\n      \"env.SDP_CONFIG_PORT\": \"32379\",\n      \"env.SDP_HELM_NAMESPACE\": \"ns\","),
            "{text}"
        );
        assert!(dask_deployment("x-1")?.contains("\"deploy_id\": \"x-1-dask\""));
        assert!(testdask_block("x-1")?.contains("\"pb_id\": \"x-1\""));
        Ok(())
    }
}
