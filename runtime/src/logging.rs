//! One log format for every SDP program: human-readable or JSON lines, on stderr (stdout
//! is left to a program's own output), colours only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. The filter is `RUST_LOG` when set, else `level` (an
/// `EnvFilter` directive such as `info` or `sdp_deployer=debug`); an invalid directive
/// logs at `info` and says so. Calling it twice keeps the first subscriber.
pub fn init(level: &str, json: bool) {
    let directive = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| level.to_string());
    // Python's SDP_LOG_LEVEL values are upper case (INFO, DEBUG); EnvFilter wants lower.
    let directive = if directive.chars().all(|c| c.is_ascii_alphabetic()) {
        directive.to_ascii_lowercase()
    } else {
        directive
    };
    let (filter, bad) = match EnvFilter::try_new(&directive) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!json && std::io::stderr().is_terminal());
    let installed = if json {
        builder.json().try_init().is_ok()
    } else {
        builder.try_init().is_ok()
    };
    if let (true, Some(e)) = (installed, bad) {
        tracing::warn!(directive, error = %e, "invalid log filter; logging at info");
    }
}

/// [`init`] from `SDP_LOG_LEVEL` (default `info`) and `SDP_LOG_JSON` (`true`/`1`/`yes`),
/// for programs without flags of their own (the workflows).
pub fn init_from_env() {
    let level = std::env::var("SDP_LOG_LEVEL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    let json = std::env::var("SDP_LOG_JSON")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false);
    init(&level, json);
}
