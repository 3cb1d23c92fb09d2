//! Connection settings, read from the same environment variables as the Python tools.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// Plain gRPC.
    #[default]
    Http,
    /// gRPC over TLS, verified against `SDP_CONFIG_CERT` when given.
    Https,
}

impl std::str::FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" | "" => Ok(Protocol::Http),
            "https" => Ok(Protocol::Https),
            other => Err(Error::InvalidSettings(format!(
                "SDP_CONFIG_PROTOCOL must be http or https, not {other:?}"
            ))),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        })
    }
}

/// How to reach the configuration database. Defaults are the Python tools' defaults.
///
/// Usable directly as a set of command-line flags (`#[command(flatten)]`), each flag
/// also read from its `SDP_CONFIG_*` environment variable.
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct ConnectionSettings {
    /// Host of the configuration database (etcd), or a comma-separated list of the
    /// members of an etcd cluster, each `host` or `host:port` (`[::1]:2379` for IPv6).
    #[arg(
        long = "config-host",
        env = "SDP_CONFIG_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,
    /// Client port of etcd (of every member listed without a port).
    #[arg(long = "config-port", env = "SDP_CONFIG_PORT", default_value_t = 2379)]
    pub port: u16,
    /// `http` or `https`.
    #[arg(long = "config-protocol", env = "SDP_CONFIG_PROTOCOL", value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,
    /// PEM file with the certificate authority that signed etcd's certificate (https).
    #[arg(long = "config-cert", env = "SDP_CONFIG_CERT")]
    pub cert: Option<PathBuf>,
    /// User name for etcd authentication.
    #[arg(long = "config-username", env = "SDP_CONFIG_USERNAME")]
    pub username: Option<String>,
    /// Password for etcd authentication.
    #[arg(
        long = "config-password",
        env = "SDP_CONFIG_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Global path prefix prepended to every path (e.g. `/test`).
    #[arg(long = "config-prefix", env = "SDP_CONFIG_PREFIX", default_value = "")]
    pub prefix: String,
    /// Timeout of a single request to etcd, in seconds.
    #[arg(
        long = "config-timeout",
        env = "SDP_CONFIG_TIMEOUT",
        default_value_t = 10.0
    )]
    pub timeout_secs: f64,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            host: "127.0.0.1".into(),
            port: 2379,
            protocol: Protocol::Http,
            cert: None,
            username: None,
            password: None,
            prefix: String::new(),
            timeout_secs: 10.0,
        }
    }
}

impl ConnectionSettings {
    /// Settings from the `SDP_CONFIG_*` environment variables, defaults for the rest.
    ///
    /// # Errors
    /// An unparseable port or protocol.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from any variable lookup (testable without touching the environment).
    ///
    /// # Errors
    /// An unparseable port or protocol.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut s = ConnectionSettings::default();
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());
        if let Some(host) = non_empty("SDP_CONFIG_HOST") {
            s.host = host;
        }
        if let Some(port) = non_empty("SDP_CONFIG_PORT") {
            s.port = port.trim().parse().map_err(|_| {
                Error::InvalidSettings(format!(
                    "SDP_CONFIG_PORT must be a port number, not {port:?}"
                ))
            })?;
        }
        if let Some(protocol) = non_empty("SDP_CONFIG_PROTOCOL") {
            s.protocol = protocol.parse()?;
        }
        s.cert = non_empty("SDP_CONFIG_CERT").map(PathBuf::from);
        s.username = non_empty("SDP_CONFIG_USERNAME");
        s.password = non_empty("SDP_CONFIG_PASSWORD");
        if let Some(prefix) = non_empty("SDP_CONFIG_PREFIX") {
            s.prefix = prefix;
        }
        s.members()?;
        Ok(s)
    }

    /// The etcd members `host` names, in the order given, each with its port (the
    /// entry's own, else [`ConnectionSettings::port`]).
    ///
    /// # Errors
    /// [`Error::InvalidSettings`] for an empty list or entry, or a port that is not a
    /// number.
    pub fn members(&self) -> Result<Vec<Member>> {
        let members = self
            .host
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| Member::parse(entry, self.port))
            .collect::<Result<Vec<_>>>()?;
        if members.is_empty() {
            return Err(Error::InvalidSettings(format!(
                "SDP_CONFIG_HOST names no host: {:?}",
                self.host
            )));
        }
        Ok(members)
    }

    /// The endpoint URL of every member, e.g. `["http://127.0.0.1:2379"]`.
    ///
    /// # Errors
    /// As [`ConnectionSettings::members`].
    pub fn endpoints(&self) -> Result<Vec<String>> {
        Ok(self
            .members()?
            .iter()
            .map(|m| m.url(self.protocol))
            .collect())
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:2379`; for a cluster the members' URLs
    /// joined with commas. A host list that does not parse is shown as given.
    pub fn endpoint(&self) -> String {
        match self.endpoints() {
            Ok(urls) => urls.join(","),
            Err(_) => format!("{}://{}:{}", self.protocol, self.host, self.port),
        }
    }

    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.clamp(0.1, 3600.0))
    }

    /// Replace the global prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// One etcd member: a host name or address and its client port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// Client port.
    pub port: u16,
}

impl Member {
    /// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address (more than one
    /// `:`, no port).
    fn parse(entry: &str, default_port: u16) -> Result<Member> {
        let bad =
            |why: &str| Error::InvalidSettings(format!("SDP_CONFIG_HOST entry {entry:?}: {why}"));
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| bad("the port must be a number from 0 to 65535"))
        };
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address in brackets needs the closing ']'"))?;
            match after {
                "" => (host, default_port),
                _ => match after.strip_prefix(':') {
                    Some(p) => (host, port(p)?),
                    None => return Err(bad("expected ':<port>' after ']'")),
                },
            }
        } else if entry.matches(':').count() > 1 {
            (entry, default_port)
        } else {
            match entry.split_once(':') {
                Some((host, p)) => (host, port(p)?),
                None => (entry, default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        Ok(Member {
            host: host.to_string(),
            port,
        })
    }

    /// `http://host:port`, with an IPv6 address in brackets.
    pub fn url(&self, protocol: Protocol) -> String {
        if self.host.contains(':') {
            format!("{protocol}://[{}]:{}", self.host, self.port)
        } else {
            format!("{protocol}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_python_tools() {
        let s = ConnectionSettings::from_lookup(|_| None).unwrap();
        assert_eq!(s.endpoint(), "http://127.0.0.1:2379");
        assert_eq!(s.username, None);
    }

    #[test]
    fn environment_overrides_every_field() {
        let s = ConnectionSettings::from_lookup(|k| {
            Some(
                match k {
                    "SDP_CONFIG_HOST" => "etcd",
                    "SDP_CONFIG_PORT" => "1234",
                    "SDP_CONFIG_PROTOCOL" => "HTTPS",
                    "SDP_CONFIG_CERT" => "/ca.pem",
                    "SDP_CONFIG_USERNAME" => "u",
                    "SDP_CONFIG_PASSWORD" => "p",
                    _ => return None,
                }
                .to_string(),
            )
        })
        .unwrap();
        assert_eq!(s.endpoint(), "https://etcd:1234");
        assert_eq!(s.cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(
            (s.username.as_deref(), s.password.as_deref()),
            (Some("u"), Some("p"))
        );
    }

    #[test]
    fn bad_port_is_a_clear_error() {
        let err = ConnectionSettings::from_lookup(|k| (k == "SDP_CONFIG_PORT").then(|| "x".into()))
            .unwrap_err();
        assert!(err.to_string().contains("SDP_CONFIG_PORT"), "{err}");
    }

    fn with_host(host: &str) -> ConnectionSettings {
        ConnectionSettings {
            host: host.into(),
            ..Default::default()
        }
    }

    #[test]
    fn one_host_gives_the_same_endpoint_as_before_host_lists() {
        for (host, want) in [
            ("127.0.0.1", "http://127.0.0.1:2379"),
            ("etcd.sdp.svc", "http://etcd.sdp.svc:2379"),
            ("::1", "http://[::1]:2379"),
            ("[::1]", "http://[::1]:2379"),
        ] {
            assert_eq!(with_host(host).endpoint(), want, "{host}");
            assert_eq!(with_host(host).endpoints().unwrap(), [want], "{host}");
        }
    }

    #[test]
    fn a_host_list_names_every_member_with_its_own_or_the_default_port() {
        let s = ConnectionSettings {
            port: 4000,
            ..with_host("etcd-0:2379, etcd-1 ,[::1]:2381,[fe80::1],10.0.0.3:1,")
        };
        assert_eq!(
            s.endpoints().unwrap(),
            [
                "http://etcd-0:2379",
                "http://etcd-1:4000",
                "http://[::1]:2381",
                "http://[fe80::1]:4000",
                "http://10.0.0.3:1",
            ]
        );
        assert_eq!(
            s.endpoint(),
            "http://etcd-0:2379,http://etcd-1:4000,http://[::1]:2381,http://[fe80::1]:4000,http://10.0.0.3:1"
        );
        assert_eq!(
            s.members().unwrap()[2],
            Member {
                host: "::1".into(),
                port: 2381
            }
        );
    }

    #[test]
    fn bad_host_entries_are_clear_errors() {
        for (host, says) in [
            ("etcd:x", "port must be a number"),
            ("etcd:70000", "port must be a number"),
            ("a,:2379", "the host is empty"),
            ("[::1", "closing ']'"),
            ("[::1]2379", "':<port>'"),
            (" , ", "names no host"),
        ] {
            let err = with_host(host).members().unwrap_err().to_string();
            assert!(err.contains(says), "{host}: {err}");
            assert!(err.contains("SDP_CONFIG_HOST"), "{host}: {err}");
        }
        let err =
            ConnectionSettings::from_lookup(|k| (k == "SDP_CONFIG_HOST").then(|| "a:b".into()))
                .unwrap_err();
        assert!(err.to_string().contains("\"a:b\""), "{err}");
    }
}
