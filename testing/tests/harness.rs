//! The harness against the real etcd, checked with the real etcdctl.

use std::error::Error;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sdp_testing::{EtcdOptions, EtcdServer, free_port};

type Result<T = (), E = Box<dyn Error>> = std::result::Result<T, E>;

/// Runs `etcdctl` (API v3) against `server`, trusting its CA when it has one, with
/// `flags` (e.g. credentials) before `args`.
fn etcdctl(server: &EtcdServer, flags: &[&str], args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", server.endpoint()))
        .arg("--dial-timeout=2s");
    if let Some(ca) = server.ca_cert() {
        cmd.arg("--cacert").arg(ca);
    }
    Ok(cmd.args(flags).args(args).stdin(Stdio::null()).output()?)
}

/// Like [`etcdctl`], failing unless etcdctl succeeds; returns its standard output.
fn etcdctl_ok(server: &EtcdServer, flags: &[&str], args: &[&str]) -> Result<String> {
    let out = etcdctl(server, flags, args)?;
    if !out.status.success() {
        return Err(format!(
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn started_server_serves_clients_and_drop_kills_it() -> Result {
    let started = Instant::now();
    let etcd = EtcdServer::start()?;
    eprintln!("etcd started in {:?}", started.elapsed());

    assert!(etcd.is_running());
    assert_eq!(etcd.host(), "127.0.0.1");
    assert_eq!(etcd.protocol(), "http");
    assert_eq!(etcd.endpoint(), format!("http://127.0.0.1:{}", etcd.port()));
    assert_eq!(etcd.ca_cert(), None);
    assert_eq!(
        etcd.env(),
        [
            ("SDP_CONFIG_HOST".to_owned(), "127.0.0.1".to_owned()),
            ("SDP_CONFIG_PORT".to_owned(), etcd.port().to_string()),
            ("SDP_CONFIG_PROTOCOL".to_owned(), "http".to_owned()),
        ]
    );
    etcdctl_ok(&etcd, &[], &["put", "greeting", "hello"])?;
    assert_eq!(
        etcdctl_ok(&etcd, &[], &["get", "--print-value-only", "greeting"])?,
        "hello\n"
    );

    let port = etcd.port();
    drop(etcd);
    assert!(!accepts_connections(port), "etcd still listens after drop");
    Ok(())
}

#[test]
fn a_panicking_test_still_kills_its_server() -> Result {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || -> Result<(), String> {
        let etcd = EtcdServer::start().map_err(|e| e.to_string())?;
        tx.send(etcd.port()).map_err(|e| e.to_string())?;
        panic!("the test fails while etcd runs");
    });
    let port = rx.recv_timeout(Duration::from_secs(20))?;
    assert!(test.join().is_err(), "the thread did not panic");
    assert!(
        !accepts_connections(port),
        "etcd outlived the panicking test"
    );
    Ok(())
}

#[test]
fn restart_after_kill_keeps_the_data_and_the_port() -> Result {
    let mut etcd = EtcdServer::start()?;
    let port = etcd.port();
    etcdctl_ok(&etcd, &[], &["put", "survivor", "still here"])?;

    etcd.kill();
    assert!(!etcd.is_running());
    assert!(!accepts_connections(port), "etcd still listens after kill");
    etcd.kill(); // killing a dead server is harmless

    let started = Instant::now();
    etcd.restart()?;
    eprintln!("etcd restarted in {:?}", started.elapsed());
    assert!(etcd.is_running());
    assert_eq!(etcd.port(), port);
    assert_eq!(
        etcdctl_ok(&etcd, &[], &["get", "--print-value-only", "survivor"])?,
        "still here\n"
    );

    // Restarting a running server works too.
    etcd.restart()?;
    assert_eq!(
        etcdctl_ok(&etcd, &[], &["get", "--print-value-only", "survivor"])?,
        "still here\n"
    );
    Ok(())
}

#[test]
fn tls_server_answers_clients_that_trust_its_ca_only() -> Result {
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: true,
        ..EtcdOptions::default()
    })?;
    assert_eq!(etcd.protocol(), "https");
    assert_eq!(
        etcd.endpoint(),
        format!("https://127.0.0.1:{}", etcd.port())
    );
    let ca = etcd.ca_cert().ok_or("no CA certificate")?.to_owned();
    assert!(std::fs::read_to_string(&ca)?.starts_with("-----BEGIN CERTIFICATE-----"));
    let env = etcd.env();
    assert!(env.contains(&("SDP_CONFIG_PROTOCOL".to_owned(), "https".to_owned())));
    assert!(env.contains(&("SDP_CONFIG_CERT".to_owned(), ca.display().to_string())));

    etcdctl_ok(&etcd, &[], &["put", "secret", "sauce"])?;
    assert_eq!(
        etcdctl_ok(&etcd, &[], &["get", "--print-value-only", "secret"])?,
        "sauce\n"
    );

    // The certificate chain verifies for the IP and the name, with our CA only.
    let verify = |trust: &[&str], peer: &[&str]| -> Result<Output> {
        Ok(Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", etcd.port()),
            ])
            .args(["-verify_return_error", "-no-CApath", "-no-CAstore"])
            .args(trust)
            .args(peer)
            .stdin(Stdio::null())
            .output()?)
    };
    let ca_file = ["-CAfile", ca.to_str().ok_or("CA path not UTF-8")?];
    for peer in [
        ["-verify_ip", "127.0.0.1"],
        ["-verify_hostname", "localhost"],
    ] {
        let trusted = verify(&ca_file, &peer)?;
        let stdout = String::from_utf8_lossy(&trusted.stdout);
        assert!(
            stdout.contains("Verify return code: 0 (ok)"),
            "{peer:?}: {stdout}"
        );
        let untrusted = verify(&[], &peer)?;
        assert!(!untrusted.status.success(), "verified without our CA");
        assert!(stderr(&untrusted).contains("unable to get local issuer certificate"));
    }
    let wrong_name = verify(&ca_file, &["-verify_hostname", "example.org"])?;
    assert!(
        !wrong_name.status.success(),
        "certificate valid for any name"
    );

    // Plain HTTP is not served on the client port.
    let plain = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://127.0.0.1:{}", etcd.port()))
        .args(["--dial-timeout=1s", "--command-timeout=1s", "get", "secret"])
        .output()?;
    assert!(!plain.status.success(), "plain HTTP served on a TLS port");

    drop(etcd);
    assert!(!ca.exists(), "temporary directory left behind");
    Ok(())
}

#[test]
fn auth_rejects_a_wrong_password_and_accepts_the_right_one() -> Result {
    let etcd = EtcdServer::start_with(EtcdOptions {
        auth: Some(("sdp".to_owned(), "s3cret".to_owned())),
        ..EtcdOptions::default()
    })?;
    let env = etcd.env();
    assert!(env.contains(&("SDP_CONFIG_USERNAME".to_owned(), "sdp".to_owned())));
    assert!(env.contains(&("SDP_CONFIG_PASSWORD".to_owned(), "s3cret".to_owned())));

    let wrong = etcdctl(
        &etcd,
        &["--user=sdp", "--password=wrong"],
        &["put", "k", "v"],
    )?;
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("authentication failed"),
        "{}",
        stderr(&wrong)
    );
    let anonymous = etcdctl(&etcd, &[], &["put", "k", "v"])?;
    assert!(!anonymous.status.success(), "auth is not enabled");

    let right = ["--user=sdp", "--password=s3cret"];
    etcdctl_ok(&etcd, &right, &["put", "/pb/pb-1", "v"])?;
    etcdctl_ok(&etcd, &right, &["put", "any/other/key", "w"])?;
    assert_eq!(
        etcdctl_ok(&etcd, &right, &["get", "--print-value-only", "/pb/pb-1"])?,
        "v\n"
    );
    // The harness's own etcdctl calls work under auth.
    etcd.compact()?;
    Ok(())
}

#[test]
fn auth_as_root_uses_the_given_password() -> Result {
    let etcd = EtcdServer::start_with(EtcdOptions {
        auth: Some(("root".to_owned(), "rootpw".to_owned())),
        ..EtcdOptions::default()
    })?;
    let wrong = etcdctl(&etcd, &["--user=root", "--password=nope"], &["get", "k"])?;
    assert!(!wrong.status.success());
    etcdctl_ok(
        &etcd,
        &["--user=root", "--password=rootpw"],
        &["put", "k", "v"],
    )?;
    Ok(())
}

#[test]
fn tls_and_auth_together_keep_metrics_compaction_and_restart_working() -> Result {
    let mut etcd = EtcdServer::start_with(EtcdOptions {
        tls: true,
        auth: Some(("sdp".to_owned(), "pw".to_owned())),
        ..EtcdOptions::default()
    })?;
    assert_eq!(etcd.env().len(), 6);
    let creds = ["--user=sdp", "--password=pw"];
    let puts = etcd.grpc_requests("Put")?;
    etcdctl_ok(&etcd, &creds, &["put", "k", "v"])?;
    assert_eq!(etcd.grpc_requests("Put")?, puts + 1);
    etcd.compact()?;

    etcd.restart()?;
    assert_eq!(
        etcdctl_ok(&etcd, &creds, &["get", "--print-value-only", "k"])?,
        "v\n"
    );
    let wrong = etcdctl(&etcd, &["--user=sdp", "--password=x"], &["get", "k"])?;
    assert!(!wrong.status.success(), "auth lost on restart");
    Ok(())
}

#[test]
fn metrics_are_etcds_prometheus_text() -> Result {
    let etcd = EtcdServer::start()?;
    let metrics = etcd.metrics()?;
    assert!(
        metrics.lines().any(|l| l == "etcd_server_has_leader 1"),
        "no leader in metrics"
    );
    assert!(metrics.contains("# TYPE grpc_server_handled_total counter"));
    Ok(())
}

#[test]
fn grpc_requests_count_each_call_of_the_method() -> Result {
    let etcd = EtcdServer::start()?;
    let puts = etcd.grpc_requests("Put")?;
    let ranges = etcd.grpc_requests("Range")?;

    etcdctl_ok(&etcd, &[], &["put", "a", "1"])?;
    assert_eq!(etcd.grpc_requests("Put")?, puts + 1);
    etcdctl_ok(&etcd, &[], &["put", "b", "2"])?;
    assert_eq!(etcd.grpc_requests("Put")?, puts + 2);
    assert_eq!(etcd.grpc_requests("Range")?, ranges);

    let unknown = etcd.grpc_requests("Putt");
    assert!(unknown.is_err(), "a misspelt method reads as {unknown:?}");
    Ok(())
}

#[test]
fn compact_makes_old_revisions_unreadable() -> Result {
    let etcd = EtcdServer::start()?;
    etcdctl_ok(&etcd, &[], &["put", "k", "old"])?; // revision 2
    etcdctl_ok(&etcd, &[], &["put", "k", "new"])?; // revision 3
    assert_eq!(
        etcdctl_ok(&etcd, &[], &["get", "--rev=2", "--print-value-only", "k"])?,
        "old\n"
    );

    etcd.compact()?;
    let old = etcdctl(&etcd, &[], &["get", "--rev=2", "k"])?;
    assert!(!old.status.success());
    assert!(
        stderr(&old).contains("required revision has been compacted"),
        "{}",
        stderr(&old)
    );
    assert_eq!(
        etcdctl_ok(&etcd, &[], &["get", "--print-value-only", "k"])?,
        "new\n"
    );
    etcd.compact()?; // nothing new to compact: still fine
    Ok(())
}

#[test]
fn two_servers_at_once_are_independent() -> Result {
    let (a, b) = (EtcdServer::start()?, EtcdServer::start()?);
    assert_ne!(a.port(), b.port());
    etcdctl_ok(&a, &[], &["put", "only-in-a", "1"])?;
    assert_eq!(etcdctl_ok(&b, &[], &["get", "only-in-a"])?, "");
    assert_eq!(
        etcdctl_ok(&a, &[], &["get", "--print-value-only", "only-in-a"])?,
        "1\n"
    );
    Ok(())
}

#[test]
fn limits_reach_etcd() -> Result {
    let etcd = EtcdServer::start_with(EtcdOptions {
        max_txn_ops: Some(2),
        quota_bytes: Some(16 * 1024 * 1024),
        ..EtcdOptions::default()
    })?;
    let txn = |puts: usize| -> Result<Output> {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoint()))
            .args(["txn", "--interactive=false"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Empty compare list, then the success requests, then the failure requests.
        let ops: String = (0..puts).map(|i| format!("put k{i} v\n")).collect();
        let script = format!("\n{ops}\n\n");
        std::io::Write::write_all(child.stdin.as_mut().ok_or("no stdin")?, script.as_bytes())?;
        Ok(child.wait_with_output()?)
    };
    let small = txn(2)?;
    assert!(small.status.success(), "{}", stderr(&small));
    let big = txn(3)?;
    assert!(!big.status.success());
    assert!(
        stderr(&big).contains("too many operations in txn request"),
        "{}",
        stderr(&big)
    );
    assert!(
        etcd.metrics()?
            .lines()
            .any(|l| l == "etcd_server_quota_backend_bytes 1.6777216e+07"),
        "quota not applied"
    );
    Ok(())
}

#[test]
fn periodic_auto_compaction_compacts_by_itself() -> Result {
    let etcd = EtcdServer::start_with(EtcdOptions {
        auto_compaction: Some("1s".to_owned()),
        ..EtcdOptions::default()
    })?;
    etcdctl_ok(&etcd, &[], &["put", "k", "old"])?; // revision 2
    etcdctl_ok(&etcd, &[], &["put", "k", "new"])?; // revision 3
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let old = etcdctl(&etcd, &[], &["get", "--rev=2", "k"])?;
        if stderr(&old).contains("required revision has been compacted") {
            return Ok(());
        }
        assert!(Instant::now() < deadline, "revision 2 never compacted");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn free_ports_are_bindable() -> Result {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port))?;
    Ok(())
}

#[tokio::test]
async fn the_projects_etcd_client_connects_with_tls_and_auth() -> Result {
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: true,
        auth: Some(("sdp".to_owned(), "pw".to_owned())),
        ..EtcdOptions::default()
    })?;
    let pem = std::fs::read(etcd.ca_cert().ok_or("no CA certificate")?)?;
    let tls =
        etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(pem));
    let options = etcd_client::ConnectOptions::new()
        .with_tls(tls)
        .with_user("sdp", "pw")
        .with_connect_timeout(Duration::from_secs(5));
    let mut client = etcd_client::Client::connect([etcd.endpoint()], Some(options)).await?;
    client.put("from-rust", "ok", None).await?;
    let got = client.get("from-rust", None).await?;
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"ok"[..]));

    let wrong = etcd_client::ConnectOptions::new()
        .with_tls(etcd_client::TlsOptions::new().ca_certificate(
            etcd_client::Certificate::from_pem(std::fs::read(
                etcd.ca_cert().ok_or("no CA certificate")?,
            )?),
        ))
        .with_user("sdp", "wrong");
    let rejected = etcd_client::Client::connect([etcd.endpoint()], Some(wrong)).await;
    assert!(rejected.is_err(), "wrong password accepted");
    Ok(())
}
