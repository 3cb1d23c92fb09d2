//! Inputs shared by the unit and integration tests of several crates: a watched entry as
//! etcd reports it, and processing blocks in the wire styles the tools write.

use sdp_config::Entry;

/// A watched key as etcd reports it, created and last changed at `rev`.
pub fn entry(path: &str, value: &str, rev: i64) -> Entry {
    Entry {
        path: path.into(),
        value: value.into(),
        mod_revision: rev,
        create_revision: rev,
    }
}

/// A 2019-style block (`pb_id`) of the workflow `realtime:testdask:0.1.0`, on one line.
pub fn realtime_block(id: &str) -> String {
    format!(
        r#"{{"pb_id": "{id}", "sbi_id": null, "workflow": {{"id": "testdask", "type": "realtime", "version": "0.1.0"}}, "parameters": {{}}, "scan_parameters": {{}}}}"#
    )
}

/// A 2021-style block (`id`) of `batch:teststate:0.1.0` depending on `deps` (each of type
/// `calibration`).
pub fn batch_block(id: &str, deps: &[&str]) -> String {
    let deps: Vec<String> = deps
        .iter()
        .map(|d| format!(r#"{{"pb_id": "{d}", "type": ["calibration"]}}"#))
        .collect();
    format!(
        r#"{{"id": "{id}", "sbi_id": null, "workflow": {{"type": "batch", "id": "teststate", "version": "0.1.0"}}, "parameters": {{}}, "dependencies": [{}]}}"#,
        deps.join(", ")
    )
}
