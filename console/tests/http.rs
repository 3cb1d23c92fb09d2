//! The console's HTTP endpoints and its event stream against a real etcd: the page and
//! its files, the JSON API, blocks and deployments pushed to open pages as they appear
//! and change, readiness following etcd, and values never leaving the server.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{World, block, block_state, deployment, deployment_state, write};
use serde_json::Value;

const ID: &str = "realtime-20261201-0000";
const WORKFLOW: &str = "realtime-20261201-0000-workflow";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_come_from_the_binary() -> Result<()> {
    let w = World::start().await?;
    for (path, kind, needle) in [
        ("/", "text/html; charset=utf-8", "/console.js"),
        (
            "/console.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        ("/console.css", "text/css; charset=utf-8", ".badge"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let resp = w.http.get(format!("{}{path}", w.base)).send().await?;
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers().clone();
        assert_eq!(headers["content-type"], kind, "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()?
                .contains("script-src 'self'"),
            "{path}"
        );
        assert!(resp.text().await?.contains(needle), "{path}");
    }
    let (status, _) = w.get("/nothing-here").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_blocks_with_state_owner_and_deployments() -> Result<()> {
    let w = World::start().await?;
    write(
        &w.db,
        &[
            block(ID),
            block_state(ID, "RUNNING", None, Duration::ZERO),
            deployment(WORKFLOW),
            deployment_state(WORKFLOW, "DEPLOYED", "RUNNING"),
            block("batch-20261201-0001"),
            block_state(
                "batch-20261201-0001",
                "FAILED",
                Some("workflow batch:nope:1 is not in the registry"),
                Duration::ZERO,
            ),
            deployment("stray"),
        ],
    )
    .await?;
    let overview = until_json(&w, "/api/overview", |v| v["totals"]["blocks"] == 2).await?;
    let blocks = overview["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["id"], "batch-20261201-0001");
    assert_eq!(blocks[0]["status"], "FAILED");
    assert_eq!(
        blocks[0]["reason"],
        "workflow batch:nope:1 is not in the registry"
    );
    assert_eq!(blocks[1]["id"], ID);
    assert_eq!(blocks[1]["workflow"], "realtime:testdask:0.1.0");
    assert_eq!(blocks[1]["deployments"], serde_json::json!([WORKFLOW]));
    assert_eq!(overview["orphans"], serde_json::json!(["stray"]));
    assert_eq!(overview["totals"]["blocks_by_status"]["FAILED"], 1);

    let detail = w.json(&format!("/api/blocks/{ID}")).await?;
    assert_eq!(detail["block"]["status"], "RUNNING");
    assert_eq!(detail["deployments"][0]["id"], WORKFLOW);
    assert_eq!(detail["deployments"][0]["chart"], "workflow");
    assert_eq!(detail["deployments"][0]["status"], "DEPLOYED");
    assert_eq!(detail["deployments"][0]["workload_phase"], "RUNNING");
    let (status, body) = w.get("/api/blocks/realtime-20261201-9999").await?;
    assert_eq!(status, 404);
    assert!(body.contains("no such processing block"), "{body}");

    // The feed lists what happened since the console started.
    let changes = w.json("/api/changes").await?;
    let summaries: Vec<&str> = changes
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["summary"].as_str())
        .collect();
    assert!(
        summaries.contains(
            &"block realtime-20261201-0000 added: workflow realtime:testdask:0.1.0; status RUNNING"
        ),
        "{summaries:#?}"
    );

    let metrics = w.get("/metrics").await?.1;
    assert!(metrics.contains("sdp_console_blocks 2"), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_page_is_pushed_a_new_block_and_its_state() -> Result<()> {
    let w = World::start().await?;
    let mut events = w.events().await?;
    let hello = events.next().await?;
    assert_eq!(hello.name, "hello");
    let snapshot = events.next().await?;
    assert_eq!(snapshot.name, "snapshot");
    assert_eq!(snapshot.data["blocks"], serde_json::json!([]));
    let mut revision = snapshot.data["revision"].as_i64().expect("revision");
    assert!(revision > 0);
    assert_eq!(events.next().await?.name, "changes");

    write(&w.db, &[block(ID)]).await?;
    let delta = events.until("delta", has_block(ID)).await?;
    assert_eq!(delta["from"], revision);
    assert_eq!(delta["blocks"][0]["status"], Value::Null);
    assert_eq!(delta["totals"]["blocks"], 1);
    revision = delta["revision"].as_i64().expect("revision");
    let change = events.until("change", |_| true).await?;
    assert_eq!(change["kind"], "added");
    assert_eq!(change["id"], ID);

    // The controller's first state: the row turns STARTING.
    write(&w.db, &[block_state(ID, "STARTING", None, Duration::ZERO)]).await?;
    let delta = events.until("delta", has_block(ID)).await?;
    assert_eq!(delta["from"], revision);
    assert_eq!(delta["blocks"][0]["status"], "STARTING");
    assert!(delta["blocks"][0]["since"].is_string(), "{delta}");
    let change = events.until("change", |_| true).await?;
    assert_eq!(
        change["summary"],
        "block realtime-20261201-0000: status none → STARTING"
    );

    // Its deployment appears and is deployed; the block is then removed.
    write(&w.db, &[deployment(WORKFLOW)]).await?;
    let delta = events
        .until("delta", |d| d["deployments"][0]["id"] == WORKFLOW)
        .await?;
    assert_eq!(delta["deployments"][0]["block"], ID);
    write(&w.db, &[deployment_state(WORKFLOW, "DEPLOYED", "RUNNING")]).await?;
    events
        .until("delta", |d| {
            d["deployments"][0]["workload_phase"] == "RUNNING"
        })
        .await?;
    write(
        &w.db,
        &[
            (format!("/pb/{ID}"), None),
            (format!("/deploy/{WORKFLOW}"), None),
        ],
    )
    .await?;
    let delta = events
        .until("delta", |d| d["removed_blocks"] == serde_json::json!([ID]))
        .await?;
    assert_eq!(delta["removed_deployments"], serde_json::json!([WORKFLOW]));
    assert_eq!(delta["totals"]["blocks"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_later_starts_from_the_whole_picture_and_the_feed() -> Result<()> {
    let w = World::start().await?;
    write(
        &w.db,
        &[
            block(ID),
            block_state(ID, "FAILED", Some("no such workflow"), Duration::ZERO),
        ],
    )
    .await?;
    until_json(&w, "/api/overview", |v| v["totals"]["blocks"] == 1).await?;
    let mut events = w.events().await?;
    let snapshot = events.until("snapshot", |_| true).await?;
    assert_eq!(snapshot["blocks"][0]["id"], ID);
    assert_eq!(snapshot["blocks"][0]["reason"], "no such workflow");
    let feed = events.until("changes", |_| true).await?;
    assert_eq!(feed[0]["id"], ID);
    assert_eq!(feed[0]["kind"], "added");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pages_get_every_change_from_one_etcd_watch() -> Result<()> {
    let w = World::start().await?;
    let watches_before = w.etcd.grpc_requests("Watch").unwrap_or(0);
    let mut pages = Vec::new();
    for _ in 0..20 {
        let mut events = w.events().await?;
        events.until("changes", |_| true).await?;
        pages.push(events);
    }
    let ready = w.until_ready().await?;
    assert!(ready.contains("20 pages open"), "{ready}");
    for i in 0..3 {
        let id = format!("realtime-20261201-000{i}");
        write(&w.db, &[block(&id)]).await?;
        for page in &mut pages {
            page.until("delta", has_block(&id)).await?;
        }
    }
    // No page opened a watch (a finished Watch call would show here; running ones are
    // counted by the gauge below).
    assert_eq!(w.etcd.grpc_requests("Watch").unwrap_or(0), watches_before);
    let metrics = w.etcd.metrics()?;
    let watchers = metrics
        .lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .expect("etcd reports its watchers");
    assert_eq!(watchers.trim(), "1", "etcd watchers with 20 pages open");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_never_leave_the_server() -> Result<()> {
    let w = World::start().await?;
    let mut events = w.events().await?;
    events.until("changes", |_| true).await?;
    write(
        &w.db,
        &[
            block(ID),
            block_state(ID, "RUNNING", None, Duration::ZERO),
            deployment(WORKFLOW),
        ],
    )
    .await?;
    events
        .until("delta", |d| d["deployments"][0]["id"] == WORKFLOW)
        .await?;
    events.until("change", |c| c["id"] == WORKFLOW).await?;
    let mut everything = events.seen.clone();
    for path in [
        "/api/overview",
        "/api/changes",
        &format!("/api/blocks/{ID}"),
    ] {
        everything.push_str(&w.get(path).await?.1);
    }
    assert!(everything.contains(WORKFLOW));
    assert!(!everything.contains("hunter2"), "{everything}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_etcd() -> Result<()> {
    let mut w = World::start().await?;
    let ready = w.until_ready().await?;
    assert!(ready.starts_with("ready (revision "), "{ready}");
    w.etcd.kill();
    let start = tokio::time::Instant::now();
    loop {
        let (status, body) = w.get("/readyz").await?;
        if status == 503 {
            assert!(body.contains("configuration database"), "{body}");
            break;
        }
        assert!(start.elapsed() < common::DEADLINE, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The page still answers with what it last knew.
    assert_eq!(w.get("/healthz").await?.0, 200);
    assert_eq!(w.get("/api/overview").await?.0, 200);
    w.etcd.restart()?;
    w.until_ready().await?;
    Ok(())
}

fn has_block(id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |d| {
        d["blocks"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["id"] == id))
    }
}

async fn until_json(w: &World, path: &str, ready: impl Fn(&Value) -> bool) -> Result<Value> {
    let start = tokio::time::Instant::now();
    loop {
        let v = w.json(path).await?;
        if ready(&v) {
            return Ok(v);
        }
        if start.elapsed() > common::DEADLINE {
            anyhow::bail!("GET {path} never as expected: {v:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
