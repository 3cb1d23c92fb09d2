//! `retry`: deployment states deleted so that the deployer tries again from attempt 1,
//! only for deployments that exist, all or nothing.

use crate::harness::{fails, ok, sdpcfg};
use crate::start;

const RETRIED: &str = "state deleted; the deployer tries again from attempt 1";

#[test]
fn retry_deletes_the_state_and_leaves_the_entry() {
    let (etcd, db) = start();
    db.put(&[
        ("/deploy/a-workflow", "{\"deploy_id\": \"a-workflow\"}"),
        ("/deploy/a-workflow/state", "{\"status\": \"FAILED\"}"),
        ("/deploy/a-dask", "{}"),
        ("/deploy/a-dask/state", "{\"status\": \"FAILED\"}"),
        ("/deploy/b", "{}"),
    ]);
    assert_eq!(
        sdpcfg(&etcd, &["retry", "a-workflow"]).run(),
        ok(&format!("a-workflow: {RETRIED}\n"))
    );
    assert_eq!(db.get("/deploy/a-workflow/state"), None);
    assert_eq!(
        db.get("/deploy/a-workflow").as_deref(),
        Some("{\"deploy_id\": \"a-workflow\"}")
    );
    assert!(db.get("/deploy/a-dask/state").is_some());

    // Several at once (a repeated ID counts once), one without a state yet.
    assert_eq!(
        sdpcfg(&etcd, &["retry", "a-dask", "b", "a-dask"]).run(),
        ok(&format!(
            "a-dask: {RETRIED}\nb: no state to delete; the deployer has not reported on it yet\n"
        ))
    );
    assert_eq!(
        db.keys("/deploy/"),
        ["/deploy/a-dask", "/deploy/a-workflow", "/deploy/b"]
    );

    db.put(&[("/deploy/b/state", "{}")]);
    assert_eq!(sdpcfg(&etcd, &["-q", "retry", "b"]).run(), ok(""));
    assert_eq!(db.get("/deploy/b/state"), None);
}

#[test]
fn retry_of_an_unknown_deployment_fails_and_deletes_nothing() {
    let (etcd, db) = start();
    db.put(&[
        ("/deploy/a-workflow", "{}"),
        ("/deploy/a-workflow/state", "{\"status\": \"FAILED\"}"),
        // The state of a deployment whose entry is gone is the deployer's to clear.
        ("/deploy/gone/state", "{\"status\": \"UNINSTALLING\"}"),
    ]);
    assert_eq!(
        sdpcfg(&etcd, &["retry", "a-workflow", "gone", "never"]).run(),
        fails(
            "Error: no such deployment: /deploy/gone, /deploy/never do not exist; nothing retried\n"
        )
    );
    assert!(db.get("/deploy/a-workflow/state").is_some());
    assert!(db.get("/deploy/gone/state").is_some());
    assert_eq!(
        sdpcfg(&etcd, &["retry", "gone"]).run(),
        fails("Error: no such deployment: /deploy/gone does not exist; nothing retried\n")
    );

    let out = sdpcfg(&etcd, &["retry", "not_an.id"]).run();
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    assert!(
        out.stderr
            .starts_with("Error: cannot retry \"not_an.id\": "),
        "{}",
        out.stderr
    );
    let out = sdpcfg(&etcd, &["retry"]).run();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("wrong arguments for 'retry'"),
        "{}",
        out.stderr
    );
}
