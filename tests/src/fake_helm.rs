//! What the stand-in helm (`testing/src/bin/fake-helm.rs`) recorded in its directory:
//! `releases/<namespace>/<name>.json` and `calls.jsonl`.

use std::path::Path;

use serde_json::Value;

/// Every release the stand-in holds in `namespace`, sorted by name.
pub fn releases(dir: &Path, namespace: &str) -> Vec<Value> {
    let mut out: Vec<Value> = std::fs::read_dir(dir.join("releases").join(namespace))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .filter_map(|text| serde_json::from_str(&text).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a: &Value, b: &Value| a["name"].as_str().cmp(&b["name"].as_str()));
    out
}

/// Names of the releases in every namespace, as `namespace/name`.
pub fn all_release_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for ns in std::fs::read_dir(dir.join("releases"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        for rel in releases(dir, &ns_name) {
            names.push(format!("{ns_name}/{}", rel["name"].as_str().unwrap_or("?")));
        }
    }
    names.sort();
    names
}

/// The recorded calls, in order: `{"argv": [...], "values": [...], …}` each.
pub fn calls(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The argument vector of a recorded call.
pub fn argv(call: &Value) -> Vec<&str> {
    call["argv"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}
