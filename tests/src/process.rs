//! Child processes of a test (daemons, workflows): output captured in a log file,
//! killed when dropped.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Environment variables a child must not inherit from whoever runs the tests: they
/// would point it at another etcd, namespace or helm.
const SCRUBBED_PREFIXES: &[&str] = &["SDP_", "FAKE_HELM", "ETCD"];
const SCRUBBED: &[&str] = &["RUST_LOG", "KUBECONFIG"];

/// How to start a child: program, arguments, environment (on top of a scrubbed copy of
/// the test's own).
#[derive(Clone, Debug)]
pub struct Spec {
    /// Short name, used for the log file and in reports (`controller`, `testdask`…).
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables set for it.
    pub env: BTreeMap<String, String>,
}

impl Spec {
    /// A child running `program` with no arguments and no extra variables.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>) -> Spec {
        Spec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Spec {
        self.args.push(arg.into());
        self
    }

    /// Adds variables (later ones win).
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Spec {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Adds one variable.
    pub fn env(self, key: impl Into<String>, value: impl Into<String>) -> Spec {
        self.envs([(key.into(), value.into())])
    }

    /// The command, with the inherited environment scrubbed (see [`SCRUBBED_PREFIXES`]).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if SCRUBBED_PREFIXES.iter().any(|p| key_text.starts_with(p))
                || SCRUBBED.contains(&key_text.as_ref())
            {
                cmd.env_remove(&key);
            }
        }
        cmd.args(&self.args).envs(&self.env).stdin(Stdio::null());
        cmd
    }

    /// Runs the command to completion: (status, stdout, stderr).
    ///
    /// # Errors
    /// The program cannot be started.
    pub fn output(&self) -> Result<(ExitStatus, String, String)> {
        let out = self
            .command()
            .output()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// A running child whose stdout and stderr go to a log file. Dropping it kills it
/// (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `spec`, logging into `log` (appended to).
    ///
    /// # Errors
    /// The log cannot be opened or the program cannot be started.
    pub fn spawn(spec: &Spec, log: &Path) -> Result<Proc> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = spec
            .command()
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", spec.program.display()))?;
        Ok(Proc {
            name: spec.name.clone(),
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// The short name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if it has exited.
    ///
    /// # Errors
    /// Waiting failed.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Sends a signal (ignored when it has already exited).
    pub fn signal(&mut self, signal: Signal) {
        if matches!(self.try_status(), Ok(None))
            && let Ok(pid) = i32::try_from(self.pid())
        {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Waits for it to exit, polling, for at most `limit`.
    ///
    /// # Errors
    /// Still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if start.elapsed() > limit {
                bail!(
                    "{} (pid {}) still running after {limit:?}",
                    self.name,
                    self.pid()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails if it has exited.
    ///
    /// # Errors
    /// It exited (the message gives the status).
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.try_status()? {
            None => Ok(()),
            Some(status) => bail!("{} exited unexpectedly ({status})", self.name),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `lines` lines of a log file, ANSI colour codes removed.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = strip_ansi(&String::from_utf8_lossy(&text));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_removed_from_logs() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"),
            "2026  INFO x"
        );
    }
}
