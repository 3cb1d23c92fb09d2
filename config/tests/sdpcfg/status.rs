//! `status` and `workflows`: golden text for a fixed set of entries, ages computed from
//! an injected clock (`--now`), filters, JSON and YAML, the global prefix, colours only
//! on a terminal, and `--watch` printing again when something changes.

use std::process::Command;

use serde_json::Value;

use crate::harness::{Db, ok, sdpcfg};
use crate::start;
use crate::watch::Watching;

const NOW: &str = "--now=2026-12-01T12:00:00Z";
const SECRET: &str = "s3cret";

/// Blocks in every situation `status` shows: running with an owner and two
/// deployments, failed on its workflow's image, finished days ago, a 2021-style block
/// without state with a `proc-` deployment, a deployment of no block, and keys that
/// are not blocks or deployments.
fn seed(db: &Db) {
    db.put(&[
        ("/pb/realtime-20261201-0000", r#"{"pb_id": "realtime-20261201-0000", "sbi_id": null, "workflow": {"id": "testdask", "type": "realtime", "version": "0.1.0"}, "parameters": {"password": "s3cret"}, "scan_parameters": {}}"#),
        ("/pb/realtime-20261201-0000/state", r#"{"resources_available": true, "since": "2026-12-01T11:55:00Z", "status": "RUNNING"}"#),
        ("/pb/realtime-20261201-0000/owner", r#"{"command": ["testdask", "--password", "s3cret"], "hostname": "node-7", "pid": 41}"#),
        ("/deploy/realtime-20261201-0000-workflow", r#"{"args": {"chart": "workflow", "values": {"env.SDP_CONFIG_PASSWORD": "s3cret"}}, "deploy_id": "realtime-20261201-0000-workflow", "type": "helm"}"#),
        ("/deploy/realtime-20261201-0000-workflow/state", r#"{"message": "installed: revision 1", "status": "DEPLOYED", "workload": {"phase": "RUNNING", "pods": []}}"#),
        ("/deploy/realtime-20261201-0000-dask", r#"{"args": {"chart": "dask", "values": {}}, "deploy_id": "realtime-20261201-0000-dask", "type": "helm"}"#),
        ("/deploy/realtime-20261201-0000-dask/state", r#"{"message": "installing: attempt 1", "status": "INSTALLING"}"#),
        ("/pb/realtime-20261201-0001", r#"{"pb_id": "realtime-20261201-0001", "sbi_id": null, "workflow": {"id": "testdask", "type": "realtime", "version": "0.1.0"}, "parameters": {}, "scan_parameters": {}}"#),
        ("/pb/realtime-20261201-0001/state", r#"{"failed_deployment": "realtime-20261201-0001-workflow", "reason": "workflow pod realtime-20261201-0001-workflow: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)", "since": "2026-12-01T10:00:00Z", "status": "FAILED"}"#),
        ("/deploy/realtime-20261201-0001-workflow", r#"{"args": {"chart": "workflow", "values": {}}, "deploy_id": "realtime-20261201-0001-workflow", "type": "helm"}"#),
        ("/deploy/realtime-20261201-0001-workflow/state", r#"{"message": "installed: revision 1", "status": "DEPLOYED", "workload": {"message": "pod realtime-20261201-0001-workflow: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)", "phase": "FAILED"}}"#),
        ("/pb/batch-20261128-0000", r#"{"pb_id": "batch-20261128-0000", "sbi_id": null, "workflow": {"id": "teststate", "type": "batch", "version": "0.1.0"}, "parameters": {}, "scan_parameters": {}}"#),
        ("/pb/batch-20261128-0000/state", r#"{"since": "2026-11-28T09:00:00Z", "status": "FINISHED"}"#),
        ("/pb/pb-mvp01-20261201-00000", r#"{"id": "pb-mvp01-20261201-00000", "sbi_id": "sbi-1", "workflow": {"type": "batch", "id": "vis-receive", "version": "0.2.0"}, "parameters": {}}"#),
        ("/deploy/proc-pb-mvp01-20261201-00000-receive", r#"{"args": {"chart": "receive"}, "deploy_id": "proc-pb-mvp01-20261201-00000-receive", "type": "helm"}"#),
        ("/deploy/mine", r#"{"args": {"args": ["sleep", "1000"]}, "deploy_id": "mine", "type": "process-direct"}"#),
        ("/sb/sbi-1", "{}"),
        ("/master", "{}"),
    ]);
}

/// What `status` prints for [`seed`] at 12:00 on a 120-column screen.
const GOLDEN: &str = "\
ID                       WORKFLOW                 STATUS    AGE  OWNER            REASON
└─ DEPLOYMENT                            CHART             RELEASE     WORKLOAD  MESSAGE
batch-20261128-0000      batch:teststate:0.1.0    FINISHED  3d   none
pb-mvp01-20261201-00000  batch:vis-receive:0.2.0  -         -    none
└─ proc-pb-mvp01-20261201-00000-receive  receive           -           -
realtime-20261201-0000   realtime:testdask:0.1.0  RUNNING   5m   alive node-7:41
└─ realtime-20261201-0000-dask           dask              INSTALLING  -         installing: attempt 1
└─ realtime-20261201-0000-workflow       workflow          DEPLOYED    RUNNING   installed: revision 1
realtime-20261201-0001   realtime:testdask:0.1.0  FAILED    2h   none             workflow pod realtime-20261201-0001-w…
└─ realtime-20261201-0001-workflow       workflow          DEPLOYED    FAILED    pod realtime-20261201-0001-workflow: i…
(no block)
└─ mine                                  (process-direct)  -           -
Total: 4 blocks (1 FAILED, 1 FINISHED, 1 no state, 1 RUNNING), 1 owner alive; 5 deployments (2 DEPLOYED, 1 INSTALLING, 2 not reported), workloads (1 FAILED, 1 RUNNING), 1 of no block
";

#[test]
fn status_prints_blocks_their_deployments_orphans_and_totals() {
    let (etcd, db) = start();
    seed(&db);
    assert_eq!(
        sdpcfg(&etcd, &["status", NOW]).env("COLUMNS", "120").run(),
        ok(GOLDEN)
    );
}

#[test]
fn status_without_a_known_width_cuts_nothing() {
    let (etcd, db) = start();
    seed(&db);
    let out = sdpcfg(&etcd, &[NOW, "status"]).run();
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert!(out.stdout.contains(
        "2h   none             workflow pod realtime-20261201-0001-workflow: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)\n"
    ), "{}", out.stdout);
    assert!(!out.stdout.contains('…'));
}

#[test]
fn status_filters_by_status_and_workflow() {
    let (etcd, db) = start();
    seed(&db);
    assert_eq!(
        sdpcfg(&etcd, &["status", "--status", "failed,none", NOW]).env("COLUMNS", "100").run(),
        ok("\
ID                       WORKFLOW                 STATUS  AGE  OWNER  REASON
└─ DEPLOYMENT                            CHART     RELEASE   WORKLOAD  MESSAGE
pb-mvp01-20261201-00000  batch:vis-receive:0.2.0  -       -    none
└─ proc-pb-mvp01-20261201-00000-receive  receive   -         -
realtime-20261201-0001   realtime:testdask:0.1.0  FAILED  2h   none   workflow pod realtime-2026120…
└─ realtime-20261201-0001-workflow       workflow  DEPLOYED  FAILED    pod realtime-20261201-0001-w…
Shown: 2 blocks (1 FAILED, 1 no state), 0 owners alive; 2 deployments (1 DEPLOYED, 1 not reported), workloads (1 FAILED)
")
    );
    // Whole spec, type:id or id; repeated or comma-separated.
    for args in [
        &["status", "--workflow", "batch:teststate:0.1.0"][..],
        &["status", "--workflow=batch:teststate"],
        &["status", "--workflow", "teststate", "--workflow", "nothing"],
        &["status", "--workflow", "nothing,teststate"],
    ] {
        let mut args = args.to_vec();
        args.push(NOW);
        assert_eq!(
            sdpcfg(&etcd, &args).run(),
            ok("\
ID                   WORKFLOW               STATUS    AGE  OWNER  REASON
└─ DEPLOYMENT  CHART  RELEASE  WORKLOAD  MESSAGE
batch-20261128-0000  batch:teststate:0.1.0  FINISHED  3d   none
Shown: 1 block (1 FINISHED), 0 owners alive; 0 deployments
"),
            "{args:?}"
        );
    }
    assert_eq!(
        sdpcfg(&etcd, &["status", "--status", "WAITING"]).run(),
        ok("No processing block matches.\nShown: 0 blocks, 0 owners alive; 0 deployments\n")
    );
}

#[test]
fn status_json_and_yaml_carry_the_same_picture_without_the_values() {
    let (etcd, db) = start();
    seed(&db);
    let json = sdpcfg(&etcd, &["status", "-o", "json"]).run();
    assert_eq!((json.code, json.stderr.as_str()), (0, ""));
    let yaml = sdpcfg(&etcd, &["status", "--output=yaml"]).run();
    assert_eq!((yaml.code, yaml.stderr.as_str()), (0, ""));
    let from_json: Value = serde_json::from_str(&json.stdout).unwrap();
    let from_yaml: Value = serde_yaml::from_str(&yaml.stdout).unwrap();
    assert_eq!(from_json, from_yaml);
    assert!(!json.stdout.contains(SECRET) && !yaml.stdout.contains(SECRET));
    let blocks = from_json["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 4);
    let running = &blocks[2];
    assert_eq!(running["id"], "realtime-20261201-0000");
    assert_eq!(running["status"], "RUNNING");
    assert_eq!(running["since"], "2026-12-01T11:55:00Z");
    assert_eq!(running["owner"]["hostname"], "node-7");
    assert_eq!(
        running["deployments"],
        serde_json::json!([
            "realtime-20261201-0000-dask",
            "realtime-20261201-0000-workflow"
        ])
    );
    let failed_workflow = from_json["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "realtime-20261201-0001-workflow")
        .unwrap();
    assert_eq!(failed_workflow["workload_phase"], "FAILED");
    assert_eq!(failed_workflow["block"], "realtime-20261201-0001");
    assert_eq!(from_json["orphans"], serde_json::json!(["mine"]));
    assert_eq!(from_json["totals"]["blocks_by_status"]["FAILED"], 1);
    // Filters apply to the documents too.
    let failed = sdpcfg(&etcd, &["status", "-o", "json", "--status", "FAILED"]).run();
    let failed: Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(failed["blocks"].as_array().unwrap().len(), 1);
    assert_eq!(failed["deployments"].as_array().unwrap().len(), 1);
}

#[test]
fn status_works_under_a_global_prefix() {
    let (etcd, db) = start();
    seed(&db);
    db.put(&[("/test/pb/batch-20261201-0000", r#"{"pb_id": "batch-20261201-0000", "workflow": {"id": "x", "type": "batch", "version": "1"}}"#)]);
    let expected = "\
ID                   WORKFLOW   STATUS  AGE  OWNER  REASON
└─ DEPLOYMENT  CHART  RELEASE  WORKLOAD  MESSAGE
batch-20261201-0000  batch:x:1  -       -    none
Total: 1 block (1 no state), 0 owners alive; 0 deployments
";
    assert_eq!(
        sdpcfg(&etcd, &["status", "--prefix", "/test"]).run(),
        ok(expected)
    );
    assert_eq!(
        sdpcfg(&etcd, &["status"])
            .env("SDP_CONFIG_PREFIX", "/test")
            .run(),
        ok(expected)
    );
}

#[test]
fn status_of_an_empty_database_says_so() {
    let (etcd, _db) = start();
    assert_eq!(
        sdpcfg(&etcd, &["status"]).run(),
        ok(
            "No processing blocks or deployments.\nTotal: 0 blocks, 0 owners alive; 0 deployments\n"
        )
    );
}

/// `sdpcfg status …` run on a pseudo-terminal (util-linux `script`), with `NO_COLOR`
/// maybe set; what it printed.
fn on_a_terminal(etcd: &sdp_testing::EtcdServer, no_color: bool) -> String {
    let command = format!("{} status {NOW}", env!("CARGO_BIN_EXE_sdpcfg"));
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &command, "/dev/null"])
        .env_clear()
        .envs(etcd.env())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("script runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn colours_only_on_a_terminal_and_not_with_no_color() {
    let (etcd, db) = start();
    seed(&db);
    let coloured = on_a_terminal(&etcd, false);
    assert!(coloured.contains("\x1b[31mFAILED\x1b[0m"), "{coloured:?}");
    assert!(coloured.contains("\x1b[32mRUNNING\x1b[0m"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b[32malive node-7:41\x1b[0m"),
        "{coloured:?}"
    );
    let plain = on_a_terminal(&etcd, true);
    assert!(
        plain.contains("FAILED") && !plain.contains('\x1b'),
        "{plain:?}"
    );
    // Not a terminal: no colours (every other test here pipes the output).
    let piped = sdpcfg(&etcd, &["status"]).run();
    assert!(!piped.stdout.contains('\x1b'));
}

#[test]
fn status_watch_prints_again_when_something_changes() {
    let (etcd, db) = start();
    seed(&db);
    let watching = Watching::start(&etcd, &["status", "--watch", NOW]);
    let first: Vec<String> = (0..14).map(|_| watching.next_line()).collect();
    assert_eq!(first.join("\n") + "\n", GOLDEN.replace("w…", "workflow: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)").replace("workflow: i…", "workflow: image \"sdp/workflow-testdask:0.1.0\" cannot be pulled (ImagePullBackOff)") + "\n");
    db.put(&[(
        "/pb/batch-20261128-0000/owner",
        r#"{"hostname": "node-9", "pid": 7}"#,
    )]);
    let mut second = Vec::new();
    loop {
        let line = watching.next_line();
        let done = line.starts_with("Total: ");
        second.push(line);
        if done {
            break;
        }
    }
    assert_eq!(
        second[2],
        "batch-20261128-0000      batch:teststate:0.1.0    FINISHED  3d   alive node-9:7"
    );
    assert!(second[12].contains("2 owners alive"), "{second:?}");
    let (status, stderr) = watching.interrupt();
    assert!(status.success(), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn workflows_lists_the_database_entries_and_the_local_registry_file() {
    let (etcd, db) = start();
    assert_eq!(
        sdpcfg(&etcd, &["workflows"]).run(),
        ok("No workflows registered.\n")
    );
    db.put(&[
        (
            "/workflow/batch:ical:0.3.0",
            r#"{"image": "registry.example/sdp/ical:0.3.0"}"#,
        ),
        (
            "/workflow/realtime:testdask:0.1.0",
            r#"{"image": "mirror/workflow-testdask:0.1.0"}"#,
        ),
        ("/workflow/realtime:broken:1", r#"{"no_image": true}"#),
    ]);
    let registry = concat!(env!("CARGO_MANIFEST_DIR"), "/../workflows/workflows.json");
    let out = sdpcfg(&etcd, &["workflows"])
        .env("SDP_WORKFLOWS_URL", &format!("file://{registry}"))
        .run();
    let expected = format!(
        "\
WORKFLOW                   IMAGE                             SOURCE
batch:ical:0.3.0           registry.example/sdp/ical:0.3.0   database
batch:teststate:0.1.0      sdp/workflow-teststate:0.1.0      {registry}
realtime:broken:1          (invalid: missing field `image`)  database
realtime:testdask:0.1.0    mirror/workflow-testdask:0.1.0    database
realtime:testdeploy:0.1.0  sdp/workflow-testdeploy:0.1.0     {registry}
"
    );
    assert_eq!(out, ok(&expected));
    let json = sdpcfg(&etcd, &["workflows", "-o", "json"]).run();
    let list: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[0]["workflow"], "batch:ical:0.3.0");
    assert_eq!(list[0]["image"], "registry.example/sdp/ical:0.3.0");
    assert_eq!(list[0]["source"], "database");
}
