#![allow(clippy::unwrap_used)]

use super::*;
use crate::watch::Entry;

const PB: &str = r#"{"pb_id":"realtime-20261201-0000","sbi_id":null,"workflow":{"type":"realtime","id":"testdask","version":"0.1.0"},"parameters":{"password":"hunter2"}}"#;
const WF: &str = r#"{"deploy_id":"realtime-20261201-0000-workflow","type":"helm","args":{"chart":"workflow","values":{"env.SDP_CONFIG_PASSWORD":"hunter2"}}}"#;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:05:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn put(path: &str, value: &str, rev: i64) -> WatchEvent {
    WatchEvent::Put(Entry {
        path: path.into(),
        value: value.into(),
        mod_revision: rev,
        create_revision: rev,
    })
}

fn del(path: &str, rev: i64) -> WatchEvent {
    WatchEvent::Deleted {
        path: path.into(),
        revision: rev,
    }
}

fn summaries(changes: &[Change]) -> Vec<String> {
    changes.iter().map(|c| c.summary.clone()).collect()
}

#[test]
fn pairs_give_blocks_with_their_deployments_and_orphans() {
    let o = Overview::from_pairs(
        9,
        [
            ("/deploy/realtime-20261201-0000-workflow", WF),
            (
                "/deploy/realtime-20261201-0000-workflow/state",
                r#"{"status":"DEPLOYED","message":"installed: revision 1","workload":{"phase":"RUNNING"}}"#,
            ),
            (
                "/deploy/mine",
                r#"{"deploy_id":"mine","type":"process-direct","args":{}}"#,
            ),
            ("/pb/realtime-20261201-0000", PB),
            (
                "/pb/realtime-20261201-0000/state",
                r#"{"status":"RUNNING","since":"2026-12-01T10:00:00Z"}"#,
            ),
            (
                "/pb/realtime-20261201-0000/owner",
                r#"{"command":["x","--password","hunter2"],"hostname":"node1","pid":12}"#,
            ),
            ("/sb/sbi-1", "{}"),
            ("/pb/realtime-20261201-0000/other", "{}"),
        ],
    );
    let s = o.snapshot();
    assert_eq!(s.revision, 9);
    assert_eq!(s.blocks.len(), 1);
    let b = &s.blocks[0];
    assert_eq!(b.workflow.as_deref(), Some("realtime:testdask:0.1.0"));
    assert_eq!(b.status.as_deref(), Some("RUNNING"));
    assert_eq!(b.owner.as_ref().unwrap().to_string(), "node1:12");
    assert_eq!(b.deployments, ["realtime-20261201-0000-workflow"]);
    let d = s.deployment("realtime-20261201-0000-workflow").unwrap();
    assert_eq!(d.block.as_deref(), Some("realtime-20261201-0000"));
    assert_eq!(d.chart.as_deref(), Some("workflow"));
    assert_eq!(d.workload_phase.as_deref(), Some("RUNNING"));
    assert_eq!(s.orphans, ["mine"]);
    assert_eq!(s.totals.owners_alive, 1);
    // Values may hold credentials: nothing of them beyond the shown fields is kept.
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("hunter2"), "{json}");
}

#[test]
fn a_block_and_its_deployment_appear_change_and_go() {
    let mut o = Overview::from_pairs(1, []);
    let c = o.apply(&put("/pb/realtime-20261201-0000", PB, 2), now());
    assert_eq!(
        summaries(&c),
        ["block realtime-20261201-0000 added: workflow realtime:testdask:0.1.0"]
    );
    assert_eq!(
        (c[0].kind, c[0].entity, c[0].revision),
        (ChangeKind::Added, Entity::Block, 2)
    );
    let c = o.apply(
        &put(
            "/pb/realtime-20261201-0000/state",
            r#"{"status":"STARTING"}"#,
            3,
        ),
        now(),
    );
    assert_eq!(
        summaries(&c),
        ["block realtime-20261201-0000: status none → STARTING"]
    );
    let c = o.apply(
        &put("/deploy/realtime-20261201-0000-workflow", WF, 4),
        now(),
    );
    assert_eq!(
        summaries(&c),
        ["deployment realtime-20261201-0000-workflow added: helm; chart workflow"]
    );
    assert_eq!(
        o.snapshot().blocks[0].deployments,
        ["realtime-20261201-0000-workflow"]
    );
    // A state write that changes nothing shown reports nothing.
    let c = o.apply(
        &put(
            "/pb/realtime-20261201-0000/state",
            r#"{"status":"STARTING","resources_available":true}"#,
            5,
        ),
        now(),
    );
    assert!(c.is_empty(), "{c:?}");
    let c = o.apply(&del("/pb/realtime-20261201-0000", 6), now());
    assert_eq!(summaries(&c), ["block realtime-20261201-0000 removed"]);
    let s = o.snapshot();
    assert!(s.blocks.is_empty());
    assert_eq!(s.orphans, ["realtime-20261201-0000-workflow"]);
    assert_eq!(s.revision, 6);
    let c = o.apply(&del("/deploy/realtime-20261201-0000-workflow", 7), now());
    assert_eq!(c[0].kind, ChangeKind::Removed);
    o.apply(&del("/pb/realtime-20261201-0000/state", 7), now());
    assert!(o.blocks.is_empty() && o.deployments.is_empty(), "{o:?}");
}

#[test]
fn a_deployment_seen_before_its_block_is_linked_when_the_block_comes() {
    let mut o = Overview::from_pairs(1, [("/deploy/proc-pb-m-1-dask", "{}")]);
    assert_eq!(o.snapshot().orphans, ["proc-pb-m-1-dask"]);
    o.apply(&put("/pb/pb-m-1", "{}", 2), now());
    let s = o.snapshot();
    assert!(s.orphans.is_empty());
    assert_eq!(s.block("pb-m-1").unwrap().deployments, ["proc-pb-m-1-dask"]);
    assert_eq!(s.block("pb-m-1").unwrap().workflow, None);
}

#[test]
fn the_longest_existing_block_owns_a_deployment() {
    let mut o = Overview::from_pairs(1, [("/pb/a", "{}"), ("/deploy/a-b-w", "{}")]);
    assert_eq!(o.snapshot().block("a").unwrap().deployments, ["a-b-w"]);
    o.apply(&put("/pb/a-b", "{}", 2), now());
    let s = o.snapshot();
    assert!(s.block("a").unwrap().deployments.is_empty());
    assert_eq!(s.block("a-b").unwrap().deployments, ["a-b-w"]);
    o.apply(&del("/pb/a-b", 3), now());
    assert_eq!(o.snapshot().block("a").unwrap().deployments, ["a-b-w"]);
}

#[test]
fn a_state_without_its_block_is_kept_but_not_shown() {
    let mut o = Overview::from_pairs(1, [("/pb/x/state", r#"{"status":"FAILED"}"#)]);
    assert!(o.snapshot().blocks.is_empty());
    let c = o.apply(&put("/pb/x", "{}", 2), now());
    assert_eq!(
        summaries(&c),
        ["block x added: workflow none; status FAILED"]
    );
}

#[test]
fn owners_come_and_go() {
    let mut o = Overview::from_pairs(1, [("/pb/x", "{}")]);
    let c = o.apply(&put("/pb/x/owner", r#"{"hostname":"h","pid":3}"#, 2), now());
    assert_eq!(summaries(&c), ["block x: owner alive (h:3)"]);
    let c = o.apply(&del("/pb/x/owner", 3), now());
    assert_eq!(summaries(&c), ["block x: owner gone"]);
    assert_eq!(o.snapshot().totals.owners_alive, 0);
}

#[test]
fn a_new_listing_replaces_everything_and_reports_the_differences() {
    let mut o = Overview::from_pairs(1, [("/pb/x", "{}"), ("/pb/y", "{}")]);
    let entry = |path: &str, value: &str| Entry {
        path: path.into(),
        value: value.into(),
        mod_revision: 5,
        create_revision: 5,
    };
    let c = o.apply(
        &WatchEvent::Listed {
            revision: 5,
            entries: vec![
                entry("/pb/y", "{}"),
                entry("/pb/y/state", r#"{"status":"RUNNING"}"#),
                entry("/pb/z", "{}"),
            ],
        },
        now(),
    );
    assert_eq!(
        summaries(&c),
        [
            "block x removed",
            "block y: status none → RUNNING",
            "block z added: workflow none"
        ]
    );
    assert!(c.iter().all(|c| c.revision == 5));
    assert_eq!(o.revision(), 5);
}

#[test]
fn unread_paths_change_nothing() {
    let mut o = Overview::from_pairs(1, []);
    for path in [
        "/pb/",
        "/pb/x/a/b",
        "/deploy/x/owner",
        "/workflow/a:b:c",
        "/pbx",
    ] {
        assert!(o.apply(&put(path, "{}", 2), now()).is_empty(), "{path}");
    }
    assert!(o.blocks.is_empty() && o.deployments.is_empty());
}

#[test]
fn one_batch_gives_one_record_per_entity() {
    let mut o = Overview::from_pairs(1, []);
    let c = o.apply_batch(
        &[
            put("/pb/x", "{}", 2),
            put("/pb/x/state", r#"{"status":"STARTING"}"#, 2),
            put("/deploy/x-w", "{}", 2),
            put("/deploy/x-w/state", r#"{"status":"PENDING"}"#, 2),
        ],
        now(),
    );
    assert_eq!(
        summaries(&c),
        [
            "block x added: workflow none; status STARTING",
            "deployment x-w added: none; status PENDING"
        ]
    );
    // Changed and changed back within a batch: nothing to report.
    let c = o.apply_batch(
        &[
            put("/pb/x/state", r#"{"status":"RUNNING"}"#, 3),
            put("/pb/x/state", r#"{"status":"STARTING"}"#, 4),
        ],
        now(),
    );
    assert!(c.is_empty(), "{c:?}");
    assert_eq!(o.revision(), 4);
}
