//! The page in a real headless browser (Debian's `chromium`, driven over WebDriver by
//! `chromedriver` from the `chromium-driver` package; scripts/setup.sh installs both):
//! load the page, create a processing block in etcd, see its row appear, write its state
//! as the controller does and see the row turn STARTING, all without a reload. Saves a
//! screenshot of the page as `target/console-screenshot.png`.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{World, block, block_state, deployment, deployment_state, write};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const NEW: &str = "realtime-20261201-0007";

/// `chromedriver` on a free port, with the browsers it starts; killed (its whole process
/// group) when dropped, also when the test fails.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Result<Driver> {
        use std::os::unix::process::CommandExt;
        let port = sdp_testing::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context(
                "cannot run chromedriver: install Debian's chromium and chromium-driver \
                 (scripts/setup.sh does)",
            )?;
        let driver = Driver { child, port };
        let start = std::time::Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > common::DEADLINE {
                bail!("chromedriver did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }

    async fn browser(&self) -> Result<Client> {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium()?,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1440,900",
                    "--hide-scrollbars",
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            bail!("capabilities are an object");
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        Ok(ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await?)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group is chromedriver's own (process_group(0)): it and the browsers.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn chromium() -> Result<String> {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(path).exists() {
            return Ok(path.into());
        }
    }
    bail!("no chromium in /usr/bin: install Debian's chromium (scripts/setup.sh does)")
}

/// Where the screenshot goes: the workspace's target directory.
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshot.png")
}

/// In one step (the page redraws rows as they change, so an element found earlier may
/// be gone): an attribute of the first element matching `css`, or its text with
/// `attribute` "text"; `None` when nothing matches.
async fn read(browser: &Client, css: &str, attribute: &str) -> Result<Option<String>> {
    let value = browser
        .execute(
            "const e = document.querySelector(arguments[0]); \
             if (e === null) return null; \
             return arguments[1] === 'text' ? e.innerText : (e.getAttribute(arguments[1]) || '');",
            vec![json!(css), json!(attribute)],
        )
        .await?;
    Ok(value.as_str().map(str::to_string))
}

/// The `data-status` of the block's row, `None` while there is no row.
async fn row_status(browser: &Client, id: &str) -> Result<Option<String>> {
    read(browser, &format!("tr.block[data-id='{id}']"), "data-status").await
}

/// Poll until `ready` holds for the row's status (or there is none).
async fn until_row(
    browser: &Client,
    id: &str,
    ready: impl Fn(Option<&str>) -> bool,
) -> Result<Option<String>> {
    let start = tokio::time::Instant::now();
    loop {
        let status = row_status(browser, id).await?;
        if ready(status.as_deref()) {
            return Ok(status);
        }
        if start.elapsed() > common::DEADLINE {
            bail!("row {id}: status {status:?} after {:?}", common::DEADLINE);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// A few blocks in the states a user meets, so that the page (and its screenshot) shows
/// more than one row.
async fn background(w: &World) -> Result<()> {
    let running = "realtime-20261201-0001";
    let finished = "batch-20261201-0002";
    let failed = "realtime-20261201-0003";
    let w1 = format!("{running}-workflow");
    let w2 = format!("{finished}-workflow");
    let w3 = format!("{failed}-workflow");
    let mut entries = vec![
        block(running),
        block_state(running, "RUNNING", None, minutes(42)),
        deployment(&w1),
        deployment_state(&w1, "DEPLOYED", "RUNNING"),
        block(finished),
        block_state(finished, "FINISHED", None, minutes(185)),
        deployment(&w2),
        deployment_state(&w2, "DEPLOYED", "FINISHED"),
        block(failed),
        block_state(
            failed,
            "FAILED",
            Some(
                "workflow pod realtime-20261201-0003-workflow-0: image sdp/testdsk:0.1.0 cannot be pulled (ErrImagePull)",
            ),
            minutes(7),
        ),
        deployment(&w3),
        deployment_state(&w3, "DEPLOYED", "FAILED"),
    ];
    entries.push((
        format!("/pb/{running}/owner"),
        Some(json!({"hostname": "node-1", "pid": 4242, "command": ["testdask"]}).to_string()),
    ));
    write(&w.db, &entries).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_appears_and_turns_starting_without_reload() -> Result<()> {
    let w = World::start().await?;
    background(&w).await?;
    let driver = Driver::start()?;
    let browser = driver.browser().await?;
    let result = drive(&w, &browser).await;
    // Close the session whatever happened, then report.
    let _ = browser.close().await;
    result
}

async fn drive(w: &World, browser: &Client) -> Result<()> {
    browser.goto(&format!("{}/", w.base)).await?;
    browser
        .wait()
        .at_most(common::DEADLINE)
        .for_element(Locator::Css("#connection.live"))
        .await?;
    until_row(browser, "realtime-20261201-0003", |s| s == Some("FAILED")).await?;
    // A mark a reload would wipe.
    browser
        .execute("window.sdpNotReloaded = true; return true;", vec![])
        .await?;
    assert_eq!(row_status(browser, NEW).await?, None);

    // A block appears: a row without a status.
    write(&w.db, &[block(NEW)]).await?;
    assert_eq!(
        until_row(browser, NEW, |s| s.is_some()).await?.as_deref(),
        Some("")
    );

    // The controller writes its first state: the same row turns STARTING.
    write(&w.db, &[block_state(NEW, "STARTING", None, Duration::ZERO)]).await?;
    until_row(browser, NEW, |s| s == Some("STARTING")).await?;
    let badge = format!("tr.block[data-id='{NEW}'] td.status .badge");
    let badge = read(browser, &badge, "text").await?;
    assert_eq!(badge.as_deref(), Some("STARTING"));
    let still = browser
        .execute("return window.sdpNotReloaded === true;", vec![])
        .await?;
    assert_eq!(still, json!(true), "the page was reloaded");

    // The feed said so, and a row opens onto its deployments.
    let feed = read(browser, "#feed", "text").await?.unwrap_or_default();
    assert!(
        feed.contains("block realtime-20261201-0007: status none → STARTING"),
        "{feed}"
    );
    browser
        .find(Locator::Css("tr.block[data-id='realtime-20261201-0001']"))
        .await?
        .click()
        .await?;
    let detail = "tr.detail[data-id='realtime-20261201-0001'] tr.deployment";
    browser
        .wait()
        .at_most(common::DEADLINE)
        .for_element(Locator::Css(detail))
        .await?;
    let text = read(browser, detail, "text").await?.unwrap_or_default();
    assert!(text.contains("realtime-20261201-0001-workflow"), "{text}");
    assert!(
        text.contains("DEPLOYED") && text.contains("RUNNING"),
        "{text}"
    );
    let page = browser.source().await?;
    assert!(!page.contains("hunter2"), "a value reached the page");

    let png = browser.screenshot().await?;
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().context("target directory")?)?;
    std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("screenshot: {}", path.display());
    Ok(())
}
