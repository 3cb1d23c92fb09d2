//! Settings every daemon has, with one naming rule for all flags: a flag is its
//! environment variable without `SDP_`, in lower case with dashes (`SDP_LEADER_TTL` is
//! `--leader-ttl`), and every duration is a number of seconds (fractions allowed).

use std::time::Duration;

use clap::builder::BoolishValueParser;
use sdp_config::ConnectionSettings;

/// Time running work gets to finish after the first SIGTERM. One default for every
/// daemon: below Kubernetes' default termination grace period (30 s), so that a daemon
/// finishes, resigns its leadership and exits before it would be killed.
pub const DEFAULT_SHUTDOWN_GRACE: &str = "25";

/// What every daemon is told. Flatten it into the daemon's own settings.
#[derive(Clone, Debug, clap::Args)]
pub struct DaemonSettings {
    /// How to reach the configuration database.
    #[command(flatten)]
    pub connection: ConnectionSettings,

    /// Log filter (an `EnvFilter` directive such as `info` or `sdp_deployer=debug`;
    /// `RUST_LOG` wins when set).
    #[arg(long = "log-level", env = "SDP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// JSON log lines instead of human-readable ones.
    #[arg(long = "log-json", env = "SDP_LOG_JSON", default_value = "false",
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub log_json: bool,

    /// Seconds of the leadership lease: a standby replica takes over at most this long
    /// after the leader dies (at least 2).
    #[arg(long = "leader-ttl", alias = "leader-ttl-secs", env = "SDP_LEADER_TTL",
          default_value = "10", value_parser = seconds)]
    pub leader_ttl: Duration,

    /// Seconds in-flight work gets to finish after the first SIGTERM or SIGINT.
    #[arg(long = "shutdown-grace", alias = "shutdown-grace-secs", env = "SDP_SHUTDOWN_GRACE",
          default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = seconds)]
    pub shutdown_grace: Duration,
}

impl DaemonSettings {
    /// The documented defaults with the given connection, without reading the
    /// environment: for tests and embedding.
    pub fn new(connection: ConnectionSettings) -> Self {
        DaemonSettings {
            connection,
            log_level: "info".into(),
            log_json: false,
            leader_ttl: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(25),
        }
    }

    /// The leadership lease TTL, at least two seconds (etcd's lease granularity is one
    /// second; one would expire between two keep-alives).
    pub fn leader_ttl(&self) -> Duration {
        self.leader_ttl.max(Duration::from_secs(2))
    }
}

/// Parse a number of seconds (`10`, `2.5`) into a [`Duration`].
///
/// # Errors
/// Not a finite, non-negative number.
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("expected a number of seconds, got {text:?}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        daemon: DaemonSettings,
    }

    #[test]
    fn durations_are_seconds_with_fractions() {
        assert_eq!(seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(seconds(" 2.5 "), Ok(Duration::from_millis(2500)));
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
        assert!(seconds("inf").is_err());
    }

    #[test]
    fn old_flag_spellings_still_parse() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "d",
            "--leader-ttl-secs",
            "3",
            "--shutdown-grace-secs",
            "1.5",
        ])?;
        assert_eq!(cli.daemon.leader_ttl, Duration::from_secs(3));
        assert_eq!(cli.daemon.shutdown_grace, Duration::from_millis(1500));
        let cli = Cli::try_parse_from(["d", "--leader-ttl", "1"])?;
        assert_eq!(cli.daemon.leader_ttl(), Duration::from_secs(2));
        Ok(())
    }

    #[test]
    fn new_has_the_flag_defaults() -> Result<(), clap::Error> {
        let parsed = Cli::try_parse_from(["d"])?.daemon;
        let new = DaemonSettings::new(ConnectionSettings::default());
        assert_eq!(parsed.shutdown_grace, new.shutdown_grace);
        assert_eq!(parsed.leader_ttl, new.leader_ttl);
        assert_eq!(parsed.log_level, new.log_level);
        Ok(())
    }
}
