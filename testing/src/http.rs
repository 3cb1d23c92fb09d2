//! Just enough HTTP to read etcd's `/health` and `/metrics` on loopback.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// `GET path` on `127.0.0.1:port` over plain HTTP/1.0, returning the status and body.
/// HTTP/1.0 makes the server close the connection after an unchunked body.
pub(crate) fn get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// The sum of the Prometheus counter `metric` over its series whose label `label`
/// equals `value`, or `None` if there is no such series.
pub(crate) fn sum_counter(text: &str, metric: &str, label: &str, value: &str) -> Option<u64> {
    let wanted = format!("{label}=\"{value}\"");
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        // etcd's label values never contain '}' or ','.
        let Some((labels, sample)) = rest.split_once('}') else {
            continue;
        };
        if !labels.split(',').any(|l| l == wanted) {
            continue;
        }
        // Large counts come as e.g. "1.234e+06".
        let count: f64 = sample.split_whitespace().next()?.parse().ok()?;
        *total.get_or_insert(0) += count as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP grpc_server_handled_total Total number of RPCs completed on the server.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 3
grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1.5e+06
grpc_server_handled_total{grpc_code="OK",grpc_method="PutSomething",grpc_service="x",grpc_type="unary"} 100
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 7
grpc_server_handled_total_other{grpc_code="OK",grpc_method="Put"} 1000
"#;

    #[test]
    fn counter_sums_every_series_of_the_method_and_no_other() {
        assert_eq!(
            sum_counter(TEXT, "grpc_server_handled_total", "grpc_method", "Put"),
            Some(1_500_003)
        );
        assert_eq!(
            sum_counter(TEXT, "grpc_server_handled_total", "grpc_method", "Range"),
            Some(7)
        );
    }

    #[test]
    fn counter_of_an_unknown_method_is_none_not_zero() {
        assert_eq!(
            sum_counter(TEXT, "grpc_server_handled_total", "grpc_method", "Pt"),
            None
        );
    }
}
