//! The workspace's binaries, as the tests run them: from the target directory of the
//! running test executable (`target/<profile>/`, the test itself being in
//! `target/<profile>/deps/`).
//!
//! `cargo test --workspace` builds every binary before any test runs. `cargo test -p
//! sdp-e2e` builds only this crate, so the first call of [`binary`] in a test process
//! builds the binaries with `cargo build [--release] -p … --bins` when one of them is
//! missing or older than one of its sources (as cargo lists them in `<binary>.d`).
//! Cargo releases its build lock before it runs the tests, so this nested build does not
//! wait for the outer one (it may wait for someone else's build in the same target
//! directory, which is normal). Set `SDP_E2E_NO_BUILD=1` to only check that the
//! binaries exist.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};

/// The binaries the tests run.
const BINARIES: &[&str] = &[
    "sdp-controller",
    "sdp-deployer",
    "sdpcfg",
    "testdask",
    "teststate",
    "testdeploy",
    "fake-helm",
];

/// The packages that hold [`BINARIES`].
const PACKAGES: &[&str] = &[
    "sdp-controller",
    "sdp-deployer",
    "sdp-workflows",
    "sdp-config",
    "sdp-testing",
];

/// What to type when the binaries cannot be made here.
const HINT: &str = "build them first with `cargo build --workspace --bins` \
                    (add --release when testing with --release)";

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `target/<profile>`: the directory of the running test executable, without `deps/`.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running test executable")?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", exe.display()))?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Path of the workspace binary `name` (`sdp-controller`, `sdp-deployer`, `sdpcfg`,
/// `testdask`, `teststate`, `testdeploy`, `fake-helm`), built first if needed (see the
/// module docs).
///
/// # Errors
/// An unknown name, or binaries that are missing or stale and cannot be built.
pub fn binary(name: &str) -> Result<PathBuf> {
    if !BINARIES.contains(&name) {
        bail!("{name} is not one of the workspace binaries the end-to-end tests know");
    }
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = READY
        .get_or_init(|| ensure_built().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(dir.join(name))
}

fn ensure_built() -> Result<PathBuf> {
    let dir = profile_dir()?;
    let stale = stale_binaries(&dir);
    if stale.is_empty() {
        return Ok(dir);
    }
    if std::env::var_os("SDP_E2E_NO_BUILD").is_some_and(|v| !v.is_empty() && v != "0") {
        bail!(
            "{} missing or older than their sources in {} (SDP_E2E_NO_BUILD is set): {HINT}",
            stale.join(", "),
            dir.display()
        );
    }
    build(&dir).with_context(|| format!("cannot build {}: {HINT}", stale.join(", ")))?;
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|n| !dir.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} still missing in {} after cargo build: {HINT}",
            missing.join(", "),
            dir.display()
        );
    }
    Ok(dir)
}

/// Binaries that are missing or older than a source file they are built from. Cargo
/// lists those files in `<binary>.d` next to the binary (the workspace's own sources,
/// exactly the ones compiled in, so test-only files do not count); without that file,
/// an existing binary counts as fresh.
fn stale_binaries(dir: &Path) -> Vec<&'static str> {
    BINARIES
        .iter()
        .copied()
        .filter(|name| {
            let Some(built) = modified(&dir.join(name)) else {
                return true;
            };
            let Ok(dep_info) = std::fs::read_to_string(dir.join(format!("{name}.d"))) else {
                return false;
            };
            dep_info_sources(&dep_info)
                .iter()
                .any(|source| modified(source).is_none_or(|m| m > built))
        })
        .collect()
}

/// The prerequisites of a Makefile-style dep-info file (`target: a.rs b\ c.rs …`).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let Some((_, deps)) = text.lines().next().and_then(|l| l.split_once(": ")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(PathBuf::from(current));
    }
    out
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `cargo build [--release] -p … --bins` into the target directory holding `dir`.
fn build(dir: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").current_dir(repo_root());
    for package in PACKAGES {
        cmd.args(["-p", package]);
    }
    cmd.arg("--bins");
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // The target root is where cargo leaves CACHEDIR.TAG; with `--target <triple>` the
    // profile directory sits one level deeper and the default is right anyway.
    if let Some(target) = dir.parent().filter(|t| t.join("CACHEDIR.TAG").is_file()) {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    eprintln!("sdp-e2e: building the workspace binaries: {cmd:?}");
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_the_sources_with_escaped_spaces() {
        let text = "/t/debug/x: /src/a.rs /src/my\\ dir/b.rs\n\n/src/a.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            vec![
                PathBuf::from("/src/a.rs"),
                PathBuf::from("/src/my dir/b.rs")
            ]
        );
    }
}
