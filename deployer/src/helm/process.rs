//! Running one helm command: argv elements only (never a shell), its own process group,
//! output captured with caps, and a deadline after which the whole group gets SIGTERM,
//! then SIGKILL. The child never sees the deployer's `SDP_*` settings (etcd credentials
//! among them) and dies with the deployer, even when the deployer is SIGKILLed.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Largest stdout kept (rendered manifests can be large).
const STDOUT_CAP: usize = 256 * 1024 * 1024;
/// Largest stderr kept (the end is what matters: helm prints its error last).
const STDERR_CAP: usize = 64 * 1024;
/// How long to wait for output pipes to close after the process is gone.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// A finished command.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (capped).
    pub stdout: Vec<u8>,
    /// Standard error (the last [`STDERR_CAP`] bytes).
    pub stderr: String,
}

/// Why a command did not finish by itself.
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// It passed the deadline and was stopped.
    TimedOut,
    /// `cancel` fired and it was stopped.
    Cancelled,
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// Limits of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Deadline for the command.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

async fn read_capped<R: AsyncRead + Unpin>(
    reader: Option<R>,
    cap: usize,
    keep_tail: bool,
) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > cap {
                    if keep_tail {
                        let cut = out.len() - cap;
                        out.drain(..cut);
                    } else {
                        out.truncate(cap);
                    }
                }
            }
        }
    }
    out
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // The child leads its own group (process_group(0)), so this reaches anything it
        // started too. ESRCH (already gone) is fine.
        let _ = killpg(group, signal);
    }
}

/// SIGTERM to the group, wait up to `grace`, then SIGKILL and reap.
async fn stop(child: &mut Child, group: Option<Pid>, grace: Duration) {
    signal_group(group, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
    }
    // Also whatever the leader left behind in its group.
    signal_group(group, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// Variables of the deployer's environment a helm child must not see: every `SDP_*`
/// setting (`SDP_CONFIG_PASSWORD`, `SDP_CONFIG_USERNAME`, …). helm needs none of them.
fn withheld_env() -> impl Iterator<Item = OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.as_encoded_bytes().starts_with(b"SDP_"))
}

/// Make the child die (SIGKILL) when the deployer dies, however it dies.
///
/// `kill_on_drop` and the stop path above only run while the deployer runs; after a
/// SIGKILL of the deployer a helm child would go on working on a release that the next
/// deployer then sees `pending-*` and cannot tell from a live call. With this, a
/// `pending-*` release left by an ended term has no helm behind it (see
/// `decide::Policy::dead_term_wait`). Linux delivers the signal when the *thread* that
/// forked exits; helm calls are spawned from runtime worker threads, which live as long
/// as the process.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The deployer died between fork and prctl: do not run orphaned.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the deployer is gone"));
            }
            Ok(())
        });
    }
}

/// Run `program args…` until it exits, `limits.timeout` passes or `cancel` fires.
///
/// # Errors
/// See [`RunError`]. A non-zero exit is not an error here: see [`Finished::status`].
pub(crate) async fn run(
    program: &Path,
    args: &[OsString],
    limits: Limits,
    cancel: &CancellationToken,
) -> Result<Finished, RunError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for key in withheld_env() {
        cmd.env_remove(key);
    }
    die_with_parent(&mut cmd);
    tracing::debug!(args = ?args.first(), "starting helm");
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let group = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(Pid::from_raw);
    tracing::debug!(pid = ?group, "helm started");
    let stdout = tokio::spawn(read_capped(child.stdout.take(), STDOUT_CAP, false));
    let stderr = tokio::spawn(read_capped(child.stderr.take(), STDERR_CAP, true));
    let outcome = tokio::select! {
        status = child.wait() => status.map_err(RunError::Wait),
        () = tokio::time::sleep(limits.timeout) => {
            tracing::debug!(pid = ?group, "helm timed out: stopping it");
            stop(&mut child, group, limits.kill_grace).await;
            Err(RunError::TimedOut)
        }
        () = cancel.cancelled() => {
            stop(&mut child, group, limits.kill_grace).await;
            Err(RunError::Cancelled)
        }
    };
    tracing::debug!(pid = ?group, ?outcome, "helm ended");
    let status = match outcome {
        Ok(status) => status,
        Err(e) => {
            stdout.abort();
            stderr.abort();
            return Err(e);
        }
    };
    // A grandchild that escaped the group could hold the pipes open: do not wait forever.
    let stdout = tokio::time::timeout(PIPE_DRAIN, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(PIPE_DRAIN, stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(Finished {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// helm's error text made fit for a state message: the `Error:` lines if there are any
/// (helm prints warnings before them), else the last lines; trimmed, at most ~2,000
/// characters.
pub(crate) fn trim_stderr(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("Error:"))
        .collect();
    let chosen = if errors.is_empty() {
        &lines[lines.len().saturating_sub(10)..]
    } else {
        &errors[..]
    };
    let text = chosen.join("\n");
    let text = text.trim();
    const MAX: usize = 2000;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MAX).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn limits(timeout_ms: u64, grace_ms: u64) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            kill_grace: Duration::from_millis(grace_ms),
        }
    }

    fn sh(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    #[tokio::test]
    async fn output_and_exit_status_are_captured() {
        let out = run(
            Path::new("sh"),
            &sh("echo out; echo 'Error: bad' >&2; exit 3"),
            limits(10_000, 100),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(trim_stderr(&out.stderr), "Error: bad");
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_is_terminated() {
        let start = Instant::now();
        let err = run(
            Path::new("sleep"),
            &["30".into()],
            limits(200, 5_000),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "SIGTERM ends sleep at once: {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_command_ignoring_sigterm_is_killed_after_the_grace_period_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-alive");
        // The shell ignores SIGTERM and starts a grandchild that would write the marker later.
        let script = format!(
            "trap '' TERM; (sleep 2; touch {}) & sleep 30",
            marker.display()
        );
        let start = Instant::now();
        let err = run(
            Path::new("sh"),
            &sh(&script),
            limits(300, 300),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut), "{err:?}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_secs(10),
            "{took:?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !marker.exists(),
            "the grandchild in the same process group was killed too"
        );
    }

    #[tokio::test]
    async fn cancelling_stops_the_command() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.cancel();
        });
        let err = run(
            Path::new("sleep"),
            &["30".into()],
            limits(60_000, 1_000),
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::Cancelled), "{err:?}");
    }

    #[test]
    fn stderr_is_trimmed_to_the_error_lines() {
        let s = "WARNING: kube config is group-readable\n\nError: INSTALLATION FAILED: boom\n  detail\n";
        assert_eq!(trim_stderr(s), "Error: INSTALLATION FAILED: boom\n  detail");
        assert_eq!(trim_stderr("just text\n"), "just text");
        assert!(trim_stderr(&"x".repeat(5000)).chars().count() <= 2001);
    }
}
