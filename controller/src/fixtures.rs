//! Builders of the values the controller's unit tests start from: a view whose watches
//! have listed, the deployment context, and (from `sdp_testing::fixtures`, shared with the
//! integration tests) watch entries and processing blocks. One place, so that every test reads the same inputs the same way.

use sdp_config::WatchEvent;
pub(crate) use sdp_testing::fixtures::{batch_block, entry, realtime_block};

use crate::template::DeployContext;
use crate::view::{Part, View};

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

/// The deployment context of a system whose etcd is `etcd` in namespace `sdp`.
pub(crate) fn deploy_context(config_host: &str) -> DeployContext {
    DeployContext {
        config_host: config_host.into(),
        namespace: "sdp".into(),
    }
}
