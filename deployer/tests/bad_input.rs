//! A corpus of bad and hostile entries: each gets a clear state or a correct install,
//! nothing reaches helm except as one argv element or inside the values file, and the
//! good entries written in between are all deployed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

enum Expect {
    /// FAILED (or another status) with a message containing this.
    State(&'static str, &'static str),
    /// Installed; the values file equals this.
    Installed(Value),
}

fn helm(id: &str, args: Value) -> String {
    json!({"deploy_id": id, "type": "helm", "args": args}).to_string()
}

#[tokio::test]
async fn bad_entries_get_clear_states_and_never_reach_helm_outside_the_values_file() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let long_id = format!("a{}", "b".repeat(94) + "c");
    let big = "x".repeat(400_000);
    let too_big = "x".repeat(1_000_000);
    let tricky = "a,b=c[0]\nd --set x=y; $(reboot) `id`";
    let corpus: Vec<(String, String, Expect)> = vec![
        ("dotdot".into(), helm("dotdot", json!({"chart": "../../etc"})), Expect::State("FAILED", "is not allowed")),
        ("url".into(), helm("url", json!({"chart": "https://evil.example/chart.tgz"})), Expect::State("FAILED", "not a path or URL")),
        ("abspath".into(), helm("abspath", json!({"chart": "/etc/passwd"})), Expect::State("FAILED", "is not allowed")),
        ("repo-dotdot".into(), helm("repo-dotdot", json!({"chart": "stable/../../etc"})), Expect::State("FAILED", "is not allowed")),
        ("unknown-repo".into(), helm("unknown-repo", json!({"chart": "evilrepo/dask"})), Expect::State("FAILED", "unknown chart repository \"evilrepo\"")),
        ("oci".into(), helm("oci", json!({"chart": "oci://evil.example/charts/x"})), Expect::State("FAILED", "allowed prefixes")),
        ("flag-chart".into(), helm("flag-chart", json!({"chart": "--post-renderer"})), Expect::State("FAILED", "not a valid chart name")),
        ("no-chart".into(), helm("no-chart", json!({"values": {}})), Expect::State("FAILED", "missing field `args.chart`")),
        ("args-list".into(), helm("args-list", json!(["stable/dask"])), Expect::State("FAILED", "field `args` must be an object")),
        ("values-string".into(), helm("values-string", json!({"chart": "stable/dask", "values": "worker.replicas=2"})), Expect::State("FAILED", "`args.values` must be an object")),
        ("bad-type".into(), json!({"deploy_id": "bad-type", "type": "docker", "args": {}}).to_string(), Expect::State("FAILED", "must be one of helm, process-direct, kubernetes-direct")),
        ("not-json".into(), "{\"deploy_id\": \"not-json\", \"type\": ".into(), Expect::State("FAILED", "not valid JSON")),
        ("a-list".into(), "[1, 2, 3]".into(), Expect::State("FAILED", "must be a JSON object")),
        ("other-id".into(), helm("someone-else", json!({"chart": "stable/dask"})), Expect::State("FAILED", "does not match the key's ID")),
        ("bad_id".into(), helm("bad_id", json!({"chart": "stable/dask"})), Expect::State("FAILED", "invalid deployment ID")),
        ("conflict".into(), helm("conflict", json!({"chart": "stable/dask", "values": {"worker": 1, "worker.replicas": 2}})), Expect::State("FAILED", "needs a map where an earlier key already set a number")),
        ("huge-index".into(), helm("huge-index", json!({"chart": "stable/dask", "values": {"a[99999]": 1}})), Expect::State("FAILED", "maximum supported index")),
        ("proc".into(), json!({"deploy_id": "proc", "type": "process-direct", "args": {"args": ["rm", "-rf", "/"], "shell": true}}).to_string(), Expect::State("FAILED", "starts no processes of its own")),
        // Accepted: hostile text is data in the values file, nothing more.
        ("tricky-value".into(), helm("tricky-value", json!({"chart": "stable/dask", "values": {"scheduler.serviceType": tricky}})),
            Expect::Installed(json!({"scheduler": {"serviceType": tricky}}))),
        ("flag-key".into(), helm("flag-key", json!({"chart": "stable/dask", "values": {"--post-renderer": "/bin/sh", "--set": "a=b"}})),
            Expect::Installed(json!({"--post-renderer": "/bin/sh", "--set": "a=b"}))),
        ("large".into(), helm("large", json!({"chart": "stable/dask", "values": {"blob": big}})), Expect::Installed(json!({"blob": big}))),
        // Over SDP_MAX_VALUES_BYTES (512 KiB): helm's release Secret could not hold it.
        ("megabyte".into(), helm("megabyte", json!({"chart": "stable/dask", "values": {"blob": too_big}})), Expect::State("FAILED", "values too large")),
        ("Realtime-Upper-Dask".into(), helm("Realtime-Upper-Dask", json!({"chart": "stable/dask", "values": {"worker.replicas": "2"}})),
            Expect::Installed(json!({"worker": {"replicas": 2}}))),
        (long_id.clone(), helm(&long_id, json!({"chart": "workflow", "values": {"pb_id": "x", "wf_image": "i"}})),
            Expect::Installed(json!({"pb_id": "x", "wf_image": "i"}))),
    ];
    let result = async {
        let mut good = Vec::new();
        for (i, (id, text, _)) in corpus.iter().enumerate() {
            h.put(&format!("/deploy/{id}"), text).await?;
            let g = format!("good-{i}");
            h.deploy(&g, &dask(&g, json!({"worker.replicas": i})))
                .await?;
            good.push(g);
        }
        ensure!(corpus.len() >= 15);
        for (id, _, expect) in &corpus {
            match expect {
                Expect::State(status, words) => {
                    let st = h.wait_status(id, status, LIMIT).await?;
                    let message = st.message.clone().unwrap_or_default();
                    ensure!(
                        message.contains(words),
                        "{id}: {message:?} should say {words:?}"
                    );
                }
                Expect::Installed(values) => {
                    let st = h.wait_status(id, "DEPLOYED", LIMIT).await?;
                    let release = st.release.clone().unwrap_or_default();
                    let call = h.calls_on("upgrade", &release).into_iter().next();
                    let got: Value = serde_json::from_str(
                        call.as_ref().map_or("null", |c| c.values[0].as_str()),
                    )?;
                    ensure!(&got == values, "{id}: values file {got}");
                }
            }
        }
        for g in &good {
            h.wait_status(g, "DEPLOYED", LIMIT).await?;
        }
        // Names: an uppercase and a 96-character ID get a valid, hashed release name.
        let upper = h
            .state("Realtime-Upper-Dask")
            .await?
            .unwrap_or_default()
            .release
            .unwrap_or_default();
        ensure!(
            upper.starts_with("realtime-upper-dask-")
                && upper.len() == "realtime-upper-dask-".len() + 8,
            "{upper}"
        );
        let long = h
            .state(&long_id)
            .await?
            .unwrap_or_default()
            .release
            .unwrap_or_default();
        ensure!(
            long.len() == 53
                && long
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{long}"
        );
        assert_eq!(
            h.release(&upper).unwrap_or_default()["labels"]["sdp.skao.int/deploy-id"],
            "Realtime-Upper-Dask"
        );
        assert_eq!(
            h.release(&long).unwrap_or_default()["labels"]["sdp.skao.int/deploy-id"],
            long.as_str()
        );

        // Every argv element is one of ours: flags, the namespace, release names derived
        // from IDs, chart paths from the allow-list, the values file path, labels, digests.
        let mut releases: BTreeMap<String, String> = BTreeMap::new();
        for (id, _, expect) in &corpus {
            if matches!(expect, Expect::Installed(_)) {
                releases.insert(
                    h.state(id)
                        .await?
                        .unwrap_or_default()
                        .release
                        .unwrap_or_default(),
                    id.clone(),
                );
            }
        }
        for g in &good {
            releases.insert(g.clone(), g.clone());
        }
        let charts = charts_dir();
        let is_db_id = |d: &str| d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit());
        let allowed = |arg: &str| -> bool {
            const FLAGS: &[&str] = &[
                "upgrade",
                "--install",
                "--namespace",
                "--values",
                "--labels",
                "--description",
                "--timeout",
                "--output",
                "json",
                "--",
                "list",
                "--max",
                "--offset",
                "--filter",
                "--selector",
                "history",
                "uninstall",
                "--ignore-not-found",
                "rollback",
                NS,
                "sdp.skao.int/managed-by=sdp-deployer",
            ];
            FLAGS.contains(&arg)
                || releases.contains_key(arg)
                || arg
                    .strip_prefix('^')
                    .and_then(|a| a.strip_suffix('$'))
                    .is_some_and(|r| releases.contains_key(r))
                || [charts.join("dask"), charts.join("workflow")]
                    .iter()
                    .any(|c| c.to_str() == Some(arg))
                || (arg.starts_with(
                    h.work
                        .path()
                        .join("sdp-deployer/run-")
                        .to_str()
                        .unwrap_or("?"),
                ) && arg.contains("/values-")
                    && arg.ends_with(".json"))
                || arg
                    .strip_prefix("sdp-deployer digest=")
                    .is_some_and(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
                || arg
                    .strip_suffix("ms")
                    .is_some_and(|n| n.parse::<u64>().is_ok())
                || arg.parse::<u64>().is_ok()
                || arg
                    .strip_prefix(
                        "sdp.skao.int/managed-by=sdp-deployer,!sdp.skao.int/config-prefix",
                    )
                    .is_some_and(|rest| {
                        rest.is_empty()
                            || rest == ",!sdp.skao.int/config-db"
                            || rest
                                .strip_prefix(",sdp.skao.int/config-db=")
                                .is_some_and(is_db_id)
                    })
                || arg
                    .strip_prefix("sdp.skao.int/managed-by=sdp-deployer,sdp.skao.int/deploy-id=")
                    .and_then(|rest| rest.split_once(",sdp.skao.int/config-db="))
                    .is_some_and(|(id, db)| {
                        is_db_id(db)
                            && (releases.values().any(|i| i == id) || releases.contains_key(id))
                    })
        };
        for call in h.calls() {
            for arg in &call.argv {
                ensure!(
                    allowed(arg),
                    "unexpected argv element {arg:?} in {:?}",
                    call.argv
                );
            }
        }
        // No refused entry ever reached helm, not even a listing by name.
        for (id, _, expect) in &corpus {
            if matches!(expect, Expect::State(..)) {
                let rel = sdp_deployer::naming::release_name("", id);
                let filter = format!("^{rel}$");
                ensure!(
                    h.calls()
                        .iter()
                        .all(|c| !c.argv.iter().any(|a| *a == rel || *a == filter)),
                    "{id} reached helm"
                );
            }
        }
        ensure!(h.calls().iter().all(|c| {
            !c.argv
                .iter()
                .any(|a| a.contains("evil") || a.contains('\n') || a.contains("/etc"))
        }));
        h.assert_no_orphan_states().await
    }
    .await;
    with_log(result, &d)
}
