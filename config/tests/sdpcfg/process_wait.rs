//! `process --wait`: waits for the state the processing controller writes (written here
//! by a thread standing in for the controller) and prints it; exits 1 with the reason
//! on FAILED, and with what it saw when the time is up.

use std::time::{Duration, Instant};

use sdp_testing::EtcdServer;

use crate::harness::{Db, Outcome, ok, sdpcfg, today};
use crate::start;

/// Stand in for the controller: when the first block appears, write `state` as its
/// state.
fn controller(etcd: &EtcdServer, state: &'static str) -> std::thread::JoinHandle<String> {
    let db = Db::new(etcd);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(block) = db.keys("/pb/").into_iter().next() {
                db.put(&[(&format!("{block}/state"), state)]);
                return block;
            }
            assert!(Instant::now() < deadline, "no block was created");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn process_wait_prints_the_state_once_the_block_starts() {
    let (etcd, _db) = start();
    let id = format!("realtime-{}-0000", today());
    let writer = controller(
        &etcd,
        r#"{"resources_available": false, "since": "2026-12-01T10:00:00Z", "status": "STARTING"}"#,
    );
    assert_eq!(
        sdpcfg(&etcd, &["process", "--wait=30", "realtime:testdask:0.1.0"]).run(),
        ok(&format!("OK, pb_id = {id}\n{id} STARTING\n"))
    );
    assert_eq!(writer.join().unwrap(), format!("/pb/{id}"));
}

#[test]
fn process_wait_returns_at_once_when_the_state_is_already_there() {
    let (etcd, db) = start();
    let id = format!("batch-{}-0000", today());
    // The state of a block not created yet: there before the command even waits.
    db.put(&[(&format!("/pb/{id}/state"), r#"{"status": "WAITING"}"#)]);
    assert_eq!(
        sdpcfg(&etcd, &["-q", "process", "batch:x:1", "--wait"]).run(),
        ok(&format!("{id} WAITING\n"))
    );
}

#[test]
fn process_wait_fails_with_the_reason_when_the_block_fails() {
    let (etcd, _db) = start();
    let id = format!("realtime-{}-0000", today());
    let _writer = controller(
        &etcd,
        r#"{"failed_by": "processing-controller", "reason": "unknown workflow: no realtime workflow \"testdsk\" is registered (check the workflow name and type)", "status": "FAILED"}"#,
    );
    assert_eq!(
        sdpcfg(&etcd, &["process", "--wait", "realtime:testdsk:0.1.0"]).run(),
        Outcome {
            stdout: format!("OK, pb_id = {id}\n"),
            stderr: format!(
                "Error: processing block {id} FAILED: unknown workflow: no realtime workflow \"testdsk\" is registered (check the workflow name and type)\n"
            ),
            code: 1,
        }
    );
}

#[test]
fn process_wait_gives_up_when_the_time_is_up() {
    let (etcd, db) = start();
    let id = format!("batch-{}-0000", today());
    let started = Instant::now();
    assert_eq!(
        sdpcfg(&etcd, &["process", "batch:x:1", "--wait=1.5"]).run(),
        Outcome {
            stdout: format!("OK, pb_id = {id}\n"),
            stderr: format!(
                "Error: processing block {id} did not start within 1.5 s: it has no state yet (see `sdpcfg status` or /pb/{id}/state)\n"
            ),
            code: 1,
        }
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // A status that is neither started nor failed is named.
    db.put(&[(
        &format!("/pb/batch-{}-0001/state", today()),
        r#"{"status": "SLEEPING"}"#,
    )]);
    let out = sdpcfg(&etcd, &["process", "batch:x:1", "--wait=0.5"]).run();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("did not start within 0.5 s: its status is SLEEPING"),
        "{}",
        out.stderr
    );
}
