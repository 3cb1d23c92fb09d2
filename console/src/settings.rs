//! The console's settings: command-line flags, each also read from its `SDP_…`
//! environment variable, named as the daemons' are.

use sdp_config::ConnectionSettings;
use sdp_runtime::settings::DaemonSettings;

/// The port the console listens on by default (the controller has 8080, the deployer
/// 8081).
pub const DEFAULT_PORT: u16 = 8082;

/// Everything the console can be told.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "sdp-console",
    version,
    about = "SDP console: a live, read-only web page of every processing block and deployment"
)]
pub struct Settings {
    /// Connection and logging (the console takes part in no leader election: every
    /// replica serves pages).
    #[command(flatten)]
    pub daemon: DaemonSettings,

    /// Address the page, its API, `/healthz`, `/readyz` and `/metrics` are served on.
    #[arg(
        long,
        alias = "listen",
        env = "SDP_HTTP_ADDR",
        default_value = "0.0.0.0:8082"
    )]
    pub http_addr: String,

    /// Recent changes kept for the page's feed (a page that opens gets these first).
    #[arg(long, env = "SDP_CONSOLE_HISTORY", default_value_t = 200)]
    pub history: usize,
}

impl Settings {
    /// Defaults (as documented on each flag) with the given connection, without
    /// reading the environment: for tests and embedding.
    pub fn new(connection: ConnectionSettings) -> Self {
        Settings {
            daemon: DaemonSettings::new(connection),
            http_addr: format!("0.0.0.0:{DEFAULT_PORT}"),
            history: 200,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_parse_like_the_daemons() {
        let s = Settings::try_parse_from([
            "sdp-console",
            "--config-host",
            "etcd",
            "--listen",
            "127.0.0.1:9000",
            "--history",
            "5",
        ])
        .unwrap();
        assert_eq!(s.daemon.connection.host, "etcd");
        assert_eq!(s.http_addr, "127.0.0.1:9000");
        assert_eq!(s.history, 5);
    }

    #[test]
    fn new_has_the_flag_defaults() {
        let parsed = Settings::try_parse_from(["sdp-console"]).unwrap();
        let new = Settings::new(ConnectionSettings::default());
        assert_eq!(parsed.http_addr, new.http_addr);
        assert_eq!(parsed.history, new.history);
    }
}
