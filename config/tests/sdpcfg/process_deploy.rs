//! `process` and `deploy`: new processing block IDs, entities written byte for byte as the
//! Python tool writes them, parameters as YAML, JSON or from stdin.

use std::process::Stdio;

use crate::harness::{fails, ok, python_pb, sdpcfg, today};
use crate::start;

#[test]
fn process_creates_blocks_with_consecutive_ids_in_the_python_format() {
    let (etcd, db) = start();
    let day = today();
    let first = format!("realtime-{day}-0000");
    assert_eq!(
        sdpcfg(&etcd, &["process", "realtime:testdask:0.1.0"]).run(),
        ok(&format!("OK, pb_id = {first}\n"))
    );
    assert_eq!(
        db.get(&format!("/pb/{first}")).unwrap(),
        python_pb(&first, "realtime", "testdask", "0.1.0", "{}")
    );

    let second = format!("realtime-{day}-0001");
    assert_eq!(
        sdpcfg(&etcd, &["process", "realtime:testdask:0.1.0"]).run(),
        ok(&format!("OK, pb_id = {second}\n"))
    );
    // Each type numbers its own blocks.
    let batch = format!("batch-{day}-0000");
    assert_eq!(
        sdpcfg(&etcd, &["process", "batch:ical:0.2"]).run(),
        ok(&format!("OK, pb_id = {batch}\n"))
    );
    assert_eq!(
        db.get(&format!("/pb/{batch}")).unwrap(),
        python_pb(&batch, "batch", "ical", "0.2", "{}")
    );
    // A gap is filled first.
    assert_eq!(
        sdpcfg(&etcd, &["delete", &format!("/pb/{first}")]).run(),
        ok("OK\n")
    );
    assert_eq!(
        sdpcfg(&etcd, &["-q", "process", "realtime:testdask:0.1.0"]).run(),
        ok("")
    );
    assert!(db.get(&format!("/pb/{first}")).is_some());
}

#[test]
fn process_parameters_may_be_yaml_json_or_stdin() {
    let (etcd, db) = start();
    let day = today();
    let params = "{\n    \"image\": \"x:1\",\n    \"n_workers\": 2,\n    \"opts\": {\n      \"list\": [\n        1,\n        \"a\",\n        null,\n        true\n      ]\n    }\n  }";
    let cases = [
        (
            "n_workers: 2\nimage: 'x:1'\nopts: {list: [1, a, null, true]}",
            false,
        ),
        (
            r#"{"opts": {"list": [1, "a", null, true]}, "n_workers": 2, "image": "x:1"}"#,
            false,
        ),
        (
            "opts:\n  list:\n  - 1\n  - a\n  - null\n  - true\nn_workers: 2\nimage: x:1\n",
            true,
        ),
    ];
    for (i, (text, stdin)) in cases.into_iter().enumerate() {
        let id = format!("realtime-{day}-{i:04}");
        let run = if stdin {
            sdpcfg(&etcd, &["process", "realtime:testdask:0.1.0", "-"]).stdin(text)
        } else {
            sdpcfg(&etcd, &["process", "realtime:testdask:0.1.0", text])
        };
        assert_eq!(run.run(), ok(&format!("OK, pb_id = {id}\n")), "{text}");
        assert_eq!(
            db.get(&format!("/pb/{id}")).unwrap(),
            python_pb(&id, "realtime", "testdask", "0.1.0", params)
        );
    }
    assert_eq!(
        sdpcfg(&etcd, &["process", "realtime:testdask:0.1.0", "[1, 2]"]).run(),
        fails("Error: parameters must be a mapping like '{key: value}', not a list\n")
    );
    let out = sdpcfg(&etcd, &["process", "realtime:testdask:0.1.0", "{a: ["]).run();
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    assert!(
        out.stderr
            .starts_with("Error: parameters are not valid YAML or JSON: "),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(db.keys("/pb/").len(), 3);
}

#[test]
fn concurrent_process_calls_get_different_ids() {
    let (etcd, db) = start();
    let children: Vec<_> = (0..6)
        .map(|_| {
            let mut cmd = sdpcfg(&etcd, &["process", "batch:x:1"]).into_command();
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end()
                .trim_start_matches("OK, pb_id = ")
                .to_string()
        })
        .collect();
    ids.sort();
    let day = today();
    let expected: Vec<String> = (0..6).map(|i| format!("batch-{day}-{i:04}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(db.keys("/pb/").len(), 6);
}

#[test]
fn deploy_writes_the_deployment_in_the_python_format() {
    let (etcd, db) = start();
    let params = "chart: stable/dask\nvalues: {worker.replicas: 2, scheduler.serviceType: ClusterIP, jupyter.enabled: 'false'}";
    assert_eq!(
        sdpcfg(
            &etcd,
            &["deploy", "helm", "realtime-20191121-0000-dask", params]
        )
        .run(),
        ok("")
    );
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed_dask_deployment.json"
    ))
    .unwrap();
    assert_eq!(db.get("/deploy/realtime-20191121-0000-dask").unwrap(), seed);

    let json = r#"{"args": ["sleep", "1"]}"#;
    assert_eq!(
        sdpcfg(&etcd, &["deploy", "process-direct", "p1", "-"])
            .stdin(json)
            .run(),
        ok("")
    );
    assert_eq!(
        db.get("/deploy/p1").unwrap(),
        "{\n  \"args\": {\n    \"args\": [\n      \"sleep\",\n      \"1\"\n    ]\n  },\n  \"deploy_id\": \"p1\",\n  \"type\": \"process-direct\"\n}"
    );
}

#[test]
fn deploy_refuses_bad_types_names_and_existing_deployments() {
    let (etcd, db) = start();
    assert_eq!(
        sdpcfg(&etcd, &["deploy", "helmet", "d1", "{chart: x}"]).run(),
        fails(
            "Error: invalid deployment d1: field `type` must be one of helm, process-direct, kubernetes-direct, found \"helmet\"\n"
        )
    );
    assert_eq!(
        sdpcfg(&etcd, &["deploy", "helm", "d_1", "{chart: x}"]).run(),
        fails(
            "Error: invalid deployment d_1: invalid deployment ID \"d_1\": must match ^[A-Za-z0-9\\-]{1,96}$\n"
        )
    );
    assert_eq!(
        sdpcfg(&etcd, &["deploy", "helm", "d1", "{values: {}}"]).run(),
        fails("Error: invalid deployment d1: missing field `args.chart`\n")
    );
    assert!(db.keys("/deploy/").is_empty());
    assert_eq!(
        sdpcfg(&etcd, &["deploy", "helm", "d1", "{chart: x}"]).run(),
        ok("")
    );
    assert_eq!(
        sdpcfg(&etcd, &["deploy", "helm", "d1", "{chart: y}"]).run(),
        fails("Error: /deploy/d1 already exists\n")
    );
}
