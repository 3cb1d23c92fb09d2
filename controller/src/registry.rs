//! The workflow registry as the controller uses it: file and database definitions
//! merged (the database wins), whether the file has been loaded yet, and lookups whose
//! failures say which workflows do exist.

use std::collections::{BTreeMap, BTreeSet};

use sdp_config::entity::{
    WorkflowDefinition, WorkflowRef, WorkflowRegistry, WorkflowType, WorkflowsFile,
};

/// Outcome of looking a workflow up.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// Known.
    Found(&'a WorkflowDefinition),
    /// Not known, and the registry is complete: the sentence tells the user why.
    Unknown(String),
    /// Not known yet, but the registry file has not been loaded yet: wait.
    NotLoaded,
}

/// File and database definitions.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    merged: WorkflowRegistry,
    file_names: BTreeSet<(WorkflowType, String)>,
    db: BTreeMap<String, WorkflowRef>,
    /// A file is configured but no valid version of it has been read yet.
    file_pending: bool,
}

impl Registry {
    /// An empty registry; `file_configured` makes lookups answer
    /// [`Lookup::NotLoaded`] instead of "unknown" until [`Registry::set_file`].
    pub(crate) fn new(file_configured: bool) -> Self {
        Registry {
            file_pending: file_configured,
            ..Default::default()
        }
    }

    /// Replace the file part (a valid file was read).
    pub(crate) fn set_file(&mut self, file: WorkflowsFile) {
        self.file_names = file
            .definitions
            .iter()
            .map(|d| (d.workflow.kind, d.workflow.id.clone()))
            .collect();
        self.merged.set_file(file);
        self.file_pending = false;
    }

    /// Add or replace the database definition at `/workflow/<key>`.
    ///
    /// # Errors
    /// Why the entry is invalid; a previous definition under the key is removed.
    pub(crate) fn set_db(&mut self, key: &str, value: &str) -> Result<(), String> {
        match WorkflowDefinition::parse_db(key, value) {
            Ok(def) => {
                if let Some(old) = self.db.insert(key.to_string(), def.workflow.clone()) {
                    self.merged.remove_db(&old);
                }
                self.merged.set_db(def);
                Ok(())
            }
            Err(e) => {
                self.remove_db(key);
                Err(e.to_string())
            }
        }
    }

    /// Remove the database definition at `/workflow/<key>`.
    pub(crate) fn remove_db(&mut self, key: &str) {
        if let Some(old) = self.db.remove(key) {
            self.merged.remove_db(&old);
        }
    }

    /// Remove every database definition (before a fresh listing).
    pub(crate) fn clear_db(&mut self) {
        for (_, w) in std::mem::take(&mut self.db) {
            self.merged.remove_db(&w);
        }
    }

    /// Number of distinct definitions.
    pub(crate) fn len(&self) -> usize {
        self.merged.len()
    }

    /// Find a workflow.
    pub(crate) fn lookup(&self, w: &WorkflowRef) -> Lookup<'_> {
        match self.merged.lookup(w) {
            Ok(def) => Lookup::Found(def),
            Err(_) if self.file_pending => Lookup::NotLoaded,
            Err(reason) => {
                let ids: BTreeSet<&str> = self
                    .file_names
                    .iter()
                    .filter(|(k, _)| *k == w.kind)
                    .map(|(_, id)| id.as_str())
                    .chain(
                        self.db
                            .values()
                            .filter(|d| d.kind == w.kind)
                            .map(|d| d.id.as_str()),
                    )
                    .collect();
                if ids.contains(w.id.as_str()) {
                    Lookup::Unknown(reason)
                } else if ids.is_empty() {
                    Lookup::Unknown(format!(
                        "{reason}; no {} workflows are registered",
                        w.kind.as_str()
                    ))
                } else {
                    let list: Vec<&str> = ids.into_iter().collect();
                    Lookup::Unknown(format!(
                        "{reason}; registered {} workflows: {}",
                        w.kind.as_str(),
                        list.join(", ")
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"repositories": [{"name": "local", "path": "sdp"}],
      "workflows": [{"type": "realtime", "id": "testdask", "repository": "local", "image": "workflow-testdask", "versions": ["0.1.0"]},
                    {"type": "realtime", "id": "testdeploy", "repository": "local", "image": "workflow-testdeploy", "versions": ["0.1.0"]}]}"#;

    fn spec(s: &str) -> WorkflowRef {
        WorkflowRef::parse_spec(s).unwrap()
    }

    #[test]
    fn lookups_wait_for_the_file_then_name_what_exists() {
        let mut reg = Registry::new(true);
        assert!(matches!(
            reg.lookup(&spec("realtime:testdask:0.1.0")),
            Lookup::NotLoaded
        ));
        reg.set_file(WorkflowsFile::parse(FILE).unwrap());
        assert!(
            matches!(reg.lookup(&spec("realtime:testdask:0.1.0")), Lookup::Found(d) if d.image == "sdp/workflow-testdask:0.1.0")
        );
        let Lookup::Unknown(why) = reg.lookup(&spec("realtime:nope:1")) else {
            panic!()
        };
        assert!(
            why.contains("registered realtime workflows: testdask, testdeploy"),
            "{why}"
        );
        let Lookup::Unknown(why) = reg.lookup(&spec("batch:nope:1")) else {
            panic!()
        };
        assert!(why.contains("no batch workflows are registered"), "{why}");
        let Lookup::Unknown(why) = reg.lookup(&spec("realtime:testdask:9.9")) else {
            panic!()
        };
        assert!(why.contains("registered versions: 0.1.0"), "{why}");
    }

    #[test]
    fn database_entries_win_and_can_be_removed_or_invalidated() {
        let mut reg = Registry::new(false);
        reg.set_file(WorkflowsFile::parse(FILE).unwrap());
        reg.set_db("realtime:testdask:0.1.0", r#"{"image": "mine:1"}"#)
            .unwrap();
        assert!(
            matches!(reg.lookup(&spec("realtime:testdask:0.1.0")), Lookup::Found(d) if d.image == "mine:1")
        );
        let err = reg.set_db("realtime:testdask:0.1.0", "[]").unwrap_err();
        assert!(err.contains("must be a JSON object"), "{err}");
        assert!(
            matches!(reg.lookup(&spec("realtime:testdask:0.1.0")), Lookup::Found(d) if d.image == "sdp/workflow-testdask:0.1.0")
        );
        reg.set_db("batch:only-db:2", r#"{"image": "x:2"}"#)
            .unwrap();
        assert!(matches!(
            reg.lookup(&spec("batch:only-db:2")),
            Lookup::Found(_)
        ));
        reg.remove_db("batch:only-db:2");
        assert!(matches!(
            reg.lookup(&spec("batch:only-db:2")),
            Lookup::Unknown(_)
        ));
    }
}
