//! `edit`: YAML round trip through `$EDITOR` (a sed script here), run without a shell.

use sdp_testing::EtcdServer;

use crate::harness::{Outcome, fails, ok, sdpcfg};
use crate::start;

/// A directory with an "editor": a shell script that applies `sed -e <its first
/// argument>` to the file it is given last.
fn editor_dir() -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("edit.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\nfor f in \"$@\"; do file=\"$f\"; done\nsed -i -e \"$1\" \"$file\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.display().to_string();
    (dir, script)
}

fn edit_with(etcd: &EtcdServer, editor: &str, path: &str) -> Outcome {
    sdpcfg(etcd, &["edit", path])
        .env("EDITOR", editor)
        .env("PATH", "/usr/bin:/bin")
        .run()
}

#[test]
fn edit_round_trips_through_yaml_and_stores_python_formatted_json() {
    let (etcd, db) = start();
    let (_dir, script) = editor_dir();
    db.put(&[(
        "/deploy/d",
        r#"{"type":"helm","deploy_id":"d","args":{"chart":"c","values":{"worker.replicas":2}}}"#,
    )]);
    // EDITOR is split on whitespace: the script gets the sed script, then the file.
    assert_eq!(
        edit_with(
            &etcd,
            &format!("{script} s/2$/3/;$aextra:\\x20[1,\\x20a]"),
            "/deploy/d"
        ),
        ok("OK\n")
    );
    assert_eq!(
        db.get("/deploy/d").unwrap(),
        "{\n  \"args\": {\n    \"chart\": \"c\",\n    \"values\": {\n      \"worker.replicas\": 3\n    }\n  },\n  \"deploy_id\": \"d\",\n  \"extra\": [\n    1,\n    \"a\"\n  ],\n  \"type\": \"helm\"\n}"
    );
    // Plain text values are edited as they are.
    db.put(&[("/sb/t", "hello")]);
    assert_eq!(
        edit_with(&etcd, &format!("{script} s/hello/bye/"), "/sb/t"),
        ok("OK\n")
    );
    assert_eq!(db.get("/sb/t").as_deref(), Some("bye"));
}

#[test]
fn edit_without_change_says_so_and_writes_nothing() {
    let (etcd, db) = start();
    let formatted = "{\n  \"a\": 1\n}";
    db.put(&[("/sb/x", formatted)]);
    assert_eq!(edit_with(&etcd, "true", "/sb/x"), ok("No change!\nOK\n"));
    assert_eq!(db.get("/sb/x").as_deref(), Some(formatted));
}

#[test]
fn edit_refuses_missing_keys_failing_editors_and_invalid_yaml() {
    let (etcd, db) = start();
    let (_dir, script) = editor_dir();
    db.put(&[("/sb/x", "{\"a\": 1}")]);
    assert_eq!(
        edit_with(&etcd, "true", "/sb/none"),
        fails("Error: /sb/none does not exist\n")
    );
    assert_eq!(
        edit_with(&etcd, "false", "/sb/x"),
        fails("Error: the editor \"false\" failed (exit status: 1); nothing changed\n")
    );
    assert_eq!(
        edit_with(&etcd, "/no/such/editor", "/sb/x"),
        fails(
            "Error: cannot run the editor \"/no/such/editor\" (set EDITOR): No such file or directory (os error 2)\n"
        )
    );
    let out = edit_with(&etcd, &format!("{script} s/1$/[/"), "/sb/x");
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    let (head, kept) = out
        .stderr
        .trim_end()
        .split_once("; /sb/x not changed, your edit is in ")
        .expect(&out.stderr);
    assert!(
        head.starts_with("Error: the edited text is not valid YAML: "),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "a: [\n");
    std::fs::remove_file(kept).unwrap();
    assert_eq!(db.get("/sb/x").as_deref(), Some("{\"a\": 1}"));
}
