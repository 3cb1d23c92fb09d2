//! A throw-away CA and server certificate, made with the `openssl` CLI.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) const SERVER_CERT: &str = "server.pem";
pub(crate) const SERVER_KEY: &str = "server.key";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// Our own configuration, so the system's openssl.cnf cannot add prompts or extensions.
/// The server certificate is what strict verifiers (rustls/webpki, Go) accept: a
/// non-CA leaf with subject alternative names and the serverAuth usage.
const CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = sdp-testing

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Writes a CA and a server certificate for `127.0.0.1` and `localhost` into `dir`;
/// returns the CA certificate's path.
pub(crate) fn make_certificates(dir: &Path) -> io::Result<PathBuf> {
    let config = dir.join("openssl.cnf");
    fs::write(&config, CONFIG)?;
    let config = config.to_string_lossy().into_owned();
    // P-256 keys: made at once, unlike RSA ones, and every TLS stack accepts them.
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca: &[&str] = &["req", "-x509", "-config", &config, "-extensions", "ca"];
    let ca_out: &[&str] = &["-subj", "/CN=sdp-testing CA", "-days", "30"];
    openssl(
        dir,
        &[ca, &new_key, ca_out, &["-keyout", CA_KEY, "-out", CA_CERT]].concat(),
    )?;
    let csr: &[&str] = &["req", "-new", "-config", &config, "-subj", "/CN=localhost"];
    openssl(
        dir,
        &[
            csr,
            &new_key,
            &["-keyout", SERVER_KEY, "-out", "server.csr"],
        ]
        .concat(),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            CA_CERT,
            "-CAkey",
            CA_KEY,
            "-set_serial",
            "2",
            "-days",
            "30",
            "-extfile",
            &config,
            "-extensions",
            "server",
            "-out",
            SERVER_CERT,
        ],
    )?;
    Ok(dir.join(CA_CERT))
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run openssl ({e}); scripts/setup.sh installs it"),
            )
        })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
