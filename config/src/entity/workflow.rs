//! Workflow definitions: the registry file (`workflows.json`) and `/workflow/<type>:<id>:<version>`
//! keys, merged into one registry where the database entry wins.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::{
    ValidationError, parse_object, take_opt_list, take_opt_object, take_str, type_name,
};
use super::processing_block::{WorkflowRef, WorkflowType};

/// An operator-supplied deployment template: a chart and values whose strings are
/// rendered (strict handlebars) by the processing controller.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployTemplate {
    /// Chart (`name` or `repo/name`), itself a template.
    pub chart: String,
    /// Values; string leaves are templates.
    pub values: Map<String, Value>,
}

impl DeployTemplate {
    fn from_map(mut map: Map<String, Value>, field: &str) -> Result<Self, ValidationError> {
        let chart = take_str(&mut map, "chart", &format!("{field}.chart"))?;
        let values =
            take_opt_object(&mut map, "values", &format!("{field}.values"))?.unwrap_or_default();
        Ok(DeployTemplate { chart, values })
    }
}

/// One workflow version and how to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowDefinition {
    /// Which workflow.
    pub workflow: WorkflowRef,
    /// Container image (`<repository path>/<image>:<version>` in the file form).
    pub image: String,
    /// Optional deployment template replacing the default `workflow` chart deployment.
    pub deploy: Option<DeployTemplate>,
}

/// The registry file as read from `SDP_WORKFLOWS_URL`.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowsFile {
    /// Every definition in the file.
    pub definitions: Vec<WorkflowDefinition>,
}

impl WorkflowsFile {
    /// Parse and validate the file form.
    ///
    /// # Errors
    /// A [`ValidationError`] naming the entry and field at fault.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let mut map = parse_object(text)?;
        let mut repos = BTreeMap::new();
        for (i, repo) in take_opt_list(&mut map, "repositories", "repositories")?
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let field = format!("repositories[{i}]");
            let Value::Object(mut repo) = repo else {
                return Err(ValidationError::WrongType {
                    field,
                    expected: "an object",
                    found: type_name(&repo),
                });
            };
            let name = take_str(&mut repo, "name", &format!("{field}.name"))?;
            let path = take_str(&mut repo, "path", &format!("{field}.path"))?;
            repos.insert(name, path);
        }
        let workflows = take_opt_list(&mut map, "workflows", "workflows")?.ok_or(
            ValidationError::MissingField {
                field: "workflows".into(),
            },
        )?;
        let mut definitions = Vec::new();
        for (i, wf) in workflows.into_iter().enumerate() {
            let field = format!("workflows[{i}]");
            let Value::Object(mut wf) = wf else {
                return Err(ValidationError::WrongType {
                    field,
                    expected: "an object",
                    found: type_name(&wf),
                });
            };
            let kind_s = take_str(&mut wf, "type", &format!("{field}.type"))?;
            let kind = WorkflowType::parse(&kind_s).ok_or_else(|| ValidationError::NotAllowed {
                field: format!("{field}.type"),
                allowed: "realtime, batch",
                found: kind_s.clone(),
            })?;
            let id = take_str(&mut wf, "id", &format!("{field}.id"))?;
            let repository = take_str(&mut wf, "repository", &format!("{field}.repository"))?;
            let image = take_str(&mut wf, "image", &format!("{field}.image"))?;
            let repo_path = repos.get(&repository).ok_or_else(|| {
                ValidationError::Other(format!(
                    "{field}.repository {repository:?} is not listed in `repositories`"
                ))
            })?;
            let deploy = take_opt_object(&mut wf, "deploy", &format!("{field}.deploy"))?
                .map(|m| DeployTemplate::from_map(m, &format!("{field}.deploy")))
                .transpose()?;
            let versions = take_opt_list(&mut wf, "versions", &format!("{field}.versions"))?
                .ok_or(ValidationError::MissingField {
                    field: format!("{field}.versions"),
                })?;
            for (j, version) in versions.into_iter().enumerate() {
                let Value::String(version) = version else {
                    return Err(ValidationError::WrongType {
                        field: format!("{field}.versions[{j}]"),
                        expected: "a string",
                        found: type_name(&version),
                    });
                };
                definitions.push(WorkflowDefinition {
                    image: format!("{}/{}:{}", repo_path.trim_end_matches('/'), image, version),
                    workflow: WorkflowRef {
                        kind,
                        id: id.clone(),
                        version,
                    },
                    deploy: deploy.clone(),
                });
            }
        }
        Ok(WorkflowsFile { definitions })
    }
}

impl WorkflowDefinition {
    /// Path of a definition in the database form.
    pub fn path(workflow: &WorkflowRef) -> String {
        format!("/workflow/{workflow}")
    }

    /// The `type:id:version` key of a database-form path (`/workflow/<key>`), the
    /// inverse of [`WorkflowDefinition::path`].
    pub fn key_from_path(path: &str) -> Option<&str> {
        super::id_in(path, "/workflow/", "")
    }

    /// Parse the database form: the key names `type:id:version`, the value holds
    /// `image` (and optionally `deploy`).
    ///
    /// # Errors
    /// A bad key or value.
    pub fn parse_db(key: &str, text: &str) -> Result<Self, ValidationError> {
        let workflow = WorkflowRef::parse_spec(key).ok_or_else(|| {
            ValidationError::Other(format!(
                "workflow key {key:?} is not realtime|batch:<id>:<version>"
            ))
        })?;
        let mut map = parse_object(text)?;
        let image = take_str(&mut map, "image", "image")?;
        let deploy = take_opt_object(&mut map, "deploy", "deploy")?
            .map(|m| DeployTemplate::from_map(m, "deploy"))
            .transpose()?;
        Ok(WorkflowDefinition {
            workflow,
            image,
            deploy,
        })
    }
}

/// Definitions by workflow, file and database merged (database wins).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkflowRegistry {
    file: BTreeMap<(WorkflowType, String, String), WorkflowDefinition>,
    db: BTreeMap<(WorkflowType, String, String), WorkflowDefinition>,
}

fn key_of(w: &WorkflowRef) -> (WorkflowType, String, String) {
    (w.kind, w.id.clone(), w.version.clone())
}

impl WorkflowRegistry {
    /// Replace the file part.
    pub fn set_file(&mut self, file: WorkflowsFile) {
        self.file = file
            .definitions
            .into_iter()
            .map(|d| (key_of(&d.workflow), d))
            .collect();
    }

    /// Add or replace a database definition.
    pub fn set_db(&mut self, def: WorkflowDefinition) {
        self.db.insert(key_of(&def.workflow), def);
    }

    /// Remove a database definition.
    pub fn remove_db(&mut self, workflow: &WorkflowRef) {
        self.db.remove(&key_of(workflow));
    }

    /// Number of distinct definitions.
    pub fn len(&self) -> usize {
        self.file
            .keys()
            .chain(self.db.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }

    /// Every registered workflow (file and database), sorted, each once.
    pub fn workflows(&self) -> impl Iterator<Item = &WorkflowRef> {
        let mut keys: Vec<_> = self.file.keys().chain(self.db.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter().filter_map(|k| {
            self.db
                .get(k)
                .or_else(|| self.file.get(k))
                .map(|d| &d.workflow)
        })
    }

    /// True when there is no definition at all.
    pub fn is_empty(&self) -> bool {
        self.file.is_empty() && self.db.is_empty()
    }

    /// The definition of a workflow, or a sentence saying what is unknown about it.
    ///
    /// # Errors
    /// The reason, in words for the person who created the block.
    pub fn lookup(&self, w: &WorkflowRef) -> Result<&WorkflowDefinition, String> {
        let key = key_of(w);
        if let Some(def) = self.db.get(&key).or_else(|| self.file.get(&key)) {
            return Ok(def);
        }
        let versions: Vec<&str> = self
            .file
            .keys()
            .chain(self.db.keys())
            .filter(|(k, id, _)| *k == w.kind && *id == w.id)
            .map(|(_, _, v)| v.as_str())
            .collect();
        if versions.is_empty() {
            Err(format!(
                "unknown workflow: no {} workflow {:?} is registered (check the workflow name and type)",
                w.kind.as_str(),
                w.id
            ))
        } else {
            Err(format!(
                "unknown version {:?} of {} workflow {:?}; registered versions: {}",
                w.version,
                w.kind.as_str(),
                w.id,
                versions.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"about": ["SDP workflows"], "version": {"date-time": "2019-11-04T19:00:00Z"},
      "repositories": [{"name": "nexus", "path": "registry.example/sdp"}],
      "workflows": [{"type": "realtime", "id": "testdask", "repository": "nexus",
      "image": "workflow-testdask", "versions": ["0.1.0", "0.2.0"]}]}"#;

    #[test]
    fn file_form_gives_one_definition_per_version_with_the_full_image() {
        let f = WorkflowsFile::parse(FILE).unwrap();
        assert_eq!(f.definitions.len(), 2);
        assert_eq!(
            f.definitions[0].image,
            "registry.example/sdp/workflow-testdask:0.1.0"
        );
    }

    #[test]
    fn database_entries_win_and_lookups_explain_misses() {
        let mut reg = WorkflowRegistry::default();
        reg.set_file(WorkflowsFile::parse(FILE).unwrap());
        reg.set_db(
            WorkflowDefinition::parse_db("realtime:testdask:0.1.0", r#"{"image":"mine:1"}"#)
                .unwrap(),
        );
        let w = WorkflowRef::parse_spec("realtime:testdask:0.1.0").unwrap();
        assert_eq!(reg.lookup(&w).unwrap().image, "mine:1");
        let w = WorkflowRef::parse_spec("realtime:testdask:9").unwrap();
        assert!(
            reg.lookup(&w)
                .unwrap_err()
                .contains("registered versions: 0.1.0, 0.2.0")
        );
        let w = WorkflowRef::parse_spec("batch:testdask:0.1.0").unwrap();
        assert!(
            reg.lookup(&w)
                .unwrap_err()
                .contains("no batch workflow \"testdask\"")
        );
    }

    #[test]
    fn invalid_files_say_where() {
        let err = WorkflowsFile::parse(r#"{"repositories":[],"workflows":[{"type":"realtime","id":"x","repository":"r","image":"i","versions":["1"]}]}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("workflows[0].repository \"r\" is not listed"),
            "{err}"
        );
        let err = WorkflowsFile::parse(r#"{"workflows":[{"type":"x"}]}"#).unwrap_err();
        assert!(err.to_string().contains("workflows[0].type"), "{err}");
    }

    #[test]
    fn templates_are_read_from_both_forms() {
        let def = WorkflowDefinition::parse_db(
            "batch:big:1.0",
            r#"{"image":"i","deploy":{"chart":"workflow","values":{"resources.limits.memory":"{{parameters.mem}}"}}}"#,
        )
        .unwrap();
        assert_eq!(
            def.deploy.unwrap().values["resources.limits.memory"],
            "{{parameters.mem}}"
        );
    }
}
