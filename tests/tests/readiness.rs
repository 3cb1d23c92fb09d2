//! Readiness is asked, not remembered: with etcd frozen (SIGSTOP), both daemons say
//! "not ready" within the request timeout, and "ready" again once etcd runs (SIGCONT).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sdp_e2e::system::{Options, System, Target, http_get};
use sdp_e2e::wait::{Outcome, eventually};

/// `/readyz` probes etcd for at most 2 s; allow for a loaded machine.
const NOT_READY_WITHIN: Duration = Duration::from_secs(6);

/// Resumes etcd even when the test fails half-way, so that dropping the system works.
struct Frozen(Pid);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[tokio::test]
async fn both_daemons_are_not_ready_while_etcd_is_frozen_and_ready_again_after() -> Result<()> {
    let system = System::start(Options::new(Target::FakeHelm)).await?;
    let ports: Vec<(&str, u16)> = ["controller", "deployer"]
        .into_iter()
        .map(|name| Ok((name, system.http_port(name).context("no HTTP port")?)))
        .collect::<Result<_>>()?;
    for (name, port) in &ports {
        let (code, body) = http_get(*port, "/readyz").await?;
        ensure!(
            code == 200,
            "{name} not ready before the freeze: {code} {body}"
        );
    }

    let pid = Pid::from_raw(i32::try_from(
        system.etcd.pid().context("etcd not running")?,
    )?);
    kill(pid, Signal::SIGSTOP)?;
    let frozen = Frozen(pid);
    // kill() only queues the stop: on a busy machine an etcd thread can still answer a
    // request or two. Ask only once every thread of etcd is stopped.
    eventually(Duration::from_secs(5), "etcd stopped", || async {
        Ok(if all_threads_stopped(pid.as_raw()) {
            Outcome::Done(())
        } else {
            Outcome::NotYet("a thread still runs".into())
        })
    })
    .await?;
    for (name, port) in &ports {
        let asked = Instant::now();
        let (code, body) = tokio::time::timeout(NOT_READY_WITHIN, http_get(*port, "/readyz"))
            .await
            .with_context(|| {
                format!("{name}: /readyz did not answer within {NOT_READY_WITHIN:?}")
            })??;
        ensure!(
            code == 503,
            "{name} says {code} {body:?} with etcd frozen (after {:?})",
            asked.elapsed()
        );
        ensure!(
            body.contains("configuration database"),
            "{name}: the reason names the database: {body:?}"
        );
    }

    drop(frozen);
    for (name, port) in &ports {
        eventually(
            Duration::from_secs(30),
            &format!("{name} ready again"),
            || async {
                Ok(match http_get(*port, "/readyz").await {
                    Ok((200, _)) => Outcome::Done(()),
                    Ok((code, body)) => Outcome::NotYet(format!("{code} {}", body.trim())),
                    Err(e) => Outcome::NotYet(e.to_string()),
                })
            },
        )
        .await?;
    }
    system.ensure_daemons_running()?;
    system.shutdown().await
}

/// Whether every thread of process `pid` is in state `T` (stopped), from `/proc`.
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // `pid (comm) S …`: the state follows the last `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") {
            return false;
        }
        any = true;
    }
    any
}
