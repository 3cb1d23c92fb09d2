//! What every workflow binary does around its work: logging, the `pb_id` argument,
//! signals, and the exit status.
//!
//! A workflow runs as `<program> <pb_id>` with `SDP_CONFIG_*` and `SDP_HELM_NAMESPACE`
//! in the environment, in a pod (the `workflow` chart) or as a local process.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use sdp_config::ConnectionSettings;
use sdp_runtime::{logging, program};
use tokio_util::sync::CancellationToken;

use crate::Workflow;

/// Run a workflow's `body` with the `pb_id` from the command line and a token that is
/// cancelled on SIGINT or SIGTERM (a second signal exits at once). Logs go to stderr
/// (level from `SDP_LOG_LEVEL` or `RUST_LOG`, default `info`; JSON with `SDP_LOG_JSON`).
/// Exit status 0 when `body` succeeds; otherwise the error and its causes are logged and
/// the status is 1 (2 for a usage error).
pub fn main<F, Fut, E>(program: &str, body: F) -> ExitCode
where
    F: FnOnce(String, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    logging::init_from_env();
    let pb_id = match pb_id_argument(std::env::args().skip(1)) {
        Ok(id) => id,
        Err(usage) => {
            eprintln!("{program}: {usage}\nusage: {program} <pb_id>");
            return ExitCode::from(2);
        }
    };
    program::run(program, |shutdown| body(pb_id, shutdown))
}

/// Start the workflow for `pb_id` with the connection settings and options from the
/// environment ([`Workflow::start`]); `None` when `shutdown` fires first (e.g. while
/// etcd is still unreachable).
///
/// # Errors
/// Unusable `SDP_CONFIG_*` settings, or what [`Workflow::start`] reports.
pub async fn start(pb_id: &str, shutdown: &CancellationToken) -> crate::Result<Option<Workflow>> {
    let settings = ConnectionSettings::from_env()?;
    tokio::select! {
        wf = Workflow::start(&settings, pb_id) => wf.map(Some),
        () = shutdown.cancelled() => Ok(None),
    }
}

/// The outcome of a workflow's work, with the ways its claim can end (block deleted,
/// ownership lost) counted as a normal stop rather than an error.
///
/// # Errors
/// Any other error of the work.
pub fn stopped_normally(result: crate::Result<()>) -> crate::Result<()> {
    match result {
        Err(e) if e.ends_workflow() => {
            tracing::info!(reason = %e, "stopping");
            Ok(())
        }
        other => other,
    }
}

/// The single `pb_id` argument.
///
/// # Errors
/// A message saying what is wrong with the arguments.
pub fn pb_id_argument(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    match (args.next(), args.next()) {
        (Some(id), None) if !id.starts_with('-') => Ok(id),
        (Some(flag), None) if flag == "-h" || flag == "--help" => {
            Err("run one workflow for a processing block".into())
        }
        (None, _) => Err("missing the processing block ID".into()),
        _ => Err("expected exactly one argument, the processing block ID".into()),
    }
}

/// A duration in seconds from the environment variable `name` (fractions allowed).
///
/// # Errors
/// A message naming the variable when its value is not a non-negative number.
pub fn env_seconds(name: &str, default: Duration) -> Result<Duration, String> {
    seconds_from(name, std::env::var(name).ok(), default)
}

fn seconds_from(name: &str, value: Option<String>, default: Duration) -> Result<Duration, String> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => sdp_runtime::settings::seconds(text)
            .map_err(|_| format!("{name} must be a number of seconds, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_only_argument_is_the_pb_id() {
        assert_eq!(
            pb_id_argument(args(&["realtime-20191121-0000"])),
            Ok("realtime-20191121-0000".into())
        );
        assert!(pb_id_argument(args(&[])).is_err_and(|e| e.contains("missing")));
        assert!(pb_id_argument(args(&["a", "b"])).is_err_and(|e| e.contains("exactly one")));
        assert!(pb_id_argument(args(&["--verbose"])).is_err());
    }

    #[test]
    fn seconds_accept_fractions_and_name_the_variable_when_wrong() {
        let d = Duration::from_secs(60);
        assert_eq!(seconds_from("X", None, d), Ok(d));
        assert_eq!(
            seconds_from("X", Some("2.5".into()), d),
            Ok(Duration::from_millis(2500))
        );
        assert!(
            seconds_from("SDP_DASK_TIMEOUT", Some("soon".into()), d)
                .is_err_and(|e| e.contains("SDP_DASK_TIMEOUT"))
        );
        assert!(seconds_from("X", Some("-1".into()), d).is_err());
    }
}
