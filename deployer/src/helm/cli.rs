//! The real helm CLI (v4): releases in the cluster of the current kubeconfig.
//!
//! Every argument is one argv element; user data reaches helm only inside the values file
//! (mode 0600 in the deployer's private values directory, removed after the call; see
//! [`super::values_dir`]). The release name and
//! chart come from [`crate::naming`] and [`crate::chart`], and positional arguments follow
//! `--`, so nothing can be read as a flag.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::process::{self, Limits, RunError};
use super::values_dir::ValuesDir;
use super::{Helm, HelmError, InstallRequest, ListQuery, ReleaseInfo, ReleaseStatus, Revision};
use crate::naming;

/// Releases per `helm list` page.
const PAGE: usize = 256;

/// The helm binary with the deployer's limits.
#[derive(Debug)]
pub(crate) struct HelmCli {
    program: PathBuf,
    limits: Limits,
    owner: naming::Owner,
    repos_added: Mutex<HashSet<(String, String)>>,
    values: Arc<ValuesDir>,
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A Go duration for helm's `--timeout`.
pub(crate) fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

#[derive(Deserialize)]
struct ListElement {
    name: String,
    #[serde(default)]
    revision: Value,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct HistoryElement {
    revision: i64,
    #[serde(default)]
    updated: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    description: String,
}

fn as_revision(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Parse `helm list -o json`.
///
/// # Errors
/// Not the expected JSON.
pub(crate) fn parse_list(stdout: &[u8]) -> Result<Vec<ReleaseInfo>, HelmError> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<ListElement> = serde_json::from_str(text).map_err(|e| HelmError::BadOutput {
        operation: "list",
        detail: e.to_string(),
    })?;
    Ok(items
        .into_iter()
        .map(|i| ReleaseInfo {
            revision: as_revision(&i.revision),
            status: ReleaseStatus::parse(&i.status),
            name: i.name,
        })
        .collect())
}

/// Parse `helm history -o json`, oldest first.
///
/// # Errors
/// Not the expected JSON.
pub(crate) fn parse_history(stdout: &[u8]) -> Result<Vec<Revision>, HelmError> {
    let items: Vec<HistoryElement> =
        serde_json::from_slice(stdout).map_err(|e| HelmError::BadOutput {
            operation: "history",
            detail: e.to_string(),
        })?;
    let mut out: Vec<Revision> = items
        .into_iter()
        .map(|h| Revision {
            revision: h.revision,
            status: ReleaseStatus::parse(&h.status),
            updated: chrono::DateTime::parse_from_rfc3339(&h.updated)
                .ok()
                .map(|t| t.to_utc()),
            description: h.description,
        })
        .collect();
    out.sort_by_key(|r| r.revision);
    Ok(out)
}

impl HelmCli {
    /// Use `program` with these limits, labelling releases for `owner` and writing values
    /// files into `values`.
    pub(crate) fn new(
        program: PathBuf,
        limits: Limits,
        owner: naming::Owner,
        values: Arc<ValuesDir>,
    ) -> Self {
        HelmCli {
            program,
            limits,
            owner,
            repos_added: Mutex::new(HashSet::new()),
            values,
        }
    }

    /// The values document in a private file (0600), deleted when dropped.
    ///
    /// # Errors
    /// The file cannot be created or written.
    pub(crate) fn values_file(&self, values: &Value) -> Result<tempfile::NamedTempFile, HelmError> {
        self.values.write(values)
    }

    /// Run helm; stdout on success.
    ///
    /// # Errors
    /// [`HelmError`] for every way it can fail.
    pub(crate) async fn call(
        &self,
        operation: &'static str,
        args: &[OsString],
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, HelmError> {
        match process::run(&self.program, args, self.limits, cancel).await {
            Ok(done) if done.status.success() => Ok(done.stdout),
            Ok(done) => {
                let mut message = process::trim_stderr(&done.stderr);
                if message.is_empty() {
                    message = format!(
                        "helm {operation} failed ({}) without a message",
                        done.status
                    );
                }
                Err(HelmError::Failed { operation, message })
            }
            Err(RunError::Spawn(source)) => Err(HelmError::Spawn {
                program: self.program.display().to_string(),
                source,
            }),
            Err(RunError::TimedOut) => Err(HelmError::TimedOut {
                operation,
                after: self.limits.timeout,
            }),
            Err(RunError::Cancelled) => Err(HelmError::Cancelled { operation }),
            Err(RunError::Wait(e)) => Err(HelmError::Local(format!(
                "waiting for helm {operation}: {e}"
            ))),
        }
    }

    fn timeout_arg(&self) -> String {
        go_duration(self.limits.timeout)
    }
}

#[async_trait]
impl Helm for HelmCli {
    fn target(&self) -> &'static str {
        "cluster"
    }

    async fn upgrade_install(
        &self,
        req: &InstallRequest<'_>,
        cancel: &CancellationToken,
    ) -> Result<i64, HelmError> {
        let file = self.values_file(req.values)?;
        let mut args = os(&[
            "upgrade",
            "--install",
            "--namespace",
            req.namespace,
            "--values",
        ]);
        args.push(file.path().as_os_str().to_owned());
        args.extend(os(&[
            "--labels",
            &self
                .owner
                .labels_arg(req.deploy_id, req.release, req.database),
            "--description",
            &naming::description(req.digest),
            "--timeout",
            &self.timeout_arg(),
            "--output",
            "json",
            "--",
            req.release,
            req.chart,
        ]));
        let stdout = self.call("upgrade", &args, cancel).await?;
        drop(file);
        let revision = serde_json::from_slice::<Value>(&stdout)
            .ok()
            .and_then(|v| v.get("version").and_then(Value::as_i64));
        match revision {
            Some(r) => Ok(r),
            None => {
                tracing::warn!(
                    release = req.release,
                    "helm upgrade printed no revision; asking history"
                );
                let history = self
                    .history(req.namespace, req.release, cancel)
                    .await
                    .unwrap_or_default();
                Ok(history.last().map_or(0, |r| r.revision))
            }
        }
    }

    async fn uninstall(
        &self,
        namespace: &str,
        release: &str,
        cancel: &CancellationToken,
    ) -> Result<(), HelmError> {
        let args = os(&[
            "uninstall",
            "--namespace",
            namespace,
            "--ignore-not-found",
            "--timeout",
            &self.timeout_arg(),
            "--",
            release,
        ]);
        self.call("uninstall", &args, cancel).await.map(drop)
    }

    async fn list(
        &self,
        namespace: &str,
        query: ListQuery<'_>,
        cancel: &CancellationToken,
    ) -> Result<Vec<ReleaseInfo>, HelmError> {
        let mut out = Vec::new();
        loop {
            let offset = out.len().to_string();
            let max = PAGE.to_string();
            let mut args = os(&[
                "list",
                "--namespace",
                namespace,
                "--output",
                "json",
                "--max",
                &max,
                "--offset",
                &offset,
            ]);
            if let Some(name) = query.name {
                args.extend(os(&["--filter", &format!("^{name}$")]));
            }
            if query.owned_only {
                args.extend(os(&["--selector", &self.owner.selector(query.database)]));
            }
            let page = parse_list(&self.call("list", &args, cancel).await?)?;
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    async fn history(
        &self,
        namespace: &str,
        release: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<Revision>, HelmError> {
        let args = os(&[
            "history",
            "--namespace",
            namespace,
            "--output",
            "json",
            "--max",
            "256",
            "--",
            release,
        ]);
        match self.call("history", &args, cancel).await {
            Ok(stdout) => parse_history(&stdout),
            Err(HelmError::Failed { message, .. }) if message.contains("release: not found") => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    async fn rollback(
        &self,
        namespace: &str,
        release: &str,
        revision: i64,
        cancel: &CancellationToken,
    ) -> Result<(), HelmError> {
        let rev = revision.to_string();
        let args = os(&[
            "rollback",
            "--namespace",
            namespace,
            "--timeout",
            &self.timeout_arg(),
            "--",
            release,
            &rev,
        ]);
        self.call("rollback", &args, cancel).await.map(drop)
    }

    async fn refresh_repos(
        &self,
        repos: &[(String, String)],
        cancel: &CancellationToken,
    ) -> Result<(), HelmError> {
        if repos.is_empty() {
            return Ok(());
        }
        for (name, url) in repos {
            let key = (name.clone(), url.clone());
            let known = self
                .repos_added
                .lock()
                .map(|s| s.contains(&key))
                .unwrap_or(false);
            if !known {
                self.call(
                    "repo add",
                    &os(&["repo", "add", "--force-update", "--", name, url]),
                    cancel,
                )
                .await?;
                if let Ok(mut s) = self.repos_added.lock() {
                    s.insert(key);
                }
            }
        }
        let mut args = os(&["repo", "update", "--"]);
        args.extend(repos.iter().map(|(n, _)| OsString::from(n)));
        self.call("repo update", &args, cancel).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_output_of_helm_v4_parses_with_string_revisions() {
        let out = br#"[{"name":"a","namespace":"sdp","revision":"3","updated":"2024-05-20 10:11:12.1 +0000 UTC","status":"pending-upgrade","chart":"dask-0.1.0","app_version":""}]"#;
        let list = parse_list(out).unwrap();
        assert_eq!(
            list,
            vec![ReleaseInfo {
                name: "a".into(),
                status: ReleaseStatus::PendingUpgrade,
                revision: 3
            }]
        );
        assert!(parse_list(b"").unwrap().is_empty());
        assert!(parse_list(b"oops").is_err());
    }

    #[test]
    fn history_output_parses_oldest_first() {
        let out = br#"[{"revision":2,"updated":"2024-05-20T10:11:12.123456789Z","status":"deployed","chart":"c","app_version":"","description":"x"},
                       {"revision":1,"updated":"2024-05-20T10:00:00Z","status":"superseded","chart":"c","app_version":"","description":"Install complete"}]"#;
        let h = parse_history(out).unwrap();
        assert_eq!(h.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(h[1].status, ReleaseStatus::Deployed);
        assert!(h[1].updated.is_some());
    }
}
