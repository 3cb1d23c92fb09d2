//! Inputs and expectations shared by the unit and integration tests of several crates: a
//! watched entry as etcd reports it, processing blocks in the wire styles the tools write,
//! the controller's STARTING state, and writing several keys in one transaction.

use sdp_config::{Config, Entry};

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

/// Writes (`Some`) or deletes with everything below (`None`) these keys in one
/// transaction, as the tools change several keys at once.
pub async fn write(db: &Config, changes: &[(&str, Option<&str>)]) -> sdp_config::Result<()> {
    let changes: Vec<(String, Option<String>)> = changes
        .iter()
        .map(|(p, v)| (p.to_string(), v.map(str::to_string)))
        .collect();
    db.transact(|t| {
        let changes = changes.clone();
        Box::pin(async move {
            for (path, value) in &changes {
                match value {
                    Some(v) => t.put(path, v)?,
                    None => t.delete_tree(path)?,
                }
            }
            Ok(())
        })
    })
    .await
}

/// Whether `state` is the controller's STARTING state in the Python tools' layout:
/// `{"resources_available": false, "since": <RFC 3339 UTC, seconds>, "status": "STARTING"}`
/// (`since`: when the controller first wrote the block's state, see `docs/states.md`).
pub fn is_starting(state: &str) -> bool {
    let Some(rest) = state.strip_prefix("{\n  \"resources_available\": false,\n  \"since\": \"")
    else {
        return false;
    };
    let Some((since, tail)) = rest.split_once('"') else {
        return false;
    };
    tail == ",\n  \"status\": \"STARTING\"\n}"
        && since.ends_with('Z')
        && chrono::DateTime::parse_from_rfc3339(since).is_ok()
}

#[cfg(test)]
mod tests {
    use super::is_starting;

    #[test]
    fn starting_needs_the_python_layout_and_a_utc_since() {
        let good = "{\n  \"resources_available\": false,\n  \"since\": \"2026-12-01T10:00:00Z\",\n  \"status\": \"STARTING\"\n}";
        assert!(is_starting(good));
        for bad in [
            "{\n  \"resources_available\": false,\n  \"status\": \"STARTING\"\n}",
            "{\n  \"resources_available\": false,\n  \"since\": \"yesterday\",\n  \"status\": \"STARTING\"\n}",
            "{\n  \"resources_available\": false,\n  \"since\": \"2026-12-01T10:00:00+01:00\",\n  \"status\": \"STARTING\"\n}",
            "{\n  \"resources_available\": false,\n  \"since\": \"2026-12-01T10:00:00Z\",\n  \"status\": \"RUNNING\"\n}",
            r#"{"resources_available": false, "since": "2026-12-01T10:00:00Z", "status": "STARTING"}"#,
        ] {
            assert!(!is_starting(bad), "{bad}");
        }
    }
}
