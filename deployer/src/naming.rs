//! Release names, ownership labels and spec digests: the deterministic names the
//! deployer gives things.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest helm release name.
pub const MAX_RELEASE_NAME: usize = 53;

/// Label marking a release as installed by this deployer.
pub const MANAGED_BY_LABEL: &str = "sdp.skao.int/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "sdp-deployer";
/// Label naming the deployment a release belongs to.
pub const DEPLOY_ID_LABEL: &str = "sdp.skao.int/deploy-id";
/// Label naming the configuration prefix (`SDP_CONFIG_PREFIX`) of the deployer that
/// installed a release; absent for the empty prefix (so releases installed before the
/// label existed belong to the empty prefix).
pub const CONFIG_PREFIX_LABEL: &str = "sdp.skao.int/config-prefix";
/// Label naming the configuration database a release was installed from (its identity,
/// see `sdp_config::database`); absent on releases installed before the guard.
pub const CONFIG_DB_LABEL: &str = "sdp.skao.int/config-db";
/// Start of the release description that carries the spec digest.
pub const DESCRIPTION_PREFIX: &str = "sdp-deployer digest=";

/// `helm list --selector` for the releases this deployer owns.
pub fn owned_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A DNS-1123 label of at most `max` characters (what helm accepts as a release name).
fn is_dns_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// The release name of a deployment: `prefix + id` when that is a valid helm release
/// name; otherwise a deterministic valid one: the lowercased name with other characters
/// turned into `-`, cut to leave room, then `-` and 8 hex digits of the SHA-256 of
/// `prefix + id` (so `A` and `a` never share a release).
pub fn release_name(prefix: &str, deploy_id: &str) -> String {
    let full = format!("{prefix}{deploy_id}");
    if is_dns_label(&full, MAX_RELEASE_NAME) {
        return full;
    }
    let hash = &sha256_hex(full.as_bytes())[..8];
    let mut base: String = full
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(MAX_RELEASE_NAME - 1 - hash.len());
    let base = base.trim_matches('-');
    if base.is_empty() {
        format!("d-{hash}")
    } else {
        format!("{base}-{hash}")
    }
}

/// The value of the deploy-id label: the ID itself when it is a valid label value
/// (at most 63 characters, starting and ending alphanumeric), else the release name.
pub fn deploy_id_label(deploy_id: &str, release: &str) -> String {
    let b = deploy_id.as_bytes();
    let valid = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if valid {
        deploy_id.to_string()
    } else {
        release.to_string()
    }
}

/// The value of [`CONFIG_PREFIX_LABEL`] for a configuration prefix; `None` for the empty
/// prefix. Label values allow 63 characters of `[A-Za-z0-9._-]`, a prefix allows `/` and
/// any length, so the value is a readable part (segments joined by `.`, cut to 40
/// characters) and 16 hex digits of the SHA-256 of the prefix, which tell prefixes apart.
pub fn prefix_label(config_prefix: &str) -> Option<String> {
    let prefix = config_prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return None;
    }
    let hash = &sha256_hex(prefix.as_bytes())[..16];
    let mut readable: String = prefix
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '.',
            c if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') => c,
            _ => '-',
        })
        .collect();
    readable.truncate(40);
    let readable = readable.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    Some(if readable.is_empty() {
        hash.to_string()
    } else {
        format!("{readable}.{hash}")
    })
}

/// Which releases of a prefix to list, by their database label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DbFilter<'a> {
    /// Whatever the label.
    #[default]
    Any,
    /// Labelled with this database.
    Is(&'a str),
    /// Without a database label.
    Unlabelled,
}

/// Whose releases these are: this deployer's prefix, as labels and selectors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    prefix_label: Option<String>,
}

impl Owner {
    /// The owner for a configuration prefix (`SDP_CONFIG_PREFIX`).
    pub fn new(config_prefix: &str) -> Self {
        Owner {
            prefix_label: prefix_label(config_prefix),
        }
    }

    /// `helm list --selector` for this prefix's releases, narrowed by database label.
    /// The empty prefix selects releases without a prefix label (`!key`), so deployers
    /// of other prefixes never see its releases and it never sees theirs.
    pub fn selector(&self, db: DbFilter<'_>) -> String {
        let mut s = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},");
        match &self.prefix_label {
            Some(p) => s.push_str(&format!("{CONFIG_PREFIX_LABEL}={p}")),
            None => s.push_str(&format!("!{CONFIG_PREFIX_LABEL}")),
        }
        match db {
            DbFilter::Any => {}
            DbFilter::Is(id) => s.push_str(&format!(",{CONFIG_DB_LABEL}={id}")),
            DbFilter::Unlabelled => s.push_str(&format!(",!{CONFIG_DB_LABEL}")),
        }
        s
    }

    /// The `--labels` argument of a release installed from database `database` (empty:
    /// no database label).
    pub fn labels_arg(&self, deploy_id: &str, release: &str, database: &str) -> String {
        let mut s = format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{DEPLOY_ID_LABEL}={}",
            deploy_id_label(deploy_id, release)
        );
        if let Some(p) = &self.prefix_label {
            s.push_str(&format!(",{CONFIG_PREFIX_LABEL}={p}"));
        }
        if !database.is_empty() {
            s.push_str(&format!(",{CONFIG_DB_LABEL}={database}"));
        }
        s
    }
}

/// Digest of what a release is made from: SHA-256 (hex) of the canonical JSON (sorted
/// keys, Python formatting) of `{"chart": <chart as the entry names it>, "values":
/// <expanded values>}`. Equal digests mean "nothing to do".
pub fn spec_digest(chart: &str, values: &Value) -> String {
    let doc = serde_json::json!({"chart": chart, "values": values});
    sha256_hex(sdp_config::json::to_python_string(&doc).as_bytes())
}

/// The release description carrying a digest (`helm upgrade --description`); helm keeps
/// a custom description on success, so `helm history` tells which spec a revision has.
pub fn description(digest: &str) -> String {
    format!("{DESCRIPTION_PREFIX}{digest}")
}

/// The digest in a release description written by [`description`].
pub fn digest_from_description(description: &str) -> Option<&str> {
    let d = description.trim().strip_prefix(DESCRIPTION_PREFIX)?;
    (d.len() == 64 && d.bytes().all(|c| c.is_ascii_hexdigit())).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_their_own_release_names() {
        assert_eq!(
            release_name("", "realtime-20191121-0000-dask"),
            "realtime-20191121-0000-dask"
        );
        assert_eq!(release_name("sdp-", "x"), "sdp-x");
    }

    #[test]
    fn other_ids_get_a_deterministic_lowercase_name_with_a_hash() {
        for id in [
            "Realtime-X",
            "A",
            "-lead",
            "trail-",
            &"a".repeat(96),
            &"B".repeat(96),
        ] {
            let name = release_name("", id);
            assert!(is_dns_label(&name, MAX_RELEASE_NAME), "{id} → {name}");
            assert_eq!(name, release_name("", id), "deterministic");
        }
        assert_ne!(release_name("", "A"), release_name("", "a"));
        assert_ne!(release_name("", "A"), release_name("", "Ab"));
        assert!(release_name("", "Realtime-X").starts_with("realtime-x-"));
        let long = release_name("", &"a".repeat(96));
        assert_eq!(long.len(), MAX_RELEASE_NAME);
        assert_ne!(long, release_name("", &"a".repeat(95)));
    }

    #[test]
    fn label_values_fall_back_to_the_release_name() {
        assert_eq!(deploy_id_label("Realtime-X", "r"), "Realtime-X");
        assert_eq!(deploy_id_label(&"a".repeat(64), "r"), "r");
        assert_eq!(deploy_id_label("-x", "r"), "r");
        assert_eq!(
            Owner::new("").labels_arg("d", "d", ""),
            "sdp.skao.int/managed-by=sdp-deployer,sdp.skao.int/deploy-id=d"
        );
    }

    #[test]
    fn prefixes_get_distinct_valid_label_values_and_the_empty_prefix_none() {
        assert_eq!(prefix_label(""), None);
        assert_eq!(prefix_label("/"), None);
        let long = format!("/{}", "x".repeat(100));
        let values: Vec<String> = ["/tenant1", "/tenant1/", "/a/b", "/a-b", "/a.b", "/_", &long]
            .iter()
            .filter_map(|p| prefix_label(p))
            .collect();
        for v in &values {
            let b = v.as_bytes();
            assert!(b.len() <= 63, "{v}");
            assert!(b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric());
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{v}"
            );
        }
        assert!(values[0].starts_with("tenant1."));
        assert_eq!(values[0], values[1], "a trailing slash is the same prefix");
        let distinct: std::collections::BTreeSet<&String> = values[1..].iter().collect();
        assert_eq!(distinct.len(), values.len() - 1);
    }

    #[test]
    fn selectors_keep_prefixes_and_databases_apart() {
        let empty = Owner::new("");
        assert_eq!(
            empty.selector(DbFilter::Any),
            "sdp.skao.int/managed-by=sdp-deployer,!sdp.skao.int/config-prefix"
        );
        let t = Owner::new("/t");
        let label = prefix_label("/t").unwrap_or_default();
        assert_eq!(
            t.selector(DbFilter::Is("ab")),
            format!(
                "sdp.skao.int/managed-by=sdp-deployer,sdp.skao.int/config-prefix={label},sdp.skao.int/config-db=ab"
            )
        );
        assert!(
            t.selector(DbFilter::Unlabelled)
                .ends_with(",!sdp.skao.int/config-db")
        );
        assert_eq!(
            t.labels_arg("d", "d", "ab"),
            format!(
                "sdp.skao.int/managed-by=sdp-deployer,sdp.skao.int/deploy-id=d,sdp.skao.int/config-prefix={label},sdp.skao.int/config-db=ab"
            )
        );
    }

    #[test]
    fn digests_ignore_key_order_and_round_trip_through_descriptions() {
        let a = spec_digest("c", &serde_json::json!({"x": 1, "y": {"b": 2, "a": 1}}));
        let b = spec_digest(
            "c",
            &serde_json::from_str(r#"{"y": {"a": 1, "b": 2}, "x": 1}"#).unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            spec_digest("d", &serde_json::json!({"x": 1, "y": {"b": 2, "a": 1}}))
        );
        assert_eq!(digest_from_description(&description(&a)), Some(a.as_str()));
        assert_eq!(digest_from_description("Install complete"), None);
    }
}
