//! A stand-in Kubernetes API server for tests of kube code, spoken to over real HTTP by
//! the real `kube` client (or `kubectl`).
//!
//! [`KubeApi::start`] serves plain HTTP on a free port of `127.0.0.1` from a thread of
//! its own (with its own tokio runtime, so it works from plain and `#[tokio::test]`
//! tests alike) until it is dropped. It implements:
//!
//! - discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>`,
//!   `/apis/<group>/<version>` for the kinds in `resources.rs` (core pods, services,
//!   configmaps, secrets, serviceaccounts, persistentvolumeclaims, events, namespaces;
//!   apps deployments, statefulsets, replicasets; batch jobs; networkpolicies;
//!   poddisruptionbudgets; rbac roles and rolebindings);
//! - list (one namespace or all) with `labelSelector` (`=`, `==`, `!=`, `in`, `notin`,
//!   `key`, `!key`), `fieldSelector` (`=`, `!=` on any dotted path), `limit`/`continue`;
//! - watch (`?watch=true`) from a `resourceVersion` with `allowWatchBookmarks`,
//!   `timeoutSeconds`, and `410 Expired` for a version older than the history;
//! - create, get, replace, delete, delete-collection, `/status` for the kinds that
//!   have it, JSON merge patch and server-side apply (see `apply.rs` for exactly what
//!   ownership it tracks);
//! - one global resource version, `uid`, `creationTimestamp` and `generation` set by
//!   the server, errors as `Status` objects.
//!
//! It does not: authenticate or authorise, validate objects against their schemas,
//! run controllers (no pods from deployments, no garbage collection, deleting a
//! namespace leaves its objects), set `deletionTimestamp` or honour finalizers, serve
//! protobuf, tables or aggregated discovery, `sendInitialEvents`, `dryRun`, JSON patch,
//! or any kind not in the table. Tests act as the kubelet and controllers through
//! [`KubeApi::put_object`] and friends. `testing/README.md` says more.
//!
//! ```no_run
//! let api = sdp_testing::kube::KubeApi::start()?;
//! let dir = tempfile::tempdir()?;
//! let kubeconfig = api.write_kubeconfig(dir.path())?; // KUBECONFIG for kube or kubectl
//! api.put_object(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "web-0", "namespace": "default"},
//!     "status": {"phase": "Running"},
//! }))?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod apply;
mod handlers;
mod meta;
pub mod pods;
mod resources;
mod routes;
mod selectors;
mod status;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use resources::Kind;
use store::{Store, Update};

/// How often a watch that allows bookmarks gets one, until changed with
/// [`KubeApi::set_bookmark_interval`]. The apiserver's is about a minute; tests want
/// them sooner.
pub const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// What the server's thread and the handle share.
#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    bookmark_interval: Mutex<Duration>,
    /// Requests by `(verb, kind)`.
    requests: Mutex<BTreeMap<(String, String), u64>>,
    /// `127.0.0.1:<port>`, for `/api`'s `serverAddressByClientCIDRs`.
    address: String,
}

impl Shared {
    fn count(&self, verb: &str, kind: &str) {
        *lock(&self.requests)
            .entry((verb.to_owned(), kind.to_owned()))
            .or_default() += 1;
    }

    fn bookmark_interval(&self) -> Duration {
        *lock(&self.bookmark_interval)
    }
}

/// Locks, ignoring poisoning: a panicking request handler leaves the store consistent
/// (every write is done in one step under the lock).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running stand-in API server, stopped when dropped.
///
/// # Guarantees
///
/// - [`KubeApi::start`] returns with the port bound: requests made after it are served.
/// - Every change made through the handle is seen by watches exactly like one made over
///   HTTP (same resource versions, same history).
/// - Dropping the value stops the server and closes every connection, open watches too.
#[derive(Debug)]
pub struct KubeApi {
    port: u16,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KubeApi {
    /// Starts the server on a free port of `127.0.0.1`, with the namespaces `default`,
    /// `kube-system`, `kube-public` and `kube-node-lease` and nothing else.
    ///
    /// # Errors
    ///
    /// If no port can be bound or the runtime cannot be built.
    pub fn start() -> io::Result<KubeApi> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            bookmark_interval: Mutex::new(DEFAULT_BOOKMARK_INTERVAL),
            requests: Mutex::new(BTreeMap::new()),
            address: format!("127.0.0.1:{port}"),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(routes::handle)
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("kube-api-{port}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here ends every connection task.
            })?;
        Ok(KubeApi {
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig whose current context points at this server, with user
    /// `sdp-standin` (no credentials) and namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: sdp-standin
  cluster:
    server: {url}
users:
- name: sdp-standin
  user: {{}}
contexts:
- name: sdp-standin
  context:
    cluster: sdp-standin
    user: sdp-standin
    namespace: default
current-context: sdp-standin
",
            url = self.url()
        )
    }

    /// Writes [`KubeApi::kubeconfig`] to `<dir>/kubeconfig` and returns its path, to
    /// hand to a client as `KUBECONFIG`.
    ///
    /// # Errors
    ///
    /// If the file cannot be written.
    pub fn write_kubeconfig(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        fs::write(&path, self.kubeconfig())?;
        Ok(path)
    }

    /// Cuts every open watch stream as a lost connection would (no closing chunk).
    /// Changes made after this returns are never sent on those streams.
    pub fn drop_watches(&self) {
        lock(&self.shared.store).drop_watches();
    }

    /// Forgets the history of changes: a watch, or a list's `continue`, from a resource
    /// version older than the current one gets `410 Expired`.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// How often watches that allow bookmarks get one (from their next bookmark on).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        *lock(&self.shared.bookmark_interval) = interval;
    }

    /// The current resource version (that of the last write).
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).rv()
    }

    /// How many requests of `verb` on `kind` were served, whatever their outcome. Verbs
    /// are the apiserver's: `get`, `list`, `watch`, `create`, `update`, `patch` (merge
    /// patch and apply, also on `/status`), `delete`, `deletecollection`; kinds are
    /// `Pod`, `Job`… Discovery documents count as `get` of `APIVersions`,
    /// `APIGroupList`, `APIGroup`, `APIResourceList`, `Version`.
    pub fn requests(&self, verb: &str, kind: &str) -> u64 {
        lock(&self.shared.requests)
            .get(&(verb.to_owned(), kind.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every count of [`KubeApi::requests`], by `(verb, kind)`.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.shared.requests).clone()
    }

    /// Creates or replaces an object as given, status included, as the kubelet or a
    /// controller would: `apiVersion`, `kind` and `metadata.name` (and
    /// `metadata.namespace` for a namespaced kind) say which. The namespace need not
    /// exist. The server sets `uid`, `creationTimestamp`, `generation` and
    /// `resourceVersion`, and watches see `ADDED` or `MODIFIED`. Returns the stored object.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a kind the server does not serve or an object it refuses.
    pub fn put_object(&self, object: Value) -> io::Result<Value> {
        let kind = kind_of(&object)?;
        if !object["metadata"].is_object() {
            return Err(invalid("an object needs metadata".to_owned()));
        }
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if kind.namespaced && namespace.is_empty() {
            return Err(invalid(format!("a {} needs metadata.namespace", kind.kind)));
        }
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let mut store = lock(&self.shared.store);
        let stored = match store.get(kind, &namespace, &name) {
            Some(old) => {
                let mut object = object;
                // Unconditional, whatever version the caller's copy had.
                object["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                store.update(kind, &namespace, &name, object, Update::Everything)
            }
            None => store.create(kind, &namespace, object, Update::Everything),
        };
        stored.map_err(|e| invalid(e.message))
    }

    /// An object by kind (`"Pod"`), namespace (`""` for cluster-scoped kinds) and name.
    pub fn get_object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = Kind::named(kind)?;
        lock(&self.shared.store).get(kind, namespace, name).cloned()
    }

    /// Every object of a kind, in one namespace or (with `None`) all, ordered by
    /// namespace and name.
    pub fn list_objects(&self, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(kind) = Kind::named(kind) else {
            return Vec::new();
        };
        lock(&self.shared.store)
            .list(kind, namespace, None)
            .cloned()
            .collect()
    }

    /// Deletes an object; watches see `DELETED`. Returns its last state, or `None` if
    /// there was no such object.
    pub fn delete_object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = Kind::named(kind)?;
        lock(&self.shared.store).delete(kind, namespace, name).ok()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // Fails only if the server already stopped.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn kind_of(object: &Value) -> io::Result<&'static Kind> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    Kind::of(api_version, kind)
        .ok_or_else(|| invalid(format!("the stand-in does not serve {api_version} {kind}")))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
