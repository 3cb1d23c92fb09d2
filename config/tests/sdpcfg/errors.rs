//! `--prefix`, the input checks with the Python messages, usage errors, `--help`, and
//! connection settings (unreachable etcd, TLS with authentication).

use std::time::{Duration, Instant};

use sdp_testing::{EtcdOptions, EtcdServer, free_port};

use crate::harness::{Db, fails, ok, sdpcfg, sdpcfg_with_env, today};
use crate::{nowhere, start};

#[test]
fn prefix_isolates_a_key_space() {
    let (etcd, db) = start();
    assert_eq!(
        sdpcfg(&etcd, &["--prefix", "/test", "create", "/pb/x", "v"]).run(),
        ok("OK\n")
    );
    assert_eq!(db.get("/test/pb/x").as_deref(), Some("v"));
    assert_eq!(sdpcfg(&etcd, &["get", "/pb/x"]).run(), ok("/pb/x = None\n"));
    assert_eq!(
        sdpcfg(&etcd, &["get", "/pb/x", "--prefix", "/test"]).run(),
        ok("/pb/x = v\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["--prefix=/test", "ls", "/pb/"]).run(),
        ok("Keys with /pb/ prefix: /pb/x\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["ls", "/pb/"]).run(),
        ok("Keys with /pb/ prefix: \n")
    );
    let day = today();
    assert_eq!(
        sdpcfg(&etcd, &["--prefix", "/test", "process", "batch:x:1"]).run(),
        ok(&format!("OK, pb_id = batch-{day}-0000\n"))
    );
    assert!(db.get(&format!("/test/pb/batch-{day}-0000")).is_some());
}

#[test]
fn bad_input_is_refused_before_connecting_with_the_python_messages() {
    let cases: [(&[&str], &str); 14] = [
        (&["get", "pb/x"], "Path must start with '/'!\n"),
        (&["watch", "x"], "Path must start with '/'!\n"),
        (&["ls", "pb/"], "Path must start with '/'!\n"),
        (&["delete", "x"], "Path must start with '/'!\n"),
        (&["create", "pb/x", "v"], "Path must start with '/'!\n"),
        (
            &["create", "/pb/x/", "v"],
            "Key path must not end with '/'!\n",
        ),
        (
            &["update", "/pb/", "v"],
            "Key path must not end with '/'!\n",
        ),
        (
            &["get", "/pb/a b"],
            "Path contains non-permissable characters!\n",
        ),
        (
            &["create", "/pb/a.b", "v"],
            "Path contains non-permissable characters!\n",
        ),
        (
            &["create", "pb/a:b/", "v"],
            "Path must start with '/'!\nKey path must not end with '/'!\nPath contains non-permissable characters!\n",
        ),
        (
            &["process", "realtime:testdask"],
            "Please specify workflow as 'type:name:version'!\n",
        ),
        (
            &["process", "realtime:testdask:0.1.0:x", "{}"],
            "Please specify workflow as 'type:name:version'!\n",
        ),
        (
            &["process", "interactive:testdask:0.1.0"],
            "Workflow type must be 'realtime' or 'batch'!\n",
        ),
        (&["edit", "/sb/"], "Key path must not end with '/'!\n"),
    ];
    for (args, stderr) in cases {
        assert_eq!(
            sdpcfg_with_env(nowhere(), args).run(),
            fails(stderr),
            "{args:?}"
        );
    }
    // `/workflow/` keys may hold ':' and '.'; this gets as far as connecting.
    let out = sdpcfg_with_env(nowhere(), &["get", "/workflow/realtime:testdask:0.1.0"]).run();
    assert!(
        out.stderr
            .starts_with("Error: cannot reach the configuration database"),
        "{}",
        out.stderr
    );
}

#[test]
fn words_outside_the_grammar_are_usage_errors_with_exit_status_1() {
    for args in [
        &["frob", "/x"][..],
        &["create", "/x"],
        &["get", "-R", "/x"],
        &[],
        &["--bogus", "get", "/x"],
    ] {
        let out = sdpcfg_with_env(nowhere(), args).run();
        assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{args:?}");
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("Usage: sdpcfg [options] (get|watch) <path>"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn help_documents_every_command_with_an_example_and_the_environment() {
    let out = sdpcfg_with_env(vec![], &["--help"]).run();
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let help = out.stdout;
    for command in [
        "get", "watch", "ls|list", "create", "update", "delete", "edit", "process", "deploy",
        "retry",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} missing:\n{help}"
        );
        assert!(
            help.contains(&format!("sdpcfg {}", command.split('|').next().unwrap())),
            "no example for {command}"
        );
    }
    for (var, default) in [
        ("SDP_CONFIG_HOST", "127.0.0.1"),
        ("SDP_CONFIG_PORT", "2379"),
        ("SDP_CONFIG_PROTOCOL", "http"),
        ("SDP_CONFIG_CERT", "default"),
        ("SDP_CONFIG_USERNAME", "default"),
        ("SDP_CONFIG_PASSWORD", "default"),
        ("EDITOR", "vi"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{var} ")))
            .unwrap_or_else(|| panic!("{var}:\n{help}"));
        let described = help
            .split(line)
            .nth(1)
            .unwrap()
            .lines()
            .take(2)
            .collect::<String>()
            + line;
        assert!(
            described.contains(default),
            "{var} lacks its default: {described}"
        );
    }
    assert!(
        help.contains("-q, --quiet") && help.contains("--prefix <PREFIX>") && help.contains("'-'"),
        "{help}"
    );
}

#[test]
fn an_unreachable_etcd_is_one_line_naming_the_endpoint() {
    let port = free_port();
    let env = vec![
        ("SDP_CONFIG_HOST".into(), "127.0.0.1".into()),
        ("SDP_CONFIG_PORT".into(), port.to_string()),
    ];
    let started = Instant::now();
    let out = sdpcfg_with_env(env, &["get", "/x"]).run();
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    assert_eq!(
        out.stderr,
        format!(
            "Error: cannot reach the configuration database at http://127.0.0.1:{port}: tcp connect error: Connection refused (os error 111)\n"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn tls_and_authentication_come_from_the_environment() {
    let etcd = EtcdServer::start_with(EtcdOptions {
        tls: true,
        auth: Some(("sdp".into(), "s3cret".into())),
        ..Default::default()
    })
    .expect("etcd with TLS and auth starts");
    let env: Vec<String> = etcd.env().into_iter().map(|(k, _)| k).collect();
    for var in [
        "SDP_CONFIG_PROTOCOL",
        "SDP_CONFIG_CERT",
        "SDP_CONFIG_USERNAME",
        "SDP_CONFIG_PASSWORD",
    ] {
        assert!(env.iter().any(|k| k == var), "{var} not set by the harness");
    }
    assert_eq!(
        sdpcfg(&etcd, &["create", "/sb/x", "{\"secure\": true}"]).run(),
        ok("OK\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["get", "/sb/x"]).run(),
        ok("/sb/x = {\"secure\": true}\n")
    );
    let db = Db::with_settings(etcd.connection());
    assert_eq!(db.get("/sb/x").as_deref(), Some("{\"secure\": true}"));
    let out = sdpcfg(&etcd, &["get", "/sb/x"])
        .env("SDP_CONFIG_PASSWORD", "wrong")
        .run();
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    assert_eq!(
        out.stderr,
        format!(
            "Error: cannot reach the configuration database at {}: etcdserver: authentication failed, invalid user ID or password\n",
            etcd.endpoint()
        )
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}
