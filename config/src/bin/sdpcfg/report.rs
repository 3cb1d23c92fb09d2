//! Errors as the one line a person reads: what failed, and the root cause in words
//! (e.g. `Connection refused (os error 111)`), never a Rust debug dump of the gRPC stack.

use std::error::Error as StdError;

/// The error and its causes on one line, `: `-separated.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in error.chain() {
        if let Some(library) = cause.downcast_ref::<sdp_config::Error>() {
            // The library's message already includes its cause.
            parts.push(library_error(library));
            break;
        }
        parts.push(cause.to_string());
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn library_error(error: &sdp_config::Error) -> String {
    match error {
        sdp_config::Error::ConnectFailed { endpoint, source } => {
            format!(
                "cannot reach the configuration database at {endpoint}: {}",
                etcd_error(source)
            )
        }
        sdp_config::Error::RequestFailed {
            operation,
            endpoint,
            source,
        } => {
            format!(
                "configuration database request `{operation}` to {endpoint} failed: {}",
                etcd_error(source)
            )
        }
        other => other.to_string(),
    }
}

/// etcd's own message (e.g. `etcdserver: authentication failed, …`) or the transport
/// failure, with the operating system's reason when there is one.
fn etcd_error(error: &etcd_client::Error) -> String {
    let (text, cause) = match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            let text = if message.is_empty() {
                status.code().to_string()
            } else {
                message.to_string()
            };
            (text, io_cause(StdError::source(status)))
        }
        etcd_client::Error::TransportError(transport) => (
            "transport error".to_string(),
            io_cause(Some(transport as &(dyn StdError + 'static))),
        ),
        other => (other.to_string(), None),
    };
    match cause {
        Some(io) if !text.contains(&io.to_string()) => format!("{text}: {io}"),
        _ => text,
    }
}

fn io_cause<'a>(mut error: Option<&'a (dyn StdError + 'static)>) -> Option<&'a std::io::Error> {
    while let Some(e) = error {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        error = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_are_not_repeated_by_their_source() {
        let source = etcd_client::Error::IoError(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ));
        let error = anyhow::Error::from(sdp_config::Error::ConnectFailed {
            endpoint: "http://h:1".into(),
            source,
        });
        assert_eq!(
            one_line(&error),
            "cannot reach the configuration database at http://h:1: io error: connection refused"
        );
    }

    #[test]
    fn contexts_come_first_and_newlines_go() {
        let error = anyhow::anyhow!("line one\nline two").context("outer");
        assert_eq!(one_line(&error), "outer: line one line two");
    }
}
