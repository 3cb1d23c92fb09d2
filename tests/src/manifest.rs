//! Rendered Kubernetes manifests: multi-document YAML as `helm template` writes it.

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;
use serde_json::Value;

/// Every non-empty document of a multi-document YAML text, as JSON values.
///
/// # Errors
/// Invalid YAML.
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).context("invalid YAML document")?;
        if value.is_null() {
            continue;
        }
        docs.push(serde_json::to_value(value).context("YAML that is not JSON-like")?);
    }
    Ok(docs)
}

/// The object of `kind` named `name`.
///
/// # Errors
/// None or several such objects (the error lists what there is).
pub fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(anyhow!(
            "expected exactly one {kind} {name}, found {}; the manifest has {}",
            found.len(),
            summary(docs)
        )),
    }
}

/// `Kind/name, …` of every object.
pub fn summary(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `env` of a container as `(name, value)` pairs, in order.
pub fn env_pairs(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The `port` numbers of a Service.
pub fn service_ports(service: &Value) -> Vec<i64> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_skip_comments_and_empty_ones() -> Result<()> {
        let docs = documents(
            "# header\n---\n# Source: x\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - port: 8786\n---\n---\nkind: Pod\nmetadata:\n  name: p\n",
        )?;
        assert_eq!(summary(&docs), "Service/s, Pod/p");
        assert_eq!(service_ports(object(&docs, "Service", "s")?), vec![8786]);
        assert!(object(&docs, "Pod", "q").is_err());
        Ok(())
    }
}
