//! `workflows`: the registered workflows, from the database (`/workflow/…` entries) and
//! from the registry file `SDP_WORKFLOWS_URL` names when it is a local file (what the
//! processing controller reads; a database entry wins over the file, as there).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use sdp_config::Config;
use sdp_config::entity::{WorkflowDefinition, WorkflowsFile};
use serde::Serialize;

use crate::args::Format;
use crate::output::Out;

/// One registered workflow version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Registered {
    /// `type:id:version`.
    workflow: String,
    /// Its image, or what is wrong with the entry.
    image: String,
    /// `database`, or the registry file's path.
    source: String,
}

/// The local file `SDP_WORKFLOWS_URL` names (a path or `file://` URL), if any.
fn registry_file() -> Option<String> {
    let url = std::env::var("SDP_WORKFLOWS_URL").ok()?;
    let url = url.trim();
    if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
        return None;
    }
    Some(url.strip_prefix("file://").unwrap_or(url).to_string())
}

/// Run `workflows`.
///
/// # Errors
/// The database cannot be read, the registry file cannot be read or is invalid.
pub async fn workflows(db: &Config, format: Option<Format>, out: Out) -> Result<()> {
    let mut found: BTreeMap<String, Registered> = BTreeMap::new();
    if let Some(path) = registry_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the workflow registry {path}"))?;
        let file = WorkflowsFile::parse(&text)
            .with_context(|| format!("invalid workflow registry {path}"))?;
        for def in file.definitions {
            let workflow = def.workflow.to_string();
            found.insert(
                workflow.clone(),
                Registered {
                    workflow,
                    image: def.image,
                    source: path.clone(),
                },
            );
        }
    }
    let entries = db
        .transact(|t| Box::pin(async move { t.list_values("/workflow/", 0).await }))
        .await?;
    for (path, value) in entries {
        let Some(key) = WorkflowDefinition::key_from_path(&path) else {
            continue;
        };
        let image = match WorkflowDefinition::parse_db(key, &value) {
            Ok(def) => def.image,
            Err(e) => format!("(invalid: {e})"),
        };
        found.insert(
            key.to_string(),
            Registered {
                workflow: key.to_string(),
                image,
                source: "database".into(),
            },
        );
    }
    let list: Vec<Registered> = found.into_values().collect();
    match format {
        Some(Format::Json) => out.line(&serde_json::to_string_pretty(&list)?)?,
        Some(Format::Yaml) => out.line(serde_yaml::to_string(&list)?.trim_end())?,
        None if list.is_empty() => out.line("No workflows registered.")?,
        None => {
            let w = list
                .iter()
                .map(|r| r.workflow.len())
                .chain(["WORKFLOW".len()])
                .max()
                .unwrap_or(0);
            let i = list
                .iter()
                .map(|r| r.image.chars().count())
                .chain(["IMAGE".len()])
                .max()
                .unwrap_or(0);
            out.line(&format!("{:w$}  {:i$}  SOURCE", "WORKFLOW", "IMAGE"))?;
            for r in &list {
                let pad = i - r.image.chars().count();
                out.line(&format!(
                    "{:w$}  {}{}  {}",
                    r.workflow,
                    r.image,
                    " ".repeat(pad),
                    r.source
                ))?;
            }
        }
    }
    Ok(())
}
