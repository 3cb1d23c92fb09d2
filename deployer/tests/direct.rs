//! `kubernetes-direct` and `process-direct` deployments: the real deployer, the real etcd,
//! and the real kube client over HTTP against the Kubernetes API stand-in.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use sdp_testing::kube::KubeApi;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// The stand-in with the target namespace, and its kubeconfig (in `dir`).
fn cluster(dir: &std::path::Path) -> Result<(KubeApi, PathBuf)> {
    let api = KubeApi::start()?;
    api.put_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))?;
    let kubeconfig = api.write_kubeconfig(dir)?;
    Ok((api, kubeconfig))
}

fn direct(id: &str, manifest: Value) -> String {
    json!({"deploy_id": id, "type": "kubernetes-direct", "args": manifest}).to_string()
}

fn config_map(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}})
}

/// The field managers recorded on an object.
fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str().map(String::from))
        .collect()
}

/// Every request the stand-in served for `kind`, by verb.
fn requests_for(api: &KubeApi, kind: &str) -> Vec<(String, u64)> {
    api.request_counts()
        .into_iter()
        .filter(|((_, k), _)| k == kind)
        .map(|((verb, _), n)| (verb, n))
        .collect()
}

#[tokio::test]
async fn a_manifest_is_applied_with_our_marks_reapplied_on_change_and_deleted_with_its_entry()
-> Result<()> {
    let h = Harness::start().await?;
    let (api, kubeconfig) = cluster(h.work.path())?;
    let d = h.deployer(&[("KUBECONFIG", kubeconfig.to_str().unwrap_or(""))])?;
    let result = async {
        h.deploy("cm-1", &direct("cm-1", config_map("settings", "one")))
            .await?;
        let st = h.wait_status("cm-1", "DEPLOYED", LIMIT).await?;
        let object = api
            .get_object("ConfigMap", NS, "settings")
            .context("applied")?;
        assert_eq!(object["data"]["k"], "one");
        let meta = &object["metadata"];
        assert_eq!(meta["labels"]["sdp.skao.int/managed-by"], "sdp-deployer");
        assert_eq!(meta["labels"]["sdp.skao.int/deploy-id"], "cm-1");
        assert_eq!(meta["annotations"]["sdp.skao.int/deploy-id"], "cm-1");
        assert_eq!(meta["annotations"]["sdp.skao.int/deployer-prefix"], "");
        assert_eq!(managers(&object), ["sdp-deployer"]);
        assert_eq!(st.namespace.as_deref(), Some(NS));
        assert_eq!((st.release.as_deref(), st.attempts), (None, Some(1)));
        let message = st.message.clone().unwrap_or_default();
        ensure!(
            message.contains("applied ConfigMap \"settings\" in namespace \"sdp\"")
                && message.contains("field manager sdp-deployer"),
            "{message}"
        );
        ensure!(
            h.calls()
                .iter()
                .all(|c| !matches!(c.command(), "upgrade" | "install" | "template")),
            "no helm release for it"
        );

        // Resyncs (every 2 s here) neither re-apply nor rewrite the state.
        let text = h.get("/deploy/cm-1/state").await?;
        let patches = api.requests("patch", "ConfigMap");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            h.get("/deploy/cm-1/state").await?,
            text,
            "state not rewritten"
        );
        assert_eq!(
            api.requests("patch", "ConfigMap"),
            patches,
            "not applied again"
        );

        // A changed entry is applied again.
        h.deploy("cm-1", &direct("cm-1", config_map("settings", "two")))
            .await?;
        h.wait_deployed_other_than("cm-1", st.digest.as_deref(), LIMIT)
            .await?;
        let object = api
            .get_object("ConfigMap", NS, "settings")
            .context("still there")?;
        assert_eq!(object["data"]["k"], "two");

        // Renaming the object replaces it: the new one applied, the old one deleted.
        h.deploy("cm-1", &direct("cm-1", config_map("renamed", "two")))
            .await?;
        eventually(LIMIT, "the old object deleted", || async {
            Ok(api
                .get_object("ConfigMap", NS, "settings")
                .is_none()
                .then_some(()))
        })
        .await?;
        h.wait_status("cm-1", "DEPLOYED", LIMIT).await?;
        ensure!(
            api.get_object("ConfigMap", NS, "renamed").is_some(),
            "new object applied"
        );

        // Deleting the entry (and its state, as sdpcfg delete -R does) deletes the object.
        h.delete_tree("/deploy/cm-1").await?;
        eventually(LIMIT, "the object deleted", || async {
            Ok(api
                .get_object("ConfigMap", NS, "renamed")
                .is_none()
                .then_some(()))
        })
        .await?;
        assert_eq!(api.requests("delete", "ConfigMap"), 2);
        eventually(LIMIT, "no state keys left", || async {
            Ok(h.keys("/deploy/", 1).await?.is_empty().then_some(()))
        })
        .await?;
        Ok(())
    }
    .await;
    with_log(result, &d)
}

/// A client with field manager "python-client", as the 2019 library applies entries.
async fn python_library_apply(kubeconfig: &std::path::Path, manifest: &Value) -> Result<()> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let api: Api<DynamicObject> = Api::namespaced_with(client, NS, &resource);
    let name = manifest["metadata"]["name"].as_str().context("name")?;
    api.patch(
        name,
        &PatchParams::apply("python-client"),
        &Patch::Apply(manifest),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_object_applied_by_another_manager_is_taken_over_and_one_already_gone_is_done()
-> Result<()> {
    let h = Harness::start().await?;
    let (api, kubeconfig) = cluster(h.work.path())?;
    let d = h.deployer(&[("KUBECONFIG", kubeconfig.to_str().unwrap_or(""))])?;
    let result = async {
        // The 2019 library applied the entry from its client first, with another value
        // for the same field: a conflict without force.
        let mut theirs = config_map("shared", "theirs");
        theirs["metadata"]["namespace"] = json!(NS);
        python_library_apply(&kubeconfig, &theirs).await?;
        h.deploy("cm-2", &direct("cm-2", config_map("shared", "ours")))
            .await?;
        let st = h.wait_status("cm-2", "DEPLOYED", LIMIT).await?;
        assert_eq!(st.attempts, Some(1), "no failed attempt");
        let object = api.get_object("ConfigMap", NS, "shared").context("there")?;
        assert_eq!(object["data"]["k"], "ours");
        ensure!(
            managers(&object).contains(&"sdp-deployer".to_string()),
            "{object}"
        );

        // The library deletes the object with the entry; the deployer finds it gone.
        api.delete_object("ConfigMap", NS, "shared")
            .context("deleted")?;
        h.delete_tree("/deploy/cm-2").await?;
        eventually(LIMIT, "no state keys left", || async {
            Ok(h.keys("/deploy/", 1).await?.is_empty().then_some(()))
        })
        .await?;
        // It looked (a read) and found nothing to delete.
        eventually(LIMIT, "the deployer to look for the object", || async {
            Ok((api.requests("get", "ConfigMap") >= 2).then_some(()))
        })
        .await?;
        assert_eq!(api.requests("delete", "ConfigMap"), 0);
        ensure!(!d.log_tail().contains("cannot delete"), "no error");
        ensure!(
            api.get_object("ConfigMap", NS, "shared").is_none(),
            "not re-created"
        );
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn refused_manifests_fail_with_a_reason_and_never_reach_the_api() -> Result<()> {
    let h = Harness::start().await?;
    let (api, kubeconfig) = cluster(h.work.path())?;
    // Namespace allow-listed on purpose: refused all the same, as cluster-scoped.
    let kinds = format!("{},Namespace", sdp_deployer::DEFAULT_DIRECT_KINDS);
    let d = h.deployer(&[
        ("KUBECONFIG", kubeconfig.to_str().unwrap_or("")),
        ("SDP_DIRECT_KINDS", &kinds),
    ])?;
    let result = async {
        let cases = [
            (
                "cluster-scoped",
                direct("cluster-scoped", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mine"}})),
                "Namespace is cluster-scoped; only namespaced objects are applied",
            ),
            (
                "not-allowed",
                direct("not-allowed", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"p": "x"}})),
                "kind Secret is not allowed (SDP_DIRECT_KINDS allows: ConfigMap, Service, Pod",
            ),
            (
                "elsewhere",
                direct("elsewhere", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "kube-system"}})),
                "names namespace \"kube-system\"; objects go only into the deployer's namespace \"sdp\"",
            ),
            (
                "a-process",
                json!({"deploy_id": "a-process", "type": "process-direct", "args": {"args": ["sleep", "60"]}}).to_string(),
                "deployments of type process-direct are not run by sdp-deployer",
            ),
        ];
        for (id, entry, _) in &cases {
            h.deploy(id, entry).await?;
        }
        let mut texts = Vec::new();
        for (id, _, want) in &cases {
            let st = h.wait_status(id, "FAILED", LIMIT).await?;
            let message = st.message.unwrap_or_default();
            ensure!(message.contains(want), "{id}: {message}");
            texts.push(h.get(&format!("/deploy/{id}/state")).await?);
        }
        for kind in ["Namespace", "Secret"] {
            assert_eq!(requests_for(&api, kind), [], "no request for {kind}");
        }
        // ConfigMap is an allowed kind: the sweep lists this deployer's; nothing else.
        for (verb, _) in requests_for(&api, "ConfigMap") {
            assert_eq!(verb, "list", "no request for the refused ConfigMap");
        }
        // Reported once: resyncs (every 2 s) leave the states alone.
        tokio::time::sleep(Duration::from_secs(5)).await;
        for ((id, _, _), text) in cases.iter().zip(&texts) {
            assert_eq!(&h.get(&format!("/deploy/{id}/state")).await?, text, "{id}");
        }
        ensure!(api.get_object("Namespace", "", "mine").is_none(), "not created");
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn without_a_kubernetes_client_entries_fail_and_the_deployer_stays_up() -> Result<()> {
    let h = Harness::start().await?;
    let missing = h.work.path().join("no-such-kubeconfig");
    let mut d = h.deployer(&[("KUBECONFIG", missing.to_str().unwrap_or(""))])?;
    let result = async {
        h.deploy("cm-3", &direct("cm-3", config_map("c", "x")))
            .await?;
        let st = h.wait_status("cm-3", "FAILED", LIMIT).await?;
        let message = st.message.unwrap_or_default();
        ensure!(message.contains("no Kubernetes client"), "{message}");
        assert_eq!(st.attempts, Some(4), "SDP_HELM_RETRIES attempts");
        // Helm entries are not held up by it.
        h.deploy(DASK_ID, &seed_dask()).await?;
        h.wait_status(DASK_ID, "DEPLOYED", LIMIT).await?;
        ensure!(d.is_running(), "the deployer is still running");
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn on_the_render_target_a_manifest_is_written_and_removed_with_its_entry() -> Result<()> {
    let h = Harness::start().await?;
    let out = h.work.path().join("out");
    let d = h.deployer(&[
        ("SDP_HELM_TARGET", "render"),
        ("SDP_RENDER_DIR", out.to_str().unwrap_or("")),
    ])?;
    let result = async {
        h.deploy("cm-4", &direct("cm-4", config_map("c", "x")))
            .await?;
        let st = h.wait_status("cm-4", "DEPLOYED", LIMIT).await?;
        let file = out.join(NS).join("cm-4.yaml");
        let message = st.message.unwrap_or_default();
        ensure!(
            message.contains("render target: nothing applied") && message.contains("cm-4.yaml"),
            "{message}"
        );
        let text = std::fs::read_to_string(&file)?;
        ensure!(text.starts_with("# sdp-deployer: "), "{text}");
        let manifest: Value = serde_yaml::from_str(&text)?;
        assert_eq!(manifest["kind"], "ConfigMap");
        assert_eq!(manifest["metadata"]["namespace"], NS);
        assert_eq!(
            manifest["metadata"]["labels"]["sdp.skao.int/deploy-id"],
            "cm-4"
        );
        h.delete_tree("/deploy/cm-4").await?;
        eventually(LIMIT, "the file removed", || async {
            Ok((!file.exists()).then_some(()))
        })
        .await?;
        Ok(())
    }
    .await;
    with_log(result, &d)
}

#[tokio::test]
async fn an_object_whose_entry_went_while_no_deployer_ran_is_swept_and_foreign_ones_are_kept()
-> Result<()> {
    let h = Harness::start().await?;
    let (api, kubeconfig) = cluster(h.work.path())?;
    let env = [("KUBECONFIG", kubeconfig.to_str().unwrap_or(""))];
    let mut first = h.deployer(&env)?;
    let result = async {
        h.deploy("cm-5", &direct("cm-5", config_map("left", "x")))
            .await?;
        h.deploy("cm-6", &direct("cm-6", config_map("kept", "x")))
            .await?;
        h.wait_status("cm-5", "DEPLOYED", LIMIT).await?;
        h.wait_status("cm-6", "DEPLOYED", LIMIT).await?;
        Ok(())
    }
    .await;
    with_log(result, &first)?;
    first.kill();
    // Marked by a deployer with another prefix: never ours to delete.
    let mut foreign = config_map("foreign", "x");
    foreign["metadata"]["namespace"] = json!(NS);
    foreign["metadata"]["labels"] = json!({"sdp.skao.int/managed-by": "sdp-deployer"});
    foreign["metadata"]["annotations"] =
        json!({"sdp.skao.int/deploy-id": "cm-5", "sdp.skao.int/deployer-prefix": "other-"});
    api.put_object(foreign)?;
    h.delete_tree("/deploy/cm-5").await?;

    let second = h.deployer(&env)?;
    let result = async {
        eventually(LIMIT, "the left-behind object deleted", || async {
            Ok(api
                .get_object("ConfigMap", NS, "left")
                .is_none()
                .then_some(()))
        })
        .await?;
        // Two more resyncs: what an entry asks for, and what is not ours, stay.
        tokio::time::sleep(Duration::from_secs(5)).await;
        ensure!(
            api.get_object("ConfigMap", NS, "kept").is_some(),
            "cm-6's object kept"
        );
        ensure!(
            api.get_object("ConfigMap", NS, "foreign").is_some(),
            "another deployer's object kept"
        );
        assert_eq!(api.requests("delete", "ConfigMap"), 1);
        Ok(())
    }
    .await;
    with_log(result, &second)
}
