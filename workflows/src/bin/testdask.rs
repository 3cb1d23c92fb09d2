//! `testdask <pb_id>`: the seed walkthrough's workflow. Claims the block, sets it
//! RUNNING, requests a Dask cluster (`<pb_id>-dask`, chart `stable/dask`, 2 workers),
//! waits until the Dask scheduler accepts TCP connections, records the outcome in the
//! block's state, and idles until the block is deleted, ownership is lost, or it gets
//! SIGINT/SIGTERM. Then it removes the Dask deployment and releases the claim.
//!
//! Environment, besides `SDP_CONFIG_*`:
//! - `SDP_HELM_NAMESPACE` (`sdp`): the namespace the deployer installs into;
//! - `SDP_HELM_PREFIX` (empty): the deployer's release-name prefix;
//! - `SDP_DASK_SCHEDULER` (`host:port`): where the scheduler is, instead of the
//!   address computed from the release (below);
//! - `SDP_DASK_TIMEOUT` (60): seconds to keep trying to connect.
//!
//! The scheduler address assumes the deployer names the Helm release
//! `<SDP_HELM_PREFIX><deploy_id>` (it does so whenever that is a valid release name)
//! and the `dask` chart names the scheduler's Service `<release>-scheduler` (release
//! cut to 53 characters): `<release>-scheduler.<namespace>:8786`.
//!
//! The state gets `"dask_scheduler": "<address>"` and `"dask"`: `"waiting …"`, then
//! `"connected"` or `"unreachable: …"`. Without a cluster (the deployer's render
//! target) there is no scheduler to reach: the state says so after the timeout and the
//! workflow goes on idling rather than hanging or failing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use sdp_config::entity::{Deployment, PbStatus};
use sdp_workflows::{Error, Workflow, cli};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const SCHEDULER_PORT: u16 = 8786;
/// Longest Helm release name; the chart cuts its object names to it.
const MAX_RELEASE: usize = 53;

fn main() -> ExitCode {
    cli::main("testdask", run)
}

/// Settings read before claiming: a bad value stops the workflow before it touches
/// anything.
struct Settings {
    timeout: Duration,
    scheduler: Option<String>,
    helm_prefix: String,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let timeout =
            cli::env_seconds("SDP_DASK_TIMEOUT", DEFAULT_TIMEOUT).map_err(|e| anyhow!(e))?;
        let scheduler = match std::env::var("SDP_DASK_SCHEDULER")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            Some(addr) => Some(check_host_port(addr.trim()).map_err(|e| anyhow!(e))?),
            None => None,
        };
        let helm_prefix = std::env::var("SDP_HELM_PREFIX").unwrap_or_default();
        Ok(Settings {
            timeout,
            scheduler,
            helm_prefix,
        })
    }
}

async fn run(pb_id: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let Some(wf) = cli::start(&pb_id, &shutdown)
        .await
        .context("cannot start")?
    else {
        return Ok(());
    };
    let deploy_id = wf.deploy_id("dask");
    let scheduler = settings
        .scheduler
        .clone()
        .unwrap_or_else(|| scheduler_address(&settings.helm_prefix, &deploy_id, wf.namespace()));
    let result =
        cli::stopped_normally(work(&wf, &deploy_id, &scheduler, settings.timeout, &shutdown).await);
    match wf.remove_deployment(&deploy_id).await {
        Ok(_) => {}
        Err(e @ Error::NotOwner { .. }) => {
            tracing::warn!(error = %e, "leaving the Dask deployment to the new owner")
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot remove deployment {deploy_id}"))
            );
        }
    }
    wf.finish().await.context("cannot release the claim")?;
    Ok(result?)
}

async fn work(
    wf: &Workflow,
    deploy_id: &str,
    scheduler: &str,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> sdp_workflows::Result<()> {
    wf.set_status(PbStatus::Running, None).await?;
    let dask = dask_deployment(deploy_id);
    match wf.request_deployment(&dask).await {
        Err(Error::DeploymentExists { .. }) => {
            wf.update_deployment(&dask).await?; // a restarted workflow takes it over
        }
        other => other?,
    }
    let waiting = format!(
        "waiting up to {} s for the scheduler to accept connections",
        timeout.as_secs_f64()
    );
    wf.update_state(|s| {
        s.extra.insert("dask_scheduler".into(), json!(scheduler));
        s.extra.insert("dask".into(), json!(waiting));
    })
    .await?;
    tracing::info!(
        scheduler,
        timeout_s = timeout.as_secs_f64(),
        "waiting for the Dask scheduler"
    );
    let outcome = tokio::select! {
        r = wait_for_scheduler(scheduler, timeout) => r,
        end = wf.ended() => {
            tracing::info!(%end, "stopping");
            return Ok(());
        }
        () = shutdown.cancelled() => return Ok(()),
    };
    let dask = match outcome {
        Ok(()) => "connected".to_string(),
        Err(why) => format!(
            "unreachable: no TCP connection to {scheduler} within {} s ({why}); no cluster? \
             with the render target there is no scheduler to reach",
            timeout.as_secs_f64()
        ),
    };
    tracing::info!(scheduler, outcome = %dask, "Dask scheduler");
    wf.update_state(|s| {
        s.extra.insert("dask".into(), json!(dask));
    })
    .await?;
    tokio::select! {
        end = wf.ended() => tracing::info!(%end, "stopping"),
        () = shutdown.cancelled() => {}
    }
    Ok(())
}

/// The seed's Dask deployment: chart `stable/dask`, values exactly as the 2019
/// workflow wrote them.
fn dask_deployment(deploy_id: &str) -> Deployment {
    let mut values = Map::new();
    values.insert("jupyter.enabled".into(), json!("false"));
    values.insert("scheduler.serviceType".into(), json!("ClusterIP"));
    values.insert("worker.replicas".into(), Value::from(2));
    Deployment::helm(deploy_id, "stable/dask", values)
}

/// `<release>-scheduler.<namespace>:8786`, release = `<prefix><deploy_id>` cut to 53
/// characters without a trailing `-`, as the `dask` chart names the Service.
fn scheduler_address(helm_prefix: &str, deploy_id: &str, namespace: &str) -> String {
    let release: String = format!("{helm_prefix}{deploy_id}")
        .chars()
        .take(MAX_RELEASE)
        .collect();
    let release = release.trim_end_matches('-');
    format!("{release}-scheduler.{namespace}:{SCHEDULER_PORT}")
}

/// Check `host:port` (the port a number).
fn check_host_port(addr: &str) -> Result<String, String> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(addr.to_string())
        }
        _ => Err(format!(
            "SDP_DASK_SCHEDULER must be host:port, not {addr:?}"
        )),
    }
}

/// Try to open a TCP connection to `addr` until one succeeds or `timeout` has passed;
/// the error is the last failure.
async fn wait_for_scheduler(addr: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = "no attempt made".to_string();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(last);
        }
        match tokio::time::timeout(
            remaining.min(Duration::from_secs(5)),
            TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "connection attempt timed out".into(),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(remaining.min(Duration::from_millis(500))).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dask_deployment_is_the_seeds_byte_for_byte() {
        let expected = "{\n  \"args\": {\n    \"chart\": \"stable/dask\",\n    \"values\": {\n      \"jupyter.enabled\": \"false\",\n      \"scheduler.serviceType\": \"ClusterIP\",\n      \"worker.replicas\": 2\n    }\n  },\n  \"deploy_id\": \"realtime-20191121-0000-dask\",\n  \"type\": \"helm\"\n}";
        assert_eq!(
            dask_deployment("realtime-20191121-0000-dask").to_json(),
            expected
        );
    }

    #[test]
    fn the_scheduler_is_the_release_service_in_the_namespace() {
        assert_eq!(
            scheduler_address("", "realtime-20191121-0000-dask", "sdp"),
            "realtime-20191121-0000-dask-scheduler.sdp:8786"
        );
        assert_eq!(
            scheduler_address("test-", "r-1-dask", "lab-sdp"),
            "test-r-1-dask-scheduler.lab-sdp:8786"
        );
        // Cut to 53 characters like the chart, without a dangling '-'.
        let id = format!("{}-dask", "a".repeat(52));
        assert_eq!(
            scheduler_address("", &id, "sdp"),
            format!("{}-scheduler.sdp:8786", "a".repeat(52))
        );
        let id = format!("{}-dask", "a".repeat(50));
        assert_eq!(
            scheduler_address("", &id, "sdp"),
            format!("{}-da-scheduler.sdp:8786", "a".repeat(50))
        );
    }

    #[test]
    fn the_override_must_be_host_and_port() {
        assert_eq!(check_host_port("127.0.0.1:8786").unwrap(), "127.0.0.1:8786");
        assert!(
            check_host_port("scheduler")
                .unwrap_err()
                .contains("host:port")
        );
        assert!(check_host_port("h:port").is_err());
        assert!(check_host_port(":1").is_err());
    }

    #[tokio::test]
    async fn waiting_for_a_closed_port_gives_up_with_the_reason() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let started = std::time::Instant::now();
        let err = wait_for_scheduler(&format!("127.0.0.1:{port}"), Duration::from_millis(700))
            .await
            .unwrap_err();
        assert!(err.to_lowercase().contains("refused"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        wait_for_scheduler(&addr, Duration::from_secs(5))
            .await
            .unwrap();
    }
}
