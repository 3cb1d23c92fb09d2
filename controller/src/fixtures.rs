//! Builders of the values the controller's unit tests start from: watch entries, a view
//! whose watches have listed, processing blocks in their two wire styles, and the
//! deployment context. One place, so that every test reads the same inputs the same way.

use sdp_config::{Entry, WatchEvent};

use crate::template::DeployContext;
use crate::view::{Part, View};

/// A watched key as etcd reports it, created and last changed at `rev`.
pub(crate) fn entry(path: &str, value: &str, rev: i64) -> Entry {
    Entry {
        path: path.into(),
        value: value.into(),
        mod_revision: rev,
        create_revision: rev,
    }
}

/// A view every watch of which has listed an empty tree at revision 1.
pub(crate) fn synced_view(registry_file_configured: bool) -> View {
    let mut view = View::new(registry_file_configured);
    for (part, _, _) in Part::ALL {
        view.apply(
            part,
            WatchEvent::Listed {
                revision: 1,
                entries: Vec::new(),
            },
        );
    }
    view
}

/// Applies a put of `path` to the watched `part` of the view.
pub(crate) fn put(view: &mut View, part: Part, path: &str, value: &str, rev: i64) {
    view.apply(part, WatchEvent::Put(entry(path, value, rev)));
}

/// A 2019-style block (`pb_id`) of the registered workflow `realtime:testdask:0.1.0`.
pub(crate) fn realtime_block(id: &str) -> String {
    format!(
        r#"{{"pb_id": "{id}", "sbi_id": null, "workflow": {{"id": "testdask", "type": "realtime", "version": "0.1.0"}}, "parameters": {{}}, "scan_parameters": {{}}}}"#
    )
}

/// A 2021-style block (`id`) of `batch:teststate:0.1.0` depending on `deps`.
pub(crate) fn batch_block(id: &str, deps: &[&str]) -> String {
    let deps: Vec<String> = deps
        .iter()
        .map(|d| format!(r#"{{"pb_id": "{d}", "type": ["calibration"]}}"#))
        .collect();
    format!(
        r#"{{"id": "{id}", "sbi_id": null, "workflow": {{"type": "batch", "id": "teststate", "version": "0.1.0"}}, "parameters": {{}}, "dependencies": [{}]}}"#,
        deps.join(", ")
    )
}

/// The deployment context of a system whose etcd is `etcd` in namespace `sdp`.
pub(crate) fn deploy_context(config_host: &str) -> DeployContext {
    DeployContext {
        config_host: config_host.into(),
        namespace: "sdp".into(),
    }
}
