//! Where a deployment's `chart` comes from. The entry names a chart; only this module
//! turns that name into something helm reads, and only from the configured sources: an
//! entry in etcd can never make the deployer read an arbitrary path or URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A chart name that passed the allow-list, as helm is given it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedChart {
    /// The chart argument for helm: an absolute directory, `repo/name` of a configured
    /// repository, or an allowed `oci://` reference.
    pub reference: String,
    /// The chart's own name (last path segment), for per-chart policies.
    pub name: String,
}

/// The configured chart sources.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChartSources {
    /// Bundled charts: `name` → `<dir>/name`.
    pub charts_dir: PathBuf,
    /// Repositories mapped to local directories (`stable` → the charts directory by default).
    pub repo_dirs: BTreeMap<String, PathBuf>,
    /// Helm repositories by name (URL), added with `helm repo add`.
    pub repos: BTreeMap<String, String>,
    /// Allowed `oci://` prefixes.
    pub oci_allow: Vec<String>,
}

fn is_chart_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 250
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_repo_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !s.contains("..")
}

/// Characters allowed in an OCI reference after its allowed prefix.
fn is_oci_rest(s: &str) -> bool {
    !s.is_empty()
        && !s.contains("..")
        && !s.contains("//")
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/' | b':' | b'@')
        })
}

fn shown(chart: &str) -> String {
    let mut s: String = chart.chars().take(120).collect();
    if s.len() < chart.len() {
        s.push('…');
    }
    format!("{s:?}")
}

impl ChartSources {
    /// Sources from settings; `stable` maps to `charts_dir` unless `repo_dirs` names it.
    pub(crate) fn new(
        charts_dir: PathBuf,
        repo_dirs: Vec<(String, String)>,
        repos: Vec<(String, String)>,
        oci_allow: Vec<String>,
    ) -> Self {
        let mut dirs: BTreeMap<String, PathBuf> = repo_dirs
            .into_iter()
            .map(|(k, v)| (k, PathBuf::from(v)))
            .collect();
        dirs.entry("stable".into())
            .or_insert_with(|| charts_dir.clone());
        let oci_allow = oci_allow
            .into_iter()
            .map(|p| p.trim_end_matches('/').to_string())
            .filter(|p| p.starts_with("oci://") && p.len() > "oci://".len())
            .collect();
        ChartSources {
            charts_dir,
            repo_dirs: dirs,
            repos: repos.into_iter().collect(),
            oci_allow,
        }
    }

    fn local(&self, dir: &Path, name: &str, what: &str) -> Result<ResolvedChart, String> {
        let path = dir.join(name);
        if !path.join("Chart.yaml").is_file() {
            return Err(format!(
                "chart {name:?} not found in {what} ({})",
                dir.display()
            ));
        }
        let abs = std::path::absolute(&path).unwrap_or(path);
        Ok(ResolvedChart {
            reference: abs.to_string_lossy().into_owned(),
            name: name.to_string(),
        })
    }

    /// Resolve a deployment's `chart`.
    ///
    /// # Errors
    /// Why the chart is refused, in words for the state's `message`.
    pub(crate) fn resolve(&self, chart: &str) -> Result<ResolvedChart, String> {
        if let Some(rest) = chart.strip_prefix("oci://") {
            let allowed = self.oci_allow.iter().any(|p| {
                chart
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            });
            if !allowed || !is_oci_rest(rest) {
                return Err(format!(
                    "chart {} is not allowed: OCI charts must be under one of the allowed prefixes ({})",
                    shown(chart),
                    if self.oci_allow.is_empty() {
                        "none are configured; see SDP_HELM_OCI_ALLOW".to_string()
                    } else {
                        self.oci_allow.join(", ")
                    }
                ));
            }
            let name = rest.rsplit('/').next().unwrap_or(rest);
            let name = name.split([':', '@']).next().unwrap_or(name);
            return Ok(ResolvedChart {
                reference: chart.to_string(),
                name: name.to_string(),
            });
        }
        if chart.contains("://")
            || chart.starts_with('/')
            || chart.contains("..")
            || chart.contains('\\')
        {
            return Err(format!(
                "chart {} is not allowed: give a bundled chart name (e.g. \"workflow\") or repo/name of a configured repository, not a path or URL",
                shown(chart)
            ));
        }
        match chart.split_once('/') {
            None => {
                if !is_chart_name(chart) {
                    return Err(format!(
                        "chart {} is not a valid chart name (lowercase letters, digits and '-')",
                        shown(chart)
                    ));
                }
                self.local(&self.charts_dir, chart, "the bundled charts")
            }
            Some((repo, name)) => {
                if !is_repo_name(repo) || !is_chart_name(name) {
                    return Err(format!(
                        "chart {} is not of the form repo/name",
                        shown(chart)
                    ));
                }
                if let Some(dir) = self.repo_dirs.get(repo) {
                    return self.local(dir, name, &format!("repository {repo:?}"));
                }
                if self.repos.contains_key(repo) {
                    return Ok(ResolvedChart {
                        reference: format!("{repo}/{name}"),
                        name: name.to_string(),
                    });
                }
                let mut known: Vec<&str> = self
                    .repo_dirs
                    .keys()
                    .chain(self.repos.keys())
                    .map(String::as_str)
                    .collect();
                known.sort_unstable();
                Err(format!(
                    "chart {}: unknown chart repository {repo:?} (configured: {})",
                    shown(chart),
                    known.join(", ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> (tempfile::TempDir, ChartSources) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["workflow", "dask"] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("Chart.yaml"), "name: x\n").unwrap();
        }
        let s = ChartSources::new(
            dir.path().to_path_buf(),
            vec![],
            vec![("bitnami".into(), "https://charts.example".into())],
            vec!["oci://registry.example/charts".into()],
        );
        (dir, s)
    }

    #[test]
    fn bundled_and_stable_charts_resolve_to_the_charts_dir() {
        let (dir, s) = sources();
        let w = s.resolve("workflow").unwrap();
        assert_eq!(w.reference, dir.path().join("workflow").to_string_lossy());
        assert_eq!(w.name, "workflow");
        let d = s.resolve("stable/dask").unwrap();
        assert_eq!(d.reference, dir.path().join("dask").to_string_lossy());
    }

    #[test]
    fn configured_repositories_and_allowed_oci_prefixes_pass_through() {
        let (_dir, s) = sources();
        assert_eq!(
            s.resolve("bitnami/redis").unwrap().reference,
            "bitnami/redis"
        );
        let oci = s
            .resolve("oci://registry.example/charts/redis:1.2.3")
            .unwrap();
        assert_eq!(
            (oci.reference.as_str(), oci.name.as_str()),
            ("oci://registry.example/charts/redis:1.2.3", "redis")
        );
    }

    #[test]
    fn paths_urls_and_unknown_sources_are_refused() {
        let (_dir, s) = sources();
        let cases = [
            ("../../etc", "not allowed"),
            ("/etc/passwd", "not allowed"),
            ("https://evil.example/chart.tgz", "not allowed"),
            ("file:///etc", "not allowed"),
            ("oci://registry.example/chartsevil/x", "allowed prefixes"),
            ("oci://other.example/charts/x", "allowed prefixes"),
            ("oci://registry.example/charts/../x", "allowed prefixes"),
            ("nosuch", "not found in the bundled charts"),
            ("unknown/dask", "unknown chart repository \"unknown\""),
            ("stable/nosuch", "not found in repository \"stable\""),
            ("Workflow", "not a valid chart name"),
            ("--post-renderer", "not a valid chart name"),
            ("a/b/c", "not of the form repo/name"),
            ("", "not a valid chart name"),
            ("stable\\dask", "not allowed"),
        ];
        for (chart, want) in cases {
            let err = s.resolve(chart).unwrap_err();
            assert!(err.contains(want), "{chart}: {err}");
        }
    }
}
