//! Connecting to a real etcd: plain, TLS, user/password authentication, an unreachable
//! endpoint, and `connect_retrying` waiting for an etcd that comes (back) later.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sdp_config::{Config, ConnectionSettings, Error, Protocol};
use sdp_testing::{EtcdOptions, EtcdServer, free_port};
use tokio_util::sync::CancellationToken;

/// Settings read from the `SDP_CONFIG_*` variables the harness gives a child process.
fn settings_from_env(etcd: &EtcdServer) -> Result<ConnectionSettings> {
    let env = etcd.env();
    Ok(ConnectionSettings::from_lookup(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })?)
}

#[test]
fn a_child_process_environment_means_the_same_connection_as_the_harness_settings() -> Result<()> {
    for opts in [
        EtcdOptions::default(),
        EtcdOptions {
            tls: true,
            auth: Some(("sdp".into(), "s3cret".into())),
            ..Default::default()
        },
    ] {
        let etcd = EtcdServer::start_with(opts)?;
        ensure!(
            settings_from_env(&etcd)? == etcd.connection(),
            "{:?}",
            etcd.env()
        );
    }
    Ok(())
}

/// Write a key and read it back through a fresh transaction.
async fn round_trip(db: &Config, path: &'static str) -> Result<()> {
    db.transact(|t| Box::pin(async move { t.put(path, "{}") }))
        .await?;
    let read = db
        .transact(|t| Box::pin(async move { t.get(path).await }))
        .await?;
    ensure!(read.as_deref() == Some("{}"), "read back {read:?}");
    Ok(())
}

#[tokio::test]
async fn connects_to_a_plain_etcd_and_reports_its_endpoint() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let db = Config::connect(&etcd.connection()).await?;
    assert_eq!(db.endpoint(), etcd.endpoint());
    round_trip(&db, "/conn/plain").await
}

#[tokio::test]
async fn tls_with_the_ca_certificate_from_the_environment_connects() -> Result<()> {
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: true,
        ..Default::default()
    })?;
    let s = etcd.connection();
    assert_eq!(
        s.protocol,
        Protocol::Https,
        "SDP_CONFIG_PROTOCOL=https is read"
    );
    assert_eq!(s.cert.as_deref(), etcd.ca_cert(), "SDP_CONFIG_CERT is read");
    let db = Config::connect(&s).await?;
    assert!(db.endpoint().starts_with("https://"), "{}", db.endpoint());
    round_trip(&db, "/conn/tls").await
}

#[tokio::test]
async fn tls_without_the_ca_certificate_is_refused_with_an_error_naming_the_endpoint() -> Result<()>
{
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: true,
        ..Default::default()
    })?;
    let s = ConnectionSettings {
        cert: None,
        timeout_secs: 5.0,
        ..etcd.connection()
    };
    let started = Instant::now();
    let err = match Config::connect(&s).await {
        Ok(_) => bail!("connected over TLS without trusting the server's CA"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::ConnectFailed { .. }), "{err:?}");
    assert!(err.to_string().contains(&etcd.endpoint()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn plain_http_against_a_tls_etcd_fails() -> Result<()> {
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: true,
        ..Default::default()
    })?;
    let s = ConnectionSettings {
        protocol: Protocol::Http,
        timeout_secs: 5.0,
        ..etcd.connection()
    };
    let err = Config::connect(&s)
        .await
        .err()
        .context("connected with http to a TLS-only etcd")?;
    assert!(matches!(err, Error::ConnectFailed { .. }), "{err:?}");
    Ok(())
}

fn auth_options() -> EtcdOptions {
    EtcdOptions {
        auth: Some(("sdp".into(), "secret".into())),
        ..Default::default()
    }
}

#[tokio::test]
async fn user_and_password_from_the_environment_authenticate() -> Result<()> {
    let etcd = EtcdServer::start_with(auth_options())?;
    let s = etcd.connection();
    assert_eq!(
        (s.username.as_deref(), s.password.as_deref()),
        (Some("sdp"), Some("secret"))
    );
    let db = Config::connect(&s).await?;
    round_trip(&db, "/conn/auth").await
}

#[tokio::test]
async fn a_wrong_password_is_an_error_naming_the_endpoint() -> Result<()> {
    let etcd = EtcdServer::start_with(auth_options())?;
    let s = ConnectionSettings {
        password: Some("wrong".into()),
        ..etcd.connection()
    };
    let err = Config::connect(&s)
        .await
        .err()
        .context("connected with a wrong password")?;
    assert!(matches!(err, Error::ConnectFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&etcd.endpoint()), "{text}");
    assert!(
        text.contains("authentication failed"),
        "etcd's reason is kept: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn no_credentials_against_an_etcd_with_auth_is_an_error() -> Result<()> {
    let etcd = EtcdServer::start_with(auth_options())?;
    let s = ConnectionSettings {
        username: None,
        password: None,
        ..etcd.connection()
    };
    let err = Config::connect(&s)
        .await
        .err()
        .context("connected without credentials")?;
    assert!(matches!(err, Error::ConnectFailed { .. }), "{err:?}");
    assert!(err.to_string().contains(&etcd.endpoint()), "{err}");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_with_an_error_naming_it() -> Result<()> {
    let port = free_port();
    // The default request timeout (10 s): failing fast must not rely on running it out.
    let s = ConnectionSettings {
        port,
        ..Default::default()
    };
    let started = Instant::now();
    let err = Config::connect(&s)
        .await
        .err()
        .context("connected to a port nobody listens on")?;
    let took = started.elapsed();
    eprintln!("unreachable endpoint reported after {took:?}: {err}");
    assert!(matches!(err, Error::ConnectFailed { .. }), "{err:?}");
    assert!(err.is_transient(), "worth retrying: {err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to report an unreachable endpoint"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retrying_connects_once_etcd_comes_back() -> Result<()> {
    let mut etcd = EtcdServer::start()?;
    let s = etcd.connection();
    etcd.kill();
    let cancel = CancellationToken::new();
    let connecting = tokio::spawn({
        let (s, cancel) = (s.clone(), cancel.clone());
        async move { Config::connect_retrying(&s, &cancel).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        !connecting.is_finished(),
        "connect_retrying returned while etcd was down"
    );
    // etcd comes back on the same port with the same data.
    let etcd = tokio::task::spawn_blocking(move || etcd.restart().map(|()| etcd)).await??;
    let db = tokio::time::timeout(Duration::from_secs(20), connecting)
        .await
        .context("connect_retrying did not connect within 20 s of etcd's restart")???;
    round_trip(&db, "/conn/retried").await?;
    drop(etcd);
    Ok(())
}

#[tokio::test]
async fn connect_retrying_returns_cancelled_when_cancelled() -> Result<()> {
    let s = ConnectionSettings {
        port: free_port(),
        ..Default::default()
    };
    let cancel = CancellationToken::new();
    let connecting = tokio::spawn({
        let (s, cancel) = (s.clone(), cancel.clone());
        async move { Config::connect_retrying(&s, &cancel).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        !connecting.is_finished(),
        "connect_retrying gave up on its own"
    );
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .context("connect_retrying ignored cancellation")??;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    Ok(())
}
