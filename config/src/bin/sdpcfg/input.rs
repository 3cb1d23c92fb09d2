//! Turn a checked [`Command`] into an [`Action`]: read `-` from standard input, parse
//! parameters (YAML or JSON) and build the entities, all before connecting to etcd.

use std::io::Read;

use anyhow::{Context, Result, bail};
use sdp_config::entity::{Deployment, WorkflowRef, validate_deploy_id};
use serde_json::{Map, Value, json};

use crate::args::{Command, Format, GuardAction, StatusOptions, workflow_ref};

/// What to do, with every input resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Print a key's value, once or on every change.
    Get { path: String, watch: bool },
    /// List keys (and values), once or on every change.
    List {
        path: String,
        values: bool,
        recursive: bool,
        watch: bool,
    },
    /// Delete a key, or a subtree.
    Delete { path: String, recursive: bool },
    /// Create a key with this exact text.
    Create { path: String, value: String },
    /// Replace a key's value with this exact text.
    Update { path: String, value: String },
    /// Edit a value in `$EDITOR`.
    Edit { path: String },
    /// Create a processing block with a new ID; maybe wait until it starts.
    Process {
        workflow: WorkflowRef,
        parameters: Map<String, Value>,
        wait: Option<std::time::Duration>,
    },
    /// Create a deployment: its path and its formatted value.
    Deploy { path: String, value: String },
    /// Show the blocks and deployments.
    Status(StatusOptions),
    /// List the registered workflows.
    Workflows { format: Option<Format> },
    /// Delete these deployments' states, if every deployment exists.
    Retry { ids: Vec<String> },
    /// Show, adopt or prune what the deployer's guard holds.
    Guard(GuardAction),
}

/// Resolve a command's input. `stdin` is read only when an argument is `-`.
///
/// # Errors
/// Unreadable standard input, parameters that are not a YAML/JSON mapping, or a
/// deployment the library refuses.
pub fn prepare(
    command: Command,
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<Action> {
    // At most one argument is read from stdin: each arm below calls this once at most.
    let resolve = move |text: String| -> Result<String> {
        if text == "-" {
            stdin().context("cannot read standard input")
        } else {
            Ok(text)
        }
    };
    Ok(match command {
        Command::Get { path, watch } => Action::Get { path, watch },
        Command::List {
            path,
            values,
            recursive,
            watch,
        } => Action::List {
            path,
            values,
            recursive,
            watch,
        },
        Command::Delete { path, recursive } => Action::Delete { path, recursive },
        Command::Edit { path } => Action::Edit { path },
        Command::Create { path, value } => Action::Create {
            path,
            value: resolve(value)?,
        },
        Command::Update { path, value } => Action::Update {
            path,
            value: resolve(value)?,
        },
        Command::Status(options) => Action::Status(options),
        Command::Workflows { format } => Action::Workflows { format },
        Command::Guard(action) => Action::Guard(action),
        Command::Retry { mut ids } => {
            for id in &ids {
                validate_deploy_id(id).with_context(|| format!("cannot retry {id:?}"))?;
            }
            let mut seen = std::collections::HashSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            if ids.len() > crate::commands::MAX_RETRY {
                bail!(
                    "retry takes at most {} deployments at once, not {}",
                    crate::commands::MAX_RETRY,
                    ids.len()
                );
            }
            Action::Retry { ids }
        }
        Command::Process {
            workflow,
            parameters,
            wait,
        } => {
            let workflow = workflow_ref(&workflow).map_err(anyhow::Error::msg)?;
            let parameters = match parameters {
                Some(text) => mapping(&resolve(text)?, "parameters")?,
                None => Map::new(),
            };
            Action::Process {
                workflow,
                parameters,
                wait,
            }
        }
        Command::Deploy {
            kind,
            name,
            parameters,
        } => {
            let args = mapping(&resolve(parameters)?, "deployment parameters")?;
            // Written as the Python tool writes `Deployment(name, type, args)`: exactly
            // these three fields, args as given.
            let value = json!({"deploy_id": name, "type": kind, "args": args});
            Deployment::from_value(value.clone(), Some(&name))
                .with_context(|| format!("invalid deployment {name}"))?;
            Action::Deploy {
                path: Deployment::path(&name),
                value: sdp_config::json::to_python_string(&value),
            }
        }
    })
}

/// Standard input, whole.
pub fn read_stdin() -> std::io::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text)
}

/// Parse YAML (JSON is YAML too) that must be a mapping; empty text or `null` is an
/// empty mapping.
///
/// # Errors
/// Not YAML, or YAML that is not a mapping.
pub fn mapping(text: &str, what: &str) -> Result<Map<String, Value>> {
    let value: Value =
        serde_yaml::from_str(text).with_context(|| format!("{what} are not valid YAML or JSON"))?;
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => bail!(
            "{what} must be a mapping like '{{key: value}}', not {}",
            kind_of(&other)
        ),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_stdin() -> std::io::Result<String> {
        panic!("stdin read although no argument is '-'")
    }

    #[test]
    fn parameters_may_be_yaml_or_json_mappings() {
        let yaml = mapping("n: 2\nname: x\nlist: [1, a]", "parameters").unwrap();
        let json = mapping(r#"{"n": 2, "name": "x", "list": [1, "a"]}"#, "parameters").unwrap();
        assert_eq!(yaml, json);
        assert!(mapping("", "parameters").unwrap().is_empty());
        assert_eq!(
            mapping("[1, 2]", "parameters").unwrap_err().to_string(),
            "parameters must be a mapping like '{key: value}', not a list"
        );
        assert!(
            mapping("{a: [", "parameters")
                .unwrap_err()
                .to_string()
                .starts_with("parameters are not valid YAML")
        );
    }

    #[test]
    fn dash_reads_stdin_and_nothing_else_does() {
        let action = prepare(
            Command::Create {
                path: "/x".into(),
                value: "-".into(),
            },
            || Ok(" a \n".into()),
        )
        .unwrap();
        assert_eq!(
            action,
            Action::Create {
                path: "/x".into(),
                value: " a \n".into()
            }
        );
        let action = prepare(
            Command::Create {
                path: "/x".into(),
                value: "v".into(),
            },
            no_stdin,
        )
        .unwrap();
        assert_eq!(
            action,
            Action::Create {
                path: "/x".into(),
                value: "v".into()
            }
        );
    }

    #[test]
    fn deployments_are_validated_and_written_like_python() {
        let command = Command::Deploy {
            kind: "helm".into(),
            name: "d1".into(),
            parameters: "{chart: c}".into(),
        };
        let Action::Deploy { path, value } = prepare(command, no_stdin).unwrap() else {
            panic!()
        };
        assert_eq!(path, "/deploy/d1");
        assert_eq!(
            value,
            "{\n  \"args\": {\n    \"chart\": \"c\"\n  },\n  \"deploy_id\": \"d1\",\n  \"type\": \"helm\"\n}"
        );
        let command = Command::Deploy {
            kind: "helmet".into(),
            name: "d1".into(),
            parameters: "{}".into(),
        };
        let err = format!("{:#}", prepare(command, no_stdin).unwrap_err());
        assert!(
            err.contains("must be one of helm, process-direct, kubernetes-direct"),
            "{err}"
        );
    }
}
