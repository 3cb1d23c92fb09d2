//! The `sdpcfg` binary against a real etcd: for every command, standard output,
//! standard error and exit status compared exactly with what the Python `sdpcfg` prints
//! for the same database contents (expected text written from the wire format's
//! description of the tool), error cases included.
//!
//! Each test starts its own etcd; the tool sees it only through `SDP_CONFIG_*`.
//! The new commands (`status`, `workflows`, `process --wait`, `retry`, `guard`) have no Python
//! counterpart: their expected text is this project's own (golden text).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "sdpcfg/harness.rs"]
mod harness;

#[path = "sdpcfg/edit.rs"]
mod edit;
#[path = "sdpcfg/errors.rs"]
mod errors;
#[path = "sdpcfg/guard.rs"]
mod guard;
#[path = "sdpcfg/process_deploy.rs"]
mod process_deploy;
#[path = "sdpcfg/process_wait.rs"]
mod process_wait;
#[path = "sdpcfg/retry.rs"]
mod retry;
#[path = "sdpcfg/status.rs"]
mod status;
#[path = "sdpcfg/watch.rs"]
mod watch;

use harness::{Db, fails, ok, sdpcfg};
use sdp_testing::{EtcdServer, free_port};

fn start() -> (EtcdServer, Db) {
    let etcd = EtcdServer::start().expect("etcd starts");
    let db = Db::new(&etcd);
    (etcd, db)
}

/// `SDP_CONFIG_*` pointing at a port nothing listens on: a command that got as far as
/// connecting would fail with "cannot reach", not with the message a test expects.
fn nowhere() -> Vec<(String, String)> {
    vec![
        ("SDP_CONFIG_HOST".into(), "127.0.0.1".into()),
        ("SDP_CONFIG_PORT".into(), free_port().to_string()),
    ]
}

#[test]
fn get_prints_the_stored_text_or_none() {
    let (etcd, db) = start();
    db.put(&[("/master", "{\n  \"state\": \"on\"\n}")]);
    assert_eq!(
        sdpcfg(&etcd, &["get", "/master"]).run(),
        ok("/master = {\n  \"state\": \"on\"\n}\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["get", "/nothing"]).run(),
        ok("/nothing = None\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["-q", "get", "/master"]).run(),
        ok("{\n  \"state\": \"on\"\n}\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["get", "/master", "-q"]).run(),
        ok("{\n  \"state\": \"on\"\n}\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["get", "--quiet", "/nothing"]).run(),
        ok("None\n")
    );
}

fn seed_blocks(db: &Db) {
    db.put(&[
        ("/pb/a", "{\"pb_id\": \"a\"}"),
        ("/pb/b", "plain text"),
        ("/pb/a/state", "{}"),
        ("/pbx", "beside"),
        ("/deploy/d", "{}"),
    ]);
}

#[test]
fn ls_lists_the_keys_at_the_prefix_depth() {
    let (etcd, db) = start();
    seed_blocks(&db);
    assert_eq!(
        sdpcfg(&etcd, &["ls", "/pb/"]).run(),
        ok("Keys with /pb/ prefix: /pb/a, /pb/b\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["list", "/pb/"]).run(),
        ok("Keys with /pb/ prefix: /pb/a, /pb/b\n")
    );
    // A prefix, not a directory: `/pb` at depth 1 matches `/pbx` too (as in Python).
    assert_eq!(
        sdpcfg(&etcd, &["ls", "/pb"]).run(),
        ok("Keys with /pb prefix: /pbx\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["ls", "/pb/a"]).run(),
        ok("Keys with /pb/a prefix: /pb/a\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["ls", "/sb/"]).run(),
        ok("Keys with /sb/ prefix: \n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["-q", "ls", "/pb/"]).run(),
        ok("/pb/a /pb/b\n")
    );
    assert_eq!(sdpcfg(&etcd, &["ls", "-q", "/sb/"]).run(), ok("\n"));
}

#[test]
fn ls_recursive_lists_exactly_eight_levels_below() {
    let (etcd, db) = start();
    // /r/k at depth 2, then one key per level down to depth 12.
    let mut paths = vec!["/r/k".to_string()];
    for level in 1..=10 {
        paths.push(format!("{}/{level}", paths.last().unwrap()));
    }
    let entries: Vec<(&str, &str)> = paths.iter().map(|p| (p.as_str(), "v")).collect();
    db.put(&entries);
    // Depth 2 (the prefix's own) to depth 10: nine keys, not the two deepest.
    let expected = paths[..9].join(", ");
    assert_eq!(
        sdpcfg(&etcd, &["ls", "-R", "/r/"]).run(),
        ok(&format!("Keys with /r/ prefix: {expected}\n"))
    );
    assert_eq!(
        sdpcfg(&etcd, &["-q", "list", "/r/", "-R"]).run(),
        ok(&format!("{}\n", paths[..9].join(" ")))
    );
    assert_eq!(
        sdpcfg(&etcd, &["ls", "/r/"]).run(),
        ok("Keys with /r/ prefix: /r/k\n")
    );
}

#[test]
fn ls_values_prints_each_key_with_its_value() {
    let (etcd, db) = start();
    seed_blocks(&db);
    let expected = "Keys with /pb/ prefix:\n/pb/a = {\"pb_id\": \"a\"}\n/pb/b = plain text\n";
    assert_eq!(sdpcfg(&etcd, &["ls", "values", "/pb/"]).run(), ok(expected));
    assert_eq!(
        sdpcfg(&etcd, &["ls", "values", "-R", "/pb/"]).run(),
        ok(
            "Keys with /pb/ prefix:\n/pb/a = {\"pb_id\": \"a\"}\n/pb/a/state = {}\n/pb/b = plain text\n"
        )
    );
    // Quiet: the bare values, space-separated, as the Python tool joins them.
    assert_eq!(
        sdpcfg(&etcd, &["-q", "ls", "values", "/pb/"]).run(),
        ok("{\"pb_id\": \"a\"} plain text\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["ls", "values", "/sb/"]).run(),
        ok("Keys with /sb/ prefix:\n")
    );
}

#[test]
fn create_stores_the_text_exactly_as_typed() {
    let (etcd, db) = start();
    let typed = "  {\"b\":1,   \"a\" : [ 2 ]}\n\t";
    assert_eq!(sdpcfg(&etcd, &["create", "/sb/x", typed]).run(), ok("OK\n"));
    assert_eq!(db.get("/sb/x").as_deref(), Some(typed));
    assert_eq!(
        sdpcfg(&etcd, &["get", "/sb/x"]).run(),
        ok(&format!("/sb/x = {typed}\n"))
    );
    assert_eq!(sdpcfg(&etcd, &["-q", "create", "/sb/y", "1"]).run(), ok(""));
    assert_eq!(sdpcfg(&etcd, &["create", "/sb/z", "-5"]).run(), ok("OK\n"));
    assert_eq!(
        sdpcfg(&etcd, &["create", "/sb/w", "--", "--flag-like"]).run(),
        ok("OK\n")
    );
    assert_eq!(db.get("/sb/w").as_deref(), Some("--flag-like"));
}

#[test]
fn create_on_an_existing_key_fails_and_changes_nothing() {
    let (etcd, db) = start();
    db.put(&[("/sb/x", "old")]);
    assert_eq!(
        sdpcfg(&etcd, &["create", "/sb/x", "new"]).run(),
        fails("Error: /sb/x already exists\n")
    );
    assert_eq!(db.get("/sb/x").as_deref(), Some("old"));
}

#[test]
fn update_replaces_an_existing_value_and_fails_on_a_missing_key() {
    let (etcd, db) = start();
    db.put(&[("/sb/x", "old")]);
    assert_eq!(
        sdpcfg(&etcd, &["update", "/sb/x", " new\n"]).run(),
        ok("OK\n")
    );
    assert_eq!(db.get("/sb/x").as_deref(), Some(" new\n"));
    assert_eq!(
        sdpcfg(&etcd, &["update", "/sb/y", "v"]).run(),
        fails("Error: /sb/y does not exist\n")
    );
    assert_eq!(db.get("/sb/y"), None);
}

#[test]
fn a_dash_reads_the_value_from_stdin() {
    let (etcd, db) = start();
    let text = "{\n  \"from\": \"stdin\"\n}\n";
    assert_eq!(
        sdpcfg(&etcd, &["create", "/sb/x", "-"]).stdin(text).run(),
        ok("OK\n")
    );
    assert_eq!(db.get("/sb/x").as_deref(), Some(text));
    assert_eq!(
        sdpcfg(&etcd, &["update", "/sb/x", "-"])
            .stdin("again")
            .run(),
        ok("OK\n")
    );
    assert_eq!(db.get("/sb/x").as_deref(), Some("again"));
}

#[test]
fn delete_removes_one_key_and_fails_on_a_missing_key() {
    let (etcd, db) = start();
    db.put(&[("/sb/x", "v"), ("/sb/x/child", "c")]);
    assert_eq!(sdpcfg(&etcd, &["delete", "/sb/x"]).run(), ok("OK\n"));
    assert_eq!(db.keys("/sb/"), ["/sb/x/child"]);
    assert_eq!(
        sdpcfg(&etcd, &["delete", "/sb/x"]).run(),
        fails("Error: /sb/x does not exist\n")
    );
}

#[test]
fn delete_recursive_removes_the_subtree_and_nothing_beside_it() {
    let (etcd, db) = start();
    db.put(&[
        ("/pb/a", "1"),
        ("/pb/a/owner", "2"),
        ("/pb/a/state", "3"),
        ("/pb/a/x/y", "4"),
        ("/pb/ab", "5"),
        ("/pb/ab/state", "6"),
        ("/pb/b", "7"),
        ("/pba", "8"),
    ]);
    assert_eq!(
        sdpcfg(&etcd, &["delete", "-R", "/pb/a"]).run(),
        ok("/pb/a\n/pb/a/owner\n/pb/a/state\n/pb/a/x/y\nOK\n")
    );
    assert_eq!(db.keys("/pb/"), ["/pb/ab", "/pb/ab/state", "/pb/b"]);
    assert_eq!(db.get("/pba").as_deref(), Some("8"));
    // Nothing left to delete is not an error (as in Python); quiet prints nothing.
    assert_eq!(sdpcfg(&etcd, &["delete", "-R", "/pb/a"]).run(), ok("OK\n"));
    assert_eq!(
        sdpcfg(&etcd, &["-q", "delete", "/pb/ab", "-R"]).run(),
        ok("")
    );
    assert_eq!(db.keys("/pb/"), ["/pb/b"]);
}

#[test]
fn delete_recursive_of_a_large_subtree_works_in_chunks() {
    let (etcd, db) = start();
    let paths: Vec<String> = (0..250).map(|i| format!("/big/t/{i:03}")).collect();
    let mut entries: Vec<(&str, &str)> = paths.iter().map(|p| (p.as_str(), "v")).collect();
    entries.push(("/big/t", "root"));
    entries.push(("/big/u", "beside"));
    db.put(&entries);
    let expected: String = std::iter::once("/big/t".to_string())
        .chain(paths.iter().cloned())
        .map(|p| p + "\n")
        .collect::<String>()
        + "OK\n";
    assert_eq!(
        sdpcfg(&etcd, &["delete", "-R", "/big/t"]).run(),
        ok(&expected)
    );
    assert_eq!(db.keys("/big/"), ["/big/u"]);
}
