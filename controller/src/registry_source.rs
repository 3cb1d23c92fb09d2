//! Loading the workflow registry file from `SDP_WORKFLOWS_URL` (a path, `file://…` or
//! `http(s)://…`): at start, every `SDP_WORKFLOWS_REFRESH` seconds and, for a local
//! file, as soon as its modification time or size changes (polled every second, which
//! also follows Kubernetes ConfigMap updates that swap a symlink). Invalid content
//! keeps the last good registry.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use sdp_config::entity::WorkflowsFile;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How often a local file's modification time is checked.
const FILE_POLL: Duration = Duration::from_secs(1);
/// Longest wait between attempts while no valid registry has been read yet.
const FIRST_LOAD_RETRY_MAX: Duration = Duration::from_secs(30);
/// Timeout of one HTTP download.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the registry comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A local file.
    File(PathBuf),
    /// An HTTP(S) URL.
    Http {
        url: String,
        client: reqwest::Client,
    },
}

impl Source {
    /// Interpret `SDP_WORKFLOWS_URL`; `None` when it is empty.
    ///
    /// # Errors
    /// [`Error::InvalidWorkflowsUrl`] for another URL scheme or an HTTP client that
    /// cannot be built.
    pub(crate) fn from_url(url: &str) -> Result<Option<Source>> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            // reqwest is built without a default crypto provider (see Cargo.toml).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .map_err(|e| Error::InvalidWorkflowsUrl {
                    url: url.to_string(),
                    reason: format!("cannot build an HTTP client: {e}"),
                })?;
            return Ok(Some(Source::Http {
                url: url.to_string(),
                client,
            }));
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(Some(Source::File(PathBuf::from(path))));
        }
        if url.contains("://") {
            return Err(Error::InvalidWorkflowsUrl {
                url: url.to_string(),
                reason: "expected a path, file://<path>, http://… or https://…".into(),
            });
        }
        Ok(Some(Source::File(PathBuf::from(url))))
    }

    fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Http { url, .. } => url.clone(),
        }
    }

    /// Modification time and size of a local file (`None` for HTTP or a missing file).
    fn stamp(&self) -> Option<(SystemTime, u64)> {
        match self {
            Source::File(p) => std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
            Source::Http { .. } => None,
        }
    }

    /// Read the current content.
    ///
    /// # Errors
    /// Why it could not be read, in words.
    pub(crate) async fn fetch(&self) -> std::result::Result<String, String> {
        match self {
            Source::File(p) => tokio::fs::read_to_string(p)
                .await
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
            Source::Http { url, client } => {
                let resp = client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("cannot download {url}: {e}"))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(format!("cannot download {url}: HTTP status {status}"));
                }
                resp.text()
                    .await
                    .map_err(|e| format!("cannot download {url}: {e}"))
            }
        }
    }
}

/// Load the registry now and whenever it changes, calling `on_load` with each new valid
/// version, until `cancel` fires.
pub(crate) async fn follow(
    source: Source,
    refresh: Duration,
    cancel: CancellationToken,
    on_load: impl Fn(WorkflowsFile),
) {
    let name = source.describe();
    let mut last_text: Option<String> = None;
    let mut last_stamp = None;
    let mut loaded = false;
    let mut retry = Duration::from_secs(1);
    let mut next_load = Instant::now();
    loop {
        let stamp = source.stamp();
        let changed = matches!(source, Source::File(_)) && stamp != last_stamp;
        if changed || Instant::now() >= next_load {
            last_stamp = stamp;
            match source.fetch().await {
                Ok(text) => {
                    if last_text.as_deref() != Some(text.as_str()) {
                        match WorkflowsFile::parse(&text) {
                            Ok(file) => {
                                tracing::info!(source = %name, definitions = file.definitions.len(), "workflow registry loaded");
                                on_load(file);
                                loaded = true;
                            }
                            Err(e) if loaded => {
                                tracing::error!(source = %name, error = %e, "invalid workflow registry; keeping the last good one")
                            }
                            Err(e) => {
                                tracing::error!(source = %name, error = %e, "invalid workflow registry; only /workflow/ definitions are usable until it is fixed")
                            }
                        }
                        last_text = Some(text);
                    }
                    next_load = Instant::now() + refresh;
                }
                Err(e) => {
                    let wait = if loaded { refresh } else { retry };
                    retry = (retry * 2).min(FIRST_LOAD_RETRY_MAX).min(refresh);
                    tracing::warn!(source = %name, error = %e, retry_in_s = wait.as_secs(), "workflow registry not readable; keeping the last good one");
                    next_load = Instant::now() + wait;
                }
            }
        }
        let sleep = match source {
            Source::File(_) => FILE_POLL.min(next_load.saturating_duration_since(Instant::now())),
            Source::Http { .. } => next_load.saturating_duration_since(Instant::now()),
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(sleep.max(Duration::from_millis(10))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn urls_are_paths_file_urls_or_http() {
        assert!(Source::from_url("").unwrap().is_none());
        assert!(
            matches!(Source::from_url("/etc/sdp/workflows.json").unwrap(), Some(Source::File(p)) if p.as_path() == std::path::Path::new("/etc/sdp/workflows.json"))
        );
        assert!(
            matches!(Source::from_url("file:///x.json").unwrap(), Some(Source::File(p)) if p.as_path() == std::path::Path::new("/x.json"))
        );
        assert!(matches!(
            Source::from_url("https://example.org/w.json").unwrap(),
            Some(Source::Http { .. })
        ));
        let err = Source::from_url("ftp://example.org/w.json").unwrap_err();
        assert!(err.to_string().contains("expected a path"), "{err}");
    }

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_an_invalid_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workflows.json");
        let file = |ids: &[&str]| {
            let wfs: Vec<String> = ids
                .iter()
                .map(|id| format!(r#"{{"type": "batch", "id": "{id}", "repository": "r", "image": "i", "versions": ["1"]}}"#))
                .collect();
            format!(
                r#"{{"repositories": [{{"name": "r", "path": "p"}}], "workflows": [{}]}}"#,
                wfs.join(",")
            )
        };
        std::fs::write(&path, file(&["a"])).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(follow(
            Source::File(path.clone()),
            Duration::from_secs(3600),
            cancel.clone(),
            {
                let seen = Arc::clone(&seen);
                move |f: WorkflowsFile| seen.lock().unwrap().push(f.definitions.len())
            },
        ));
        let wait_for = |n: usize| {
            let seen = Arc::clone(&seen);
            async move {
                for _ in 0..100 {
                    if seen.lock().unwrap().len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("registry not reloaded: {:?}", seen.lock().unwrap());
            }
        };
        wait_for(1).await;
        std::fs::write(&path, "{not json").unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::write(&path, file(&["a", "bb"])).unwrap();
        wait_for(2).await;
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    }
}
