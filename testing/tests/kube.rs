//! The Kubernetes API stand-in, driven by the real kube-rs client over HTTP (and by the
//! real `kubectl`).

use std::collections::BTreeSet;
use std::error::Error;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Config, ResourceExt};
use sdp_testing::kube::KubeApi;
use serde_json::{Value, json};

type Result<T = (), E = Box<dyn Error>> = std::result::Result<T, E>;

/// The longest a test waits for one event.
const WAIT: Duration = Duration::from_secs(10);

/// A client for the stand-in, configured from the kubeconfig file it writes.
async fn client(api: &KubeApi) -> Result<(Client, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = Kubeconfig::read_from(api.write_kubeconfig(dir.path())?)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    assert_eq!(config.cluster_url.to_string(), format!("{}/", api.url()));
    assert_eq!(config.default_namespace, "default");
    Ok((Client::try_from(config)?, dir))
}

fn pod(name: &str, app: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))?)
}

/// Sets a pod's phase as the kubelet would, through the stand-in's back door.
fn set_phase(api: &KubeApi, name: &str, phase: &str) -> Result<Value> {
    let mut pod = api
        .get_object("Pod", "default", name)
        .ok_or_else(|| format!("no pod {name}"))?;
    pod["status"]["phase"] = json!(phase);
    Ok(api.put_object(pod)?)
}

/// `"Apply web-0 Running"`, `"Delete web-1"`, `"Init"`, `"Error 410 Expired"`…
fn describe(event: &watcher::Result<Event<Pod>>) -> String {
    let summary = |p: &Pod| {
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        match phase {
            Some(phase) => format!("{} {phase}", p.name_any()),
            None => p.name_any(),
        }
    };
    match event {
        Ok(Event::Init) => "Init".to_owned(),
        Ok(Event::InitApply(p)) => format!("InitApply {}", summary(p)),
        Ok(Event::InitDone) => "InitDone".to_owned(),
        Ok(Event::Apply(p)) => format!("Apply {}", summary(p)),
        Ok(Event::Delete(p)) => format!("Delete {}", p.name_any()),
        Err(watcher::Error::WatchError(status)) => {
            format!("Error {} {}", status.code, status.reason)
        }
        Err(e) => format!("Error {e}"),
    }
}

/// The next `n` items of a watcher stream, described.
async fn take<S>(stream: &mut S, n: usize) -> Result<Vec<String>>
where
    S: Stream<Item = watcher::Result<Event<Pod>>> + Unpin,
{
    let mut seen = Vec::new();
    while seen.len() < n {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(event)) => seen.push(describe(&event)),
            Ok(None) => return Err(format!("stream ended after {seen:?}").into()),
            Err(_) => return Err(format!("no event within {WAIT:?} after {seen:?}").into()),
        }
    }
    Ok(seen)
}

/// The next item of a raw watch stream.
async fn next_raw<S>(stream: &mut S) -> Result<Option<kube::Result<WatchEvent<Pod>>>>
where
    S: Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin,
{
    Ok(tokio::time::timeout(WAIT, stream.next()).await?)
}

/// A pod watcher on `default` selecting `app=web`. It has no backoff between retries:
/// the events a test expects come at once.
fn web_watcher(client: &Client) -> impl Stream<Item = watcher::Result<Event<Pod>>> + Unpin {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    watcher(pods, watcher::Config::default().labels("app=web")).boxed()
}

#[tokio::test]
async fn a_watcher_lists_then_follows_changes_in_order_within_its_selector() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("web-0", "web")?)
        .await?;
    pods.create(&PostParams::default(), &pod("db-0", "db")?)
        .await?;
    let mut events = web_watcher(&client);
    assert_eq!(
        take(&mut events, 3).await?,
        ["Init", "InitApply web-0 Pending", "InitDone"]
    );

    pods.create(&PostParams::default(), &pod("web-1", "web")?)
        .await?;
    pods.create(&PostParams::default(), &pod("db-1", "db")?)
        .await?;
    set_phase(&api, "web-0", "Running")?;
    pods.delete("web-1", &DeleteParams::default()).await?;
    set_phase(&api, "db-0", "Running")?;
    // Relabelled out of the selection: the watcher sees it go.
    pods.patch(
        "web-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await?;
    assert_eq!(
        take(&mut events, 4).await?,
        [
            "Apply web-1 Pending",
            "Apply web-0 Running",
            "Delete web-1",
            "Delete web-0"
        ]
    );
    assert_eq!(api.requests("list", "Pod"), 1);
    assert_eq!(api.requests("watch", "Pod"), 1);
    Ok(())
}

#[tokio::test]
async fn a_dropped_watch_resumes_without_missing_a_change() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("web-0", "web")?)
        .await?;
    pods.create(&PostParams::default(), &pod("web-1", "web")?)
        .await?;
    let mut events = web_watcher(&client);
    assert_eq!(
        take(&mut events, 4).await?,
        [
            "Init",
            "InitApply web-0 Pending",
            "InitApply web-1 Pending",
            "InitDone"
        ]
    );
    // The watcher opens its watch only when polled after the list: make it do so.
    set_phase(&api, "web-1", "Running")?;
    assert_eq!(take(&mut events, 1).await?, ["Apply web-1 Running"]);
    assert_eq!(api.requests("watch", "Pod"), 1);

    // The watcher is not polled meanwhile, so it cannot reconnect before these changes.
    api.drop_watches();
    pods.create(&PostParams::default(), &pod("web-2", "web")?)
        .await?;
    set_phase(&api, "web-0", "Running")?;
    pods.delete("web-1", &DeleteParams::default()).await?;
    assert_eq!(
        take(&mut events, 3).await?,
        ["Apply web-2 Pending", "Apply web-0 Running", "Delete web-1"]
    );
    // Resumed by a watch from the last version seen, not by listing again.
    assert_eq!(api.requests("list", "Pod"), 1);
    assert_eq!(api.requests("watch", "Pod"), 2);
    Ok(())
}

#[tokio::test]
async fn after_compaction_a_resumed_watch_gets_410_and_lists_again() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for name in ["web-0", "web-1"] {
        pods.create(&PostParams::default(), &pod(name, "web")?)
            .await?;
    }
    let (reader, writer) = reflector::store();
    let stream = watcher(pods.clone(), watcher::Config::default().labels("app=web"));
    let mut events = reflector(writer, stream).boxed();
    assert_eq!(
        take(&mut events, 4).await?,
        [
            "Init",
            "InitApply web-0 Pending",
            "InitApply web-1 Pending",
            "InitDone"
        ]
    );
    set_phase(&api, "web-1", "Running")?;
    assert_eq!(take(&mut events, 1).await?, ["Apply web-1 Running"]);

    api.drop_watches();
    pods.delete("web-1", &DeleteParams::default()).await?;
    set_phase(&api, "web-0", "Running")?;
    pods.create(&PostParams::default(), &pod("web-2", "web")?)
        .await?;
    api.compact();
    assert_eq!(
        take(&mut events, 5).await?,
        [
            "Error 410 Expired",
            "Init",
            "InitApply web-0 Running",
            "InitApply web-2 Pending",
            "InitDone"
        ]
    );
    let cached = |reader: &reflector::Store<Pod>| -> BTreeSet<String> {
        reader.state().iter().map(|p| p.name_any()).collect()
    };
    assert_eq!(
        cached(&reader),
        BTreeSet::from(["web-0".into(), "web-2".into()])
    );
    // One watch cut, one resumed that got 410.
    assert_eq!(api.requests("list", "Pod"), 2);
    assert_eq!(api.requests("watch", "Pod"), 2);

    // And it follows from the new list on.
    pods.create(&PostParams::default(), &pod("web-3", "web")?)
        .await?;
    assert_eq!(take(&mut events, 1).await?, ["Apply web-3 Pending"]);
    assert_eq!(cached(&reader).len(), 3);
    assert_eq!(api.requests("watch", "Pod"), 3);
    Ok(())
}

#[tokio::test]
async fn bookmarks_carry_the_current_version_only_when_asked_for() -> Result {
    let api = KubeApi::start()?;
    api.set_bookmark_interval(Duration::from_millis(100));
    let (client, _dir) = client(&api).await?;
    let pods: Api<Pod> = Api::default_namespaced(client);
    let start = pods.list(&ListParams::default()).await?;
    let start_rv = start.metadata.resource_version.unwrap_or_default();
    assert_eq!(start_rv, api.resource_version().to_string());

    // kube asks for bookmarks unless told not to.
    let mut with = pods
        .watch(&WatchParams::default(), &start_rv)
        .await?
        .boxed();
    let mut without = pods
        .watch(&WatchParams::default().disable_bookmarks(), &start_rv)
        .await?
        .boxed();
    match next_raw(&mut with).await? {
        Some(Ok(WatchEvent::Bookmark(b))) => assert_eq!(b.metadata.resource_version, start_rv),
        other => return Err(format!("expected a bookmark, got {other:?}").into()),
    }
    // Another kind's write moves the version on: the next bookmark says so.
    api.put_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}))?;
    let moved = api.resource_version().to_string();
    loop {
        match next_raw(&mut with).await? {
            Some(Ok(WatchEvent::Bookmark(b))) if b.metadata.resource_version == start_rv => {}
            Some(Ok(WatchEvent::Bookmark(b))) => {
                assert_eq!(b.metadata.resource_version, moved);
                break;
            }
            other => return Err(format!("expected a bookmark, got {other:?}").into()),
        }
    }
    // Several bookmark intervals later, the watch without them has nothing but the pod.
    tokio::time::sleep(Duration::from_millis(400)).await;
    pods.create(&PostParams::default(), &pod("web-0", "web")?)
        .await?;
    match next_raw(&mut without).await? {
        Some(Ok(WatchEvent::Added(p))) => assert_eq!(p.name_any(), "web-0"),
        other => return Err(format!("expected the pod, got {other:?}").into()),
    }
    Ok(())
}

#[tokio::test]
async fn a_watch_ends_after_its_timeout_and_an_expired_version_gets_an_error_event() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let pods: Api<Pod> = Api::default_namespaced(client);
    let rv = api.resource_version().to_string();
    let mut stream = pods
        .watch(&WatchParams::default().disable_bookmarks().timeout(1), &rv)
        .await?
        .boxed();
    let ended = tokio::time::timeout(WAIT, stream.next()).await?;
    assert!(ended.is_none(), "{ended:?}");

    pods.create(&PostParams::default(), &pod("web-0", "web")?)
        .await?;
    api.compact();
    let mut stream = pods.watch(&WatchParams::default(), &rv).await?.boxed();
    match tokio::time::timeout(WAIT, stream.next()).await? {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => return Err(format!("expected 410, got {other:?}").into()),
    }
    Ok(())
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_records_the_manager() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "sdp-work"}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;

    let gvk = GroupVersionKind::gvk("", "v1", "ConfigMap");
    let resource = ApiResource::from_gvk(&gvk);
    let maps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "sdp-work", &resource);
    let params = PatchParams::apply("sdp-deployer");
    let config = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": data});
    let created = maps
        .patch(
            "settings",
            &params,
            &Patch::Apply(config(json!({"a": "1", "b": "2"}))),
        )
        .await?;
    assert_eq!(created.data["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(created.namespace().as_deref(), Some("sdp-work"));
    let managers: Vec<(String, String)> = created
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(managers, [("sdp-deployer".to_owned(), "Apply".to_owned())]);

    // Applying again without `b` removes it: the manager no longer wants it.
    let updated = maps
        .patch(
            "settings",
            &params,
            &Patch::Apply(config(json!({"a": "3"}))),
        )
        .await?;
    assert_eq!(updated.data["data"], json!({"a": "3"}));
    let version = |o: &DynamicObject| o.resource_version().and_then(|v| v.parse::<u64>().ok());
    assert!(version(&updated) > version(&created), "{updated:?}");
    assert_eq!(updated.uid(), created.uid());
    // The typed API sees the same object, in its namespace and not in default.
    let typed: Api<ConfigMap> = Api::namespaced(client.clone(), "sdp-work");
    assert_eq!(
        typed
            .get("settings")
            .await?
            .data
            .and_then(|d| d.get("a").cloned()),
        Some("3".to_owned())
    );
    let in_default: Api<ConfigMap> = Api::default_namespaced(client.clone());
    assert!(in_default.get_opt("settings").await?.is_none());

    // Another applier changing the same field conflicts unless it forces.
    let other = PatchParams::apply("someone-else");
    let err = maps
        .patch("settings", &other, &Patch::Apply(config(json!({"a": "4"}))))
        .await
        .err()
        .ok_or("a conflicting apply succeeded")?;
    match err {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => return Err(format!("expected 409, got {other}").into()),
    }
    let forced = maps
        .patch(
            "settings",
            &other.force(),
            &Patch::Apply(config(json!({"a": "4"}))),
        )
        .await?;
    assert_eq!(forced.data["data"]["a"], "4");

    assert!(
        maps.delete("settings", &DeleteParams::default())
            .await?
            .is_left()
    );
    match maps.delete("settings", &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
            assert_eq!(status.message, "configmaps \"settings\" not found");
        }
        other => return Err(format!("expected 404, got {other:?}").into()),
    }
    Ok(())
}

#[tokio::test]
async fn applying_a_typed_deployment_into_a_missing_namespace_is_refused() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    }))?;
    let params = PatchParams::apply("sdp-deployer");
    let nowhere: Api<Deployment> = Api::namespaced(client.clone(), "nowhere");
    match nowhere
        .patch("web", &params, &Patch::Apply(&deployment))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.message, "namespaces \"nowhere\" not found")
        }
        other => return Err(format!("expected 404, got {other:?}").into()),
    }
    let deployments: Api<Deployment> = Api::default_namespaced(client);
    let applied = deployments
        .patch("web", &params, &Patch::Apply(&deployment))
        .await?;
    assert_eq!(applied.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(applied.metadata.generation, Some(1));
    assert!(api.get_object("Deployment", "default", "web").is_some());
    assert_eq!(api.requests("patch", "Deployment"), 2);
    Ok(())
}

#[tokio::test]
async fn discovery_finds_the_served_kinds_and_their_scope() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let version = client.apiserver_version().await?;
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "35")
    );
    let discovery = Discovery::new(client).run().await?;
    let scope = |group: &str, kind: &str| {
        discovery
            .resolve_gvk(&GroupVersionKind::gvk(group, "v1", kind))
            .map(|(resource, caps)| (resource.plural, caps.scope))
    };
    assert_eq!(
        scope("", "Pod"),
        Some(("pods".to_owned(), Scope::Namespaced))
    );
    assert_eq!(
        scope("batch", "Job"),
        Some(("jobs".to_owned(), Scope::Namespaced))
    );
    assert_eq!(
        scope("apps", "Deployment"),
        Some(("deployments".to_owned(), Scope::Namespaced))
    );
    assert_eq!(
        scope("", "Namespace"),
        Some(("namespaces".to_owned(), Scope::Cluster))
    );
    assert_eq!(scope("networking.k8s.io", "Ingress"), None);
    let groups: BTreeSet<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
    assert!(groups.contains("rbac.authorization.k8s.io"), "{groups:?}");
    assert!(groups.contains(""), "{groups:?}");
    Ok(())
}

#[tokio::test]
async fn a_status_update_is_seen_as_modified_and_a_spec_update_keeps_status() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(&PostParams::default(), &pod("web-0", "web")?)
        .await?;
    let mut events = web_watcher(&client);
    assert_eq!(
        take(&mut events, 3).await?,
        ["Init", "InitApply web-0 Pending", "InitDone"]
    );

    // The same change on a raw watch is a MODIFIED event.
    let from = api.resource_version().to_string();
    let mut raw = pods
        .watch(&WatchParams::default().disable_bookmarks(), &from)
        .await?
        .boxed();
    let status = json!({"status": {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
    }});
    pods.patch_status("web-0", &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    match next_raw(&mut raw).await? {
        Some(Ok(WatchEvent::Modified(p))) => {
            let reason = p.status.and_then(|s| s.conditions).unwrap_or_default();
            assert_eq!(
                reason.first().and_then(|c| c.reason.as_deref()),
                Some("Unschedulable")
            );
        }
        other => return Err(format!("expected MODIFIED, got {other:?}").into()),
    }
    let mut running = pods.get_status("web-0").await?;
    running.status.get_or_insert_default().phase = Some("Running".into());
    // A write to /status cannot change anything else.
    running.labels_mut().insert("sneaked".into(), "in".into());
    pods.replace_status("web-0", &PostParams::default(), &running)
        .await?;
    assert_eq!(
        take(&mut events, 2).await?,
        ["Apply web-0 Pending", "Apply web-0 Running"]
    );
    let pod = pods.get("web-0").await?;
    assert_eq!(pod.labels().get("sneaked"), None);
    let conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
    assert_eq!(
        conditions.first().and_then(|c| c.reason.as_deref()),
        Some("Unschedulable")
    );

    // A write to the main resource cannot change status.
    let mut failed = pods.get("web-0").await?;
    failed.status.get_or_insert_default().phase = Some("Failed".into());
    failed.labels_mut().insert("extra".into(), "1".into());
    let replaced = pods
        .replace("web-0", &PostParams::default(), &failed)
        .await?;
    assert_eq!(
        replaced.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
    assert_eq!(take(&mut events, 1).await?, ["Apply web-0 Running"]);
    Ok(())
}

#[tokio::test]
async fn lists_page_and_select_across_namespaces() -> Result {
    let api = KubeApi::start()?;
    let (client, _dir) = client(&api).await?;
    for (ns, name, app) in [
        ("default", "a", "web"),
        ("default", "b", "db"),
        ("kube-system", "c", "web"),
        ("default", "d", "web"),
    ] {
        let mut pod = serde_json::to_value(pod(name, app)?)?;
        pod["metadata"]["namespace"] = json!(ns);
        api.put_object(pod)?;
    }
    let all: Api<Pod> = Api::all(client.clone());
    let names = |list: &[Pod]| -> Vec<String> {
        list.iter()
            .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
            .collect()
    };
    let web = all
        .list(&ListParams::default().labels("app in (web),app!=db"))
        .await?;
    assert_eq!(
        names(&web.items),
        ["default/a", "default/d", "kube-system/c"]
    );
    let first = all.list(&ListParams::default().limit(2)).await?;
    assert_eq!(names(&first.items), ["default/a", "default/b"]);
    let token = first
        .metadata
        .continue_
        .clone()
        .ok_or("no continue token")?;
    let rest = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await?;
    assert_eq!(names(&rest.items), ["default/d", "kube-system/c"]);
    assert_eq!(rest.metadata.continue_, None);
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );
    let by_name = all
        .list(&ListParams::default().fields("metadata.name=c"))
        .await?;
    assert_eq!(names(&by_name.items), ["kube-system/c"]);
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    assert!(jobs.list(&ListParams::default()).await?.items.is_empty());
    assert_eq!(api.requests("list", "Pod"), 4);
    assert_eq!(api.requests("list", "Job"), 1);

    let in_default: Api<Pod> = Api::default_namespaced(client.clone());
    let deleted = in_default
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=web"),
        )
        .await?
        .left()
        .ok_or("no list of deleted pods")?;
    assert_eq!(names(&deleted.items), ["default/a", "default/d"]);
    let left = all.list(&ListParams::default()).await?;
    assert_eq!(names(&left.items), ["default/b", "kube-system/c"]);
    match all.list(&ListParams::default().labels("app in web")).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 400),
        other => return Err(format!("expected 400, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn the_harness_works_without_a_runtime_and_stops_on_drop() -> Result {
    let api = KubeApi::start()?;
    let port = api.port();
    let pod = api.put_object(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"}}))?;
    assert_eq!(pod["metadata"]["generation"], 1);
    assert!(!pod["metadata"]["uid"].as_str().unwrap_or("").is_empty());
    assert_eq!(api.list_objects("Job", None).len(), 1);
    assert!(api.delete_object("Job", "default", "j").is_some());
    assert!(api.delete_object("Job", "default", "j").is_none());
    assert!(
        api.put_object(json!({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}}))
            .is_err()
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(api);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

/// The `kubectl` that `scripts/setup.sh` installs: on PATH (as `scripts/test.sh` sets it)
/// or in the workspace's `.tools/bin`.
fn kubectl() -> Result<std::path::PathBuf> {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([tools])
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no kubectl on PATH or in .tools/bin: run scripts/setup.sh".into())
}

#[test]
fn kubectl_watches_applies_and_reads_errors() -> Result {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let api = KubeApi::start()?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = api.write_kubeconfig(dir.path())?;
    let kubectl = kubectl()?;
    let command = |args: &[&str]| {
        let mut cmd = Command::new(&kubectl);
        cmd.env("KUBECONFIG", &kubeconfig).args(args);
        cmd
    };
    let web = |name: &str, app: &str| -> Result<Value> {
        let mut pod = serde_json::to_value(pod(name, app)?)?;
        pod["metadata"]["namespace"] = json!("default");
        Ok(pod)
    };
    api.put_object(web("web-0", "web")?)?;

    let mut watch = command(&[
        "get",
        "pods",
        "-w",
        "--output-watch-events",
        "-l",
        "app=web",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()?;
    let stdout = watch.stdout.take().ok_or("no stdout")?;
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            // "ADDED  web-0  0s": the event and the name.
            let words: Vec<&str> = line.split_whitespace().take(2).collect();
            if lines.send(words.join(" ")).is_err() {
                break;
            }
        }
    });
    let next = || seen.recv_timeout(WAIT);
    let outcome = (|| -> Result {
        assert_eq!(next()?, "EVENT NAME");
        assert_eq!(next()?, "ADDED web-0");
        let mut running = api
            .get_object("Pod", "default", "web-0")
            .ok_or("no web-0")?;
        running["status"]["phase"] = json!("Running");
        api.put_object(running)?;
        api.put_object(web("db-0", "db")?)?;
        api.put_object(web("web-1", "web")?)?;
        api.delete_object("Pod", "default", "web-0")
            .ok_or("no web-0")?;
        assert_eq!(next()?, "MODIFIED web-0");
        assert_eq!(next()?, "ADDED web-1");
        assert_eq!(next()?, "DELETED web-0");
        Ok(())
    })();
    let _ = watch.kill();
    let _ = watch.wait();
    outcome?;
    assert_eq!(api.requests("watch", "Pod"), 1);

    let mut apply = command(&["apply", "--server-side", "--validate=false", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}});
    apply
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(manifest.to_string().as_bytes())?;
    let out = apply.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map = api
        .get_object("ConfigMap", "default", "settings")
        .ok_or("not applied")?;
    assert_eq!(map["data"], json!({"a": "1"}));
    assert_eq!(map["metadata"]["managedFields"][0]["manager"], "kubectl");

    let missing = command(&["get", "pod", "nothing"]).output()?;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("pods \"nothing\" not found"), "{stderr}");
    Ok(())
}

/// Reads from `stream` until the bytes read contain `until`, or to the end (or a reset)
/// with `until` empty.
fn read_until(stream: &mut std::net::TcpStream, seen: &mut Vec<u8>, until: &str) -> Result {
    use std::io::Read;
    let found = |seen: &[u8]| !until.is_empty() && String::from_utf8_lossy(seen).contains(until);
    let mut buf = [0u8; 4096];
    while !found(seen) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e.into()),
        }
    }
    if !until.is_empty() && !found(seen) {
        return Err(format!("no {until:?} in {:?}", String::from_utf8_lossy(seen)).into());
    }
    Ok(())
}

#[test]
fn a_timed_out_watch_ends_cleanly_and_a_dropped_one_is_cut() -> Result {
    use std::io::Write;
    let api = KubeApi::start()?;
    let mut web = serde_json::to_value(pod("web-0", "web")?)?;
    web["metadata"]["namespace"] = json!("default");
    api.put_object(web)?;
    let watch = |timeout: &str| -> Result<std::net::TcpStream> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", api.port()))?;
        stream.set_read_timeout(Some(WAIT))?;
        write!(
            stream,
            "GET /api/v1/namespaces/default/pods?watch=1&resourceVersion=0{timeout} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        Ok(stream)
    };

    // From version 0 the watch starts with the existing objects.
    let mut timed = watch("&timeoutSeconds=1")?;
    let mut seen = Vec::new();
    read_until(&mut timed, &mut seen, "")?;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains(r#""type":"ADDED""#), "{text}");
    assert!(text.contains(r#""name":"web-0""#), "{text}");
    assert!(
        text.ends_with("\r\n0\r\n\r\n"),
        "a clean end has the last chunk: {text}"
    );

    let mut dropped = watch("")?;
    let mut seen = Vec::new();
    read_until(&mut dropped, &mut seen, "\"ADDED\"")?;
    api.drop_watches();
    read_until(&mut dropped, &mut seen, "")?;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("web-0"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a cut watch has no last chunk: {text}"
    );
    Ok(())
}

/// One request over a fresh connection: the status code and the body.
fn request(
    api: &KubeApi,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<(u16, Value)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", api.port()))?;
    stream.set_read_timeout(Some(WAIT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no head")?;
    let code = head.split_whitespace().nth(1).ok_or("no status")?.parse()?;
    Ok((code, serde_json::from_str(body)?))
}

#[test]
fn bad_requests_get_a_failure_status_and_the_server_keeps_serving() -> Result {
    let api = KubeApi::start()?;
    let pods = "/api/v1/namespaces/default/pods";
    let (code, created) = request(
        &api,
        "POST",
        pods,
        "application/json",
        r#"{"metadata":{"name":"p"}}"#,
    )?;
    assert_eq!((code, created["kind"].as_str()), (201, Some("Pod")));
    let apply = "application/apply-patch+yaml";
    let merge = "application/merge-patch+json";
    for (method, path, content_type, body, want) in [
        ("POST", pods, "application/json", "[]", 400),
        ("POST", pods, "application/json", "{not json", 400),
        (
            "POST",
            pods,
            "application/json",
            r#"{"metadata":{"name":"Bad_Name"}}"#,
            422,
        ),
        (
            "POST",
            pods,
            "application/json",
            r#"{"metadata":{"name":"p"}}"#,
            409,
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/pods/p",
            "application/json",
            r#"{"metadata":"x"}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p",
            apply,
            "just a string",
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p?fieldManager=m",
            apply,
            "just a string",
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p?fieldManager=m",
            apply,
            "kind: Pod\nmetadata: x",
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p",
            merge,
            r#"{"metadata":"x"}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p",
            merge,
            r#"{"kind":"Job"}"#,
            400,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/p",
            "application/json-patch+json",
            "[]",
            415,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods?labelSelector=a%20in%20b",
            "",
            "",
            400,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion=x",
            "",
            "",
            400,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods?limit=1&continue=garbage",
            "",
            "",
            400,
        ),
        ("GET", "/api/v1/namespaces/default/widgets", "", "", 404),
        ("PUT", "/api/v1/pods", "application/json", "{}", 405),
        (
            "POST",
            "/api/v1/namespaces/default/pods?dryRun=All",
            "application/json",
            "{}",
            400,
        ),
    ] {
        let (code, status) = request(&api, method, path, content_type, body)?;
        assert_eq!(code, want, "{method} {path} {body}: {status}");
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["code"], want, "{status}");
    }
    let (code, pod) = request(&api, "GET", "/api/v1/namespaces/default/pods/p", "", "")?;
    assert_eq!(
        (code, &pod["metadata"]["resourceVersion"]),
        (200, &created["metadata"]["resourceVersion"])
    );
    Ok(())
}
