//! Builders of the values the controller's unit tests start from: a view whose watches
//! have listed, the deployment context, and (from `sdp_testing::fixtures`, shared with the
//! integration tests) watch entries and processing blocks. One place, so that every test reads the same inputs the same way.

use chrono::{DateTime, Utc};
use sdp_config::WatchEvent;
pub(crate) use sdp_testing::fixtures::{batch_block, entry, realtime_block};

use crate::template::DeployContext;
use crate::view::{Part, View};

/// The time test events arrive at and decisions are made at, unless a test says.
pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
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
            t0(),
        );
    }
    view
}

/// Applies a put of `path` to the watched `part` of the view at [`t0`].
pub(crate) fn put(view: &mut View, part: Part, path: &str, value: &str, rev: i64) {
    view.apply(part, WatchEvent::Put(entry(path, value, rev)), t0());
}

/// The deployment context of a system whose etcd is `etcd` in namespace `sdp`.
pub(crate) fn deploy_context(config_host: &str) -> DeployContext {
    DeployContext {
        config_host: config_host.into(),
        config_port: 2379,
        config_protocol: sdp_config::Protocol::Http,
        config_prefix: String::new(),
        config_secret: None,
        namespace: "sdp".into(),
        owner_grace: std::time::Duration::from_secs(120),
    }
}

/// Applies a deletion of `path` from the watched `part` of the view at `now`.
pub(crate) fn delete_at(view: &mut View, part: Part, path: &str, rev: i64, now: DateTime<Utc>) {
    view.apply(
        part,
        WatchEvent::Deleted {
            path: path.into(),
            revision: rev,
        },
        now,
    );
}
