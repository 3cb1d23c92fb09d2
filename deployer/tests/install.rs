//! Install, upgrade, no-op rewrite, uninstall and ownership, with the real deployer
//! binary, a real etcd and the stand-in helm.

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_seed_entries_become_releases_with_the_right_names_charts_and_typed_values()
-> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
    h.deploy(DASK_ID, &seed_dask()).await?;
    let result = async {
        let dask_state = h.wait_status(DASK_ID, "DEPLOYED", LIMIT).await?;
        let wf_state = h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        assert_eq!(dask_state.release.as_deref(), Some(DASK_ID));
        assert_eq!(dask_state.namespace.as_deref(), Some(NS));
        assert_eq!(dask_state.revision, Some(1));
        assert_eq!(dask_state.attempts, Some(1));
        assert_eq!(dask_state.digest.as_ref().map(String::len), Some(64));
        assert!(chrono::DateTime::parse_from_rfc3339(dask_state.updated.as_deref().unwrap_or("")).is_ok());
        assert_eq!(wf_state.release.as_deref(), Some(WORKFLOW_ID));

        let installs = h.calls_on("upgrade", DASK_ID);
        ensure!(installs.len() == 1, "one install of the dask release: {installs:?}");
        let call = &installs[0];
        assert_eq!(call.positional(), vec![DASK_ID, charts_dir().join("dask").to_str().unwrap_or("")]);
        assert_eq!(call.flag("--namespace"), Some(NS));
        assert!(call.argv.contains(&"--install".to_string()));
        // Ownership: this deployer (empty prefix: no prefix label) and this database.
        let (record, _) = h.db.database_record().await?.unwrap_or_default();
        assert_eq!(
            call.flag("--labels"),
            Some(format!("sdp.skao.int/managed-by=sdp-deployer,sdp.skao.int/deploy-id={DASK_ID},sdp.skao.int/config-db={}", record.id).as_str())
        );
        // The values file: private, typed like helm --set, and gone afterwards.
        assert_eq!(call.values_modes, vec![0o600]);
        let values: Value = serde_json::from_str(&call.values[0])?;
        assert_eq!(values, json!({"jupyter": {"enabled": false}, "scheduler": {"serviceType": "ClusterIP"}, "worker": {"replicas": 2}}));
        let file = call.flag("--values").unwrap_or("");
        assert!(file.starts_with(h.work.path().to_str().unwrap_or("?")), "{file}");
        assert!(!std::path::Path::new(file).exists(), "values file removed after the call");

        let wf = &h.calls_on("upgrade", WORKFLOW_ID)[0];
        assert_eq!(wf.positional()[1], charts_dir().join("workflow").to_str().unwrap_or(""));
        let values: Value = serde_json::from_str(&wf.values[0])?;
        assert_eq!(
            values,
            json!({"env": {"SDP_CONFIG_HOST": "127.0.0.1", "SDP_HELM_NAMESPACE": "sdp"},
                   "pb_id": "realtime-20191121-0000", "wf_image": "sdp/workflow-testdask:0.1.0"})
        );
        let rel = h.release(DASK_ID).unwrap_or_default();
        assert_eq!(rel["status"], "deployed");
        assert_eq!(rel["labels"]["sdp.skao.int/managed-by"], "sdp-deployer");
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn changed_values_upgrade_once_and_an_identical_rewrite_calls_no_helm() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy(DASK_ID, &seed_dask()).await?;
        let first = h.wait_status(DASK_ID, "DEPLOYED", LIMIT).await?;
        h.deploy(DASK_ID, &dask(DASK_ID, json!({"worker.replicas": "3"})))
            .await?;
        let second = h
            .wait_deployed_other_than(DASK_ID, first.digest.as_deref(), LIMIT)
            .await?;
        assert_eq!(second.revision, Some(2));
        let upgrades = h.calls_on("upgrade", DASK_ID);
        ensure!(upgrades.len() == 2, "install + one upgrade: {upgrades:?}");
        let values: Value = serde_json::from_str(&upgrades[1].values[0])?;
        assert_eq!(values, json!({"worker": {"replicas": 3}}));

        // The same spec written again, once byte-identical and once reformatted.
        let before = h
            .calls()
            .iter()
            .filter(|c| c.argv.iter().any(|a| a == DASK_ID))
            .count();
        h.deploy(DASK_ID, &dask(DASK_ID, json!({"worker.replicas": "3"})))
            .await?;
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&dask(
            DASK_ID,
            json!({"worker.replicas": "3"}),
        ))?)?;
        h.deploy(DASK_ID, &pretty).await?;
        // A marker deployment written after them: once it is deployed, the rewrites were seen.
        h.deploy("marker", &dask("marker", json!({}))).await?;
        h.wait_status("marker", "DEPLOYED", LIMIT).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = h
            .calls()
            .iter()
            .filter(|c| c.argv.iter().any(|a| a == DASK_ID))
            .count();
        ensure!(
            before == after,
            "no helm call for identical rewrites ({before} → {after})"
        );
        let state = h.state(DASK_ID).await?.unwrap_or_default();
        assert_eq!((state.revision, state.digest), (Some(2), second.digest));
        assert_eq!(h.release(DASK_ID).unwrap_or_default()["revision"], 2);
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_restarted_deployer_makes_no_helm_call_for_unchanged_entries() -> Result<()> {
    let h = Harness::start().await?;
    let mut d = h.deployer(&[])?;
    h.deploy(DASK_ID, &seed_dask()).await?;
    h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
    with_log(h.wait_status(DASK_ID, "DEPLOYED", LIMIT).await, &d)?;
    with_log(h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await, &d)?;
    d.kill();
    let before = h.calls().len();
    let d = h.deployer(&[])?;
    // Its first resync lists the releases; then it has nothing to do.
    let result = async {
        eventually(LIMIT, "a resync after the restart", || async {
            Ok((h.calls().len() > before + 1).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let new: Vec<Call> = h.calls().into_iter().skip(before).collect();
        ensure!(
            new.iter()
                .all(|c| c.command() == "list" && c.flag("--filter").is_none()),
            "only resync listings: {new:?}"
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn deleting_an_entry_uninstalls_its_release_and_leaves_no_state_key() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy("plain", &dask("plain", json!({}))).await?;
        h.deploy("tree", &dask("tree", json!({}))).await?;
        h.wait_status("plain", "DEPLOYED", LIMIT).await?;
        h.wait_status("tree", "DEPLOYED", LIMIT).await?;
        // `sdpcfg delete /deploy/plain` leaves the state key: the deployer removes it.
        h.delete("/deploy/plain").await?;
        // `sdpcfg delete -R /deploy/tree` removes both at once.
        h.delete_tree("/deploy/tree").await?;
        eventually(LIMIT, "both releases uninstalled", || async {
            Ok((h.release("plain").is_none() && h.release("tree").is_none()).then_some(()))
        })
        .await?;
        eventually(LIMIT, "the orphan state key removed", || async {
            Ok(h.get("/deploy/plain/state").await?.is_none().then_some(()))
        })
        .await?;
        assert_eq!(h.calls_on("uninstall", "plain").len(), 1);
        assert_eq!(h.calls_on("uninstall", "tree").len(), 1);
        h.assert_no_orphan_states().await
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn foreign_releases_survive_every_resync_whatever_their_name() -> Result<()> {
    let h = Harness::start().await?;
    // One unrelated, one named like a deployment the deployer is asked for, one like a
    // deployment that existed before and is gone.
    for name in ["someone-elses-db", "taken", "was-ours-once"] {
        h.write_release(&foreign_release(name))?;
    }
    h.put(
        "/deploy/was-ours-once/state",
        r#"{"status": "DEPLOYED", "release": "was-ours-once"}"#,
    )
    .await?;
    let d = h.deployer(&[("SDP_HELM_RESYNC", "0.5")])?;
    let result = async {
        h.deploy("taken", &dask("taken", json!({}))).await?;
        h.deploy("mine", &dask("mine", json!({}))).await?;
        h.wait_status("mine", "DEPLOYED", LIMIT).await?;
        let refused = h.wait_status("taken", "FAILED", LIMIT).await?;
        let message = refused.message.unwrap_or_default();
        ensure!(
            message.contains("not installed by sdp-deployer"),
            "{message}"
        );
        // Several resyncs later (every 0.5 s), and with the conflicting entry deleted:
        h.delete_tree("/deploy/taken").await?;
        h.delete("/deploy/mine").await?;
        eventually(LIMIT, "mine uninstalled", || async {
            Ok(h.release("mine").is_none().then_some(()))
        })
        .await?;
        let resyncs = || {
            h.calls()
                .iter()
                .filter(|c| c.command() == "list" && c.flag("--filter").is_none())
                .count()
        };
        let seen = resyncs();
        eventually(LIMIT, "three more resyncs", || async {
            Ok((resyncs() >= seen + 3).then_some(()))
        })
        .await?;
        for name in ["someone-elses-db", "taken", "was-ours-once"] {
            ensure!(h.release(name).is_some(), "foreign release {name} survived");
            let touching: Vec<Call> = h
                .calls()
                .into_iter()
                .filter(|c| c.release() == Some(name) && c.command() != "history")
                .collect();
            ensure!(
                touching.is_empty(),
                "nothing but reads on {name}: {touching:?}"
            );
        }
        // The stale state of the gone deployment is cleaned up all the same.
        eventually(LIMIT, "stale state removed", || async {
            Ok(h.get("/deploy/was-ours-once/state")
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        h.assert_no_orphan_states().await
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn a_changed_workflow_release_is_replaced_not_upgraded() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy(WORKFLOW_ID, &seed_workflow()).await?;
        let first = h.wait_status(WORKFLOW_ID, "DEPLOYED", LIMIT).await?;
        let mut changed: Value = serde_json::from_str(&seed_workflow())?;
        changed["args"]["values"]["wf_image"] = json!("sdp/workflow-testdask:0.2.0");
        h.deploy(WORKFLOW_ID, &changed.to_string()).await?;
        let second = h
            .wait_deployed_other_than(WORKFLOW_ID, first.digest.as_deref(), LIMIT)
            .await?;
        ensure!(
            second.message.as_deref().unwrap_or("").contains("replaced"),
            "{second:?}"
        );
        assert_eq!(
            h.calls_on("uninstall", WORKFLOW_ID).len(),
            1,
            "uninstall, then install"
        );
        assert_eq!(
            h.release(WORKFLOW_ID).unwrap_or_default()["revision"],
            1,
            "a fresh release"
        );
        assert_eq!(second.revision, Some(1));
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn process_direct_and_unusable_kubernetes_direct_entries_fail_with_a_message() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let result = async {
        let proc = json!({"deploy_id": "proc", "type": "process-direct", "args": {"args": ["sleep", "1"]}});
        let kube = json!({"deploy_id": "kube", "type": "kubernetes-direct", "args": {"apiVersion": "v1", "kind": "ConfigMap"}});
        h.deploy("proc", &proc.to_string()).await?;
        h.deploy("kube", &kube.to_string()).await?;
        for (id, why) in [
            ("proc", "starts no processes of its own"),
            ("kube", "kubernetes-direct manifest refused"),
        ] {
            let st = h.wait_status(id, "FAILED", LIMIT).await?;
            let message = st.message.unwrap_or_default();
            ensure!(message.contains(why), "{id}: {message}");
        }
        ensure!(h.calls().iter().all(|c| !c.argv.iter().any(|a| a == "proc" || a == "kube")));
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() -> Result<()> {
    let h = Harness::start().await?;
    let d = h.deployer(&[])?;
    let result = async {
        h.deploy(DASK_ID, &seed_dask()).await?;
        h.wait_status(DASK_ID, "DEPLOYED", LIMIT).await?;
        assert_eq!(d.http_get("/healthz")?.0, 200);
        eventually(LIMIT, "ready", || async {
            Ok((d.http_get("/readyz")?.0 == 200).then_some(()))
        })
        .await?;
        assert_eq!(d.metric("sdp_deployer_is_leader", "")?, 1.0);
        ensure!(
            d.metric(
                "sdp_deployer_helm_operations_total",
                "kind=\"install\",result=\"ok\""
            )? >= 1.0
        );
        let (_, body) = d.http_get("/metrics")?;
        for name in [
            "sdp_deployer_queue_depth",
            "sdp_deployer_retries_total",
            "sdp_deployer_helm_operation_duration_seconds_bucket",
            "sdp_deployer_entries",
        ] {
            ensure!(body.contains(name), "{name} in /metrics:\n{body}");
        }
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn configured_repositories_local_repo_dirs_and_allowed_oci_charts_are_used() -> Result<()> {
    let h = Harness::start().await?;
    let mirror = h.work.path().join("mirror");
    std::fs::create_dir_all(mirror.join("cache"))?;
    std::fs::write(
        mirror.join("cache/Chart.yaml"),
        "apiVersion: v2\nname: cache\nversion: 1.0.0\n",
    )?;
    let dirs = format!("local={}", mirror.display());
    let d = h.deployer(&[
        ("SDP_HELM_REPOS", "bitnami=https://charts.example/bitnami"),
        ("SDP_HELM_REPO_DIRS", &dirs),
        ("SDP_HELM_OCI_ALLOW", "oci://registry.example/sdp"),
    ])?;
    let result = async {
        let cases = [
            ("from-repo", "bitnami/redis", "bitnami/redis".to_string()),
            (
                "from-dir",
                "local/cache",
                mirror.join("cache").display().to_string(),
            ),
            (
                "from-oci",
                "oci://registry.example/sdp/dask",
                "oci://registry.example/sdp/dask".to_string(),
            ),
        ];
        for (id, chart, _) in &cases {
            let entry = json!({"deploy_id": id, "type": "helm", "args": {"chart": chart}});
            h.deploy(id, &entry.to_string()).await?;
        }
        for (id, _, reference) in &cases {
            h.wait_status(id, "DEPLOYED", LIMIT).await?;
            let call = &h.calls_on("upgrade", id)[0];
            assert_eq!(call.positional(), vec![*id, reference.as_str()]);
        }
        // The repository was added before use and is refreshed on every resync.
        let repo_calls: Vec<Vec<String>> = h
            .calls()
            .into_iter()
            .filter(|c| c.command() == "repo")
            .map(|c| c.argv)
            .collect();
        ensure!(
            repo_calls
                .first()
                .is_some_and(|a| a[..2] == ["repo", "add"] && a.contains(&"bitnami".to_string())),
            "{repo_calls:?}"
        );
        ensure!(
            repo_calls.iter().any(|a| a[1] == "update"),
            "{repo_calls:?}"
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn entries_waiting_for_a_worker_say_so() -> Result<()> {
    let h = Harness::start().await?;
    h.faults(json!([{"kind": "delay", "release": "first", "ms": 2000, "count": 1}]))?;
    let d = h.deployer(&[("SDP_HELM_CONCURRENCY", "1")])?;
    let result = async {
        h.deploy("first", &dask("first", json!({}))).await?;
        h.wait_status("first", "INSTALLING", LIMIT).await?;
        h.deploy("second", &dask("second", json!({}))).await?;
        let waiting = h.wait_status("second", "PENDING", LIMIT).await?;
        assert_eq!(
            waiting.message.as_deref(),
            Some("waiting for a helm worker")
        );
        h.wait_status("second", "DEPLOYED", LIMIT).await?;
        Ok(())
    }
    .await;
    with_log(result, &d)
}
