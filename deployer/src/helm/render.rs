//! The render target: instead of installing, `helm template` each release into
//! `<dir>/<namespace>/<release>.yaml` (no cluster needed), with the same interface and
//! so the same state reporting as the cluster target.
//!
//! Each file starts with one comment line, `# sdp-deployer: {…}`, holding the deployment
//! ID, revision (a counter per file) and spec digest; a file without it is not ours and
//! is never replaced or removed.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::cli::HelmCli;
use super::{Helm, HelmError, InstallRequest, ListQuery, ReleaseInfo, ReleaseStatus, Revision};
use crate::naming;

const HEADER: &str = "# sdp-deployer: ";

/// Renders releases into files with `helm template`.
#[derive(Debug)]
pub(crate) struct RenderTarget {
    helm: HelmCli,
    dir: PathBuf,
}

/// The header of a rendered file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Header {
    /// Deployment ID.
    pub deploy_id: String,
    /// Revision (a counter).
    pub revision: i64,
    /// Spec digest.
    pub digest: String,
    /// When it was written.
    pub updated: Option<chrono::DateTime<chrono::Utc>>,
}

/// Read the header of a rendered file; `None` when the file is absent or not ours.
pub(crate) fn read_header(path: &Path) -> Option<Header> {
    let text = std::fs::read_to_string(path).ok()?;
    let first = text.lines().next()?;
    let v: Value = serde_json::from_str(first.strip_prefix(HEADER)?).ok()?;
    Some(Header {
        deploy_id: v["deploy_id"].as_str()?.to_string(),
        revision: v["revision"].as_i64()?,
        digest: v["digest"].as_str().unwrap_or("").to_string(),
        updated: v["updated"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc()),
    })
}

impl RenderTarget {
    /// Render with `helm` into `dir`.
    pub(crate) fn new(helm: HelmCli, dir: PathBuf) -> Self {
        RenderTarget { helm, dir }
    }

    /// Where a release's manifest goes.
    pub(crate) fn path(&self, namespace: &str, release: &str) -> PathBuf {
        rendered_path(&self.dir, namespace, release)
    }
}

/// Where the manifest of `release` goes under `dir`.
pub(crate) fn rendered_path(dir: &Path, namespace: &str, release: &str) -> PathBuf {
    dir.join(namespace).join(format!("{release}.yaml"))
}

/// Write `manifest` as the rendered file of `release` (under `dir`), after a header with
/// the next revision; a file there without a header is not ours and is refused. Shared
/// with `kubernetes-direct` deployments, whose files are then removed like releases'.
pub(crate) fn write_rendered(
    dir: &Path,
    namespace: &str,
    release: &str,
    deploy_id: &str,
    digest: &str,
    manifest: &[u8],
) -> Result<i64, HelmError> {
    let path = rendered_path(dir, namespace, release);
    let previous = read_header(&path);
    if previous.is_none() && path.exists() {
        return Err(HelmError::Local(format!(
            "{} exists and was not written by sdp-deployer",
            path.display()
        )));
    }
    let revision = previous.map_or(1, |h| h.revision + 1);
    let header = json!({
        "deploy_id": deploy_id,
        "release": release,
        "revision": revision,
        "digest": digest,
        "updated": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let mut text = format!("{HEADER}{header}\n").into_bytes();
    text.extend_from_slice(manifest);
    write_atomically(&path, &text)?;
    Ok(revision)
}

fn write_atomically(path: &Path, text: &[u8]) -> Result<(), HelmError> {
    let local =
        |e: std::io::Error| HelmError::Local(format!("cannot write {}: {e}", path.display()));
    let dir = path
        .parent()
        .ok_or_else(|| HelmError::Local(format!("no directory for {}", path.display())))?;
    std::fs::create_dir_all(dir).map_err(local)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".render-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(local)?;
    tmp.write_all(text).map_err(local)?;
    tmp.as_file().sync_all().map_err(local)?;
    tmp.persist(path).map_err(|e| local(e.error))?;
    Ok(())
}

#[async_trait]
impl Helm for RenderTarget {
    fn target(&self) -> &'static str {
        "render"
    }

    async fn upgrade_install(
        &self,
        req: &InstallRequest<'_>,
        cancel: &CancellationToken,
    ) -> Result<i64, HelmError> {
        let path = self.path(req.namespace, req.release);
        if read_header(&path).is_none() && path.exists() {
            // Refused before running helm; `write_rendered` checks again.
            return Err(HelmError::Local(format!(
                "{} exists and was not written by sdp-deployer",
                path.display()
            )));
        }
        let file = self.helm.values_file(req.values)?;
        let mut args: Vec<std::ffi::OsString> =
            ["template", "--namespace", req.namespace, "--values"]
                .iter()
                .map(Into::into)
                .collect();
        args.push(file.path().as_os_str().to_owned());
        args.extend(["--", req.release, req.chart].iter().map(Into::into));
        let manifest = self.helm.call("template", &args, cancel).await?;
        drop(file);
        write_rendered(
            &self.dir,
            req.namespace,
            req.release,
            req.deploy_id,
            req.digest,
            &manifest,
        )
    }

    async fn uninstall(
        &self,
        namespace: &str,
        release: &str,
        _cancel: &CancellationToken,
    ) -> Result<(), HelmError> {
        let path = self.path(namespace, release);
        if read_header(&path).is_none() {
            return Ok(()); // absent, or not ours
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HelmError::Local(format!(
                "cannot remove {}: {e}",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    async fn list(
        &self,
        namespace: &str,
        query: ListQuery<'_>,
        _cancel: &CancellationToken,
    ) -> Result<Vec<ReleaseInfo>, HelmError> {
        let dir = self.dir.join(namespace);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(HelmError::Local(format!(
                    "cannot list {}: {e}",
                    dir.display()
                )));
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".yaml"))
            else {
                continue;
            };
            if name.starts_with('.') || query.name.is_some_and(|n| n != name) {
                continue;
            }
            let header = read_header(&path);
            // Rendered files carry no labels: every rendered release counts as made
            // from this database (the guard has nothing to hold on this target).
            let unlabelled_only = query.database == crate::naming::DbFilter::Unlabelled;
            if query.owned_only && (header.is_none() || unlabelled_only) {
                continue;
            }
            out.push(ReleaseInfo {
                name: name.to_string(),
                status: ReleaseStatus::Deployed,
                revision: header.map_or(1, |h| h.revision),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn history(
        &self,
        namespace: &str,
        release: &str,
        _cancel: &CancellationToken,
    ) -> Result<Vec<Revision>, HelmError> {
        Ok(read_header(&self.path(namespace, release))
            .map(|h| Revision {
                revision: h.revision,
                status: ReleaseStatus::Deployed,
                updated: h.updated,
                description: naming::description(&h.digest),
            })
            .into_iter()
            .collect())
    }

    async fn rollback(
        &self,
        _namespace: &str,
        _release: &str,
        _revision: i64,
        _cancel: &CancellationToken,
    ) -> Result<(), HelmError> {
        Err(HelmError::Local(
            "the render target has no rollback (rendered files are never pending)".into(),
        ))
    }

    async fn refresh_repos(
        &self,
        repos: &[(String, String)],
        cancel: &CancellationToken,
    ) -> Result<(), HelmError> {
        self.helm.refresh_repos(repos, cancel).await
    }
}
