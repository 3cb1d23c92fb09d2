//! Everything that happens under `/pb/` and `/deploy/`, recorded from the start by
//! watches (from revision 1, so nothing before the recorder started is missed): the
//! order of state transitions is read from here, not guessed from polling.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Result;
use sdp_config::{Config, WatchEvent};
use tokio::task::JoinHandle;

use crate::wait::{Outcome, eventually};

/// One change: the path and its new value (`None`: deleted), at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// etcd revision of the change.
    pub revision: i64,
    /// Configuration path.
    pub path: String,
    /// New value, or `None` when the key was deleted.
    pub value: Option<String>,
}

/// Records changes until dropped.
#[derive(Debug)]
pub struct History {
    changes: Arc<Mutex<Vec<Change>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The ranges recorded: blocks and deployments, and the keys one level below them.
const RANGES: &[(&str, usize)] = &[("/pb/", 0), ("/pb/", 1), ("/deploy/", 0), ("/deploy/", 1)];

impl History {
    /// Starts recording (from revision 1).
    ///
    /// # Errors
    /// A watch cannot be set up.
    pub fn start(db: &Config) -> Result<History> {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (prefix, levels) in RANGES {
            let mut watch = db.watch(prefix, *levels, Some(1))?;
            let changes = Arc::clone(&changes);
            tasks.push(tokio::spawn(async move {
                while let Some(event) = watch.next().await {
                    let mut changes = changes.lock().unwrap_or_else(PoisonError::into_inner);
                    match event {
                        // Only after a compaction, which the tests' etcd never does.
                        WatchEvent::Listed { entries, .. } => {
                            changes.extend(entries.into_iter().map(|e| Change {
                                revision: e.mod_revision,
                                path: e.path,
                                value: Some(e.value),
                            }));
                        }
                        WatchEvent::Put(e) => changes.push(Change {
                            revision: e.mod_revision,
                            path: e.path,
                            value: Some(e.value),
                        }),
                        WatchEvent::Deleted { path, revision } => changes.push(Change {
                            revision,
                            path,
                            value: None,
                        }),
                    }
                }
            }));
        }
        Ok(History { changes, tasks })
    }

    /// Every change of `path` so far, in revision order.
    pub fn of(&self, path: &str) -> Vec<Change> {
        let changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut of: Vec<Change> = changes.iter().filter(|c| c.path == path).cloned().collect();
        of.sort_by_key(|c| c.revision);
        of
    }

    /// The successive `status` fields of the JSON values of `path`, consecutive repeats
    /// merged; a deletion appears as `"<deleted>"`, a value without status as `"<none>"`.
    pub fn statuses(&self, path: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for change in self.of(path) {
            let status = match &change.value {
                None => "<deleted>".to_string(),
                Some(text) => serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v["status"].as_str().map(String::from))
                    .unwrap_or_else(|| "<none>".into()),
            };
            if out.last() != Some(&status) {
                out.push(status);
            }
        }
        out
    }

    /// One line per change, in revision order (for failure reports): the path and the
    /// value's `status` (or its first 80 characters), or `<deleted>`.
    pub fn summary(&self) -> String {
        let mut all = self
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        all.sort_by_key(|c| c.revision);
        all.iter()
            .map(|c| {
                let what = match &c.value {
                    None => "<deleted>".to_string(),
                    Some(text) => serde_json::from_str::<serde_json::Value>(text)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(|s| format!("status {s}")))
                        .unwrap_or_else(|| {
                            text.chars().take(80).collect::<String>().replace('\n', " ")
                        }),
                };
                format!("{:>5} {} = {what}", c.revision, c.path)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the history has seen `path` deleted (the watches lag etcd a little).
    ///
    /// # Errors
    /// Not within `limit`.
    pub async fn wait_deleted(&self, path: &str, limit: Duration) -> Result<()> {
        eventually(
            limit,
            &format!("the history to record {path} deleted"),
            || async {
                let of = self.of(path);
                Ok(Outcome::from_option(
                    of.last().filter(|c| c.value.is_none()).map(drop),
                    || format!("{of:?}"),
                ))
            },
        )
        .await
    }
}

impl Drop for History {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
