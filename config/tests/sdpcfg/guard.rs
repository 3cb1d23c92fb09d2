//! `guard [adopt|prune]`: what the deployer's guard holds, and the operator's answers,
//! which go into the database's identity record (a key `ls` and `delete -R /` never see).

use crate::harness::{fails, ok, sdpcfg};
use crate::start;

const REPORT: &str = r#"{"database": "x", "held": [
    {"release": "a", "reason": "other-database", "entry": true},
    {"release": "b", "reason": "unlabelled-on-new-database", "entry": false}],
  "message": "…", "pruning": []}"#;

#[test]
fn guard_shows_nothing_held_and_adopt_needs_an_identity() {
    let (etcd, db) = start();
    assert_eq!(
        sdpcfg(&etcd, &["guard"]).run(),
        ok(
            "Configuration database: no identity yet (the deployer creates it when it starts leading)\nHeld by the deployer's guard: nothing\n"
        )
    );
    assert_eq!(
        sdpcfg(&etcd, &["guard", "adopt"]).run(),
        ok("Nothing is held by the deployer's guard.\n")
    );
    db.put(&[("/deployer/guard", REPORT)]);
    assert_eq!(
        sdpcfg(&etcd, &["guard", "prune"]).run(),
        fails(
            "Error: this configuration database has no identity yet (the deployer creates it when it starts leading); nothing changed\n"
        )
    );
}

#[test]
fn adopt_and_prune_record_the_held_releases_in_the_identity_record() {
    let (etcd, db) = start();
    let record = db.identity(true).expect("identity");
    db.put(&[("/deployer/guard", REPORT)]);
    let shown = sdpcfg(&etcd, &["guard"]).run();
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for want in [
        format!("Configuration database: {}", record.id),
        "Held by the deployer's guard: 2 release(s)".into(),
        "  a  has an entry; installed from another configuration database".into(),
        "  b  no entry; installed before the guard existed".into(),
        "sdpcfg guard adopt".into(),
    ] {
        assert!(shown.stdout.contains(&want), "{want:?} in {}", shown.stdout);
    }
    assert_eq!(
        sdpcfg(&etcd, &["guard", "prune"]).run(),
        ok("OK, 2 release(s) pruned: the deployer uninstalls them at its next resync: a, b\n")
    );
    let pruned = db.identity(false).expect("identity");
    assert_eq!(
        (pruned.pruned.as_slice(), pruned.adopted.len()),
        (&["a".to_string(), "b".to_string()][..], 0)
    );
    assert_eq!(pruned.id, record.id, "the identity itself never changes");

    // Changing one's mind: adopt moves them over; -q prints nothing.
    assert_eq!(sdpcfg(&etcd, &["-q", "guard", "adopt"]).run(), ok(""));
    let adopted = db.identity(false).expect("identity");
    assert_eq!(adopted.adopted, ["a", "b"]);
    assert!(adopted.pruned.is_empty());

    // The record is no configuration path: ls does not show it, delete -R / keeps it.
    assert_eq!(
        sdpcfg(&etcd, &["ls", "-R", "/"]).run(),
        ok("Keys with / prefix: /deployer/guard\n")
    );
    assert_eq!(sdpcfg(&etcd, &["-q", "delete", "-R", "/"]).run(), ok(""));
    assert_eq!(db.identity(false), Some(adopted));
}
