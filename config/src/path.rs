//! Configuration paths and their depth-tagged etcd keys.
//!
//! A path `/pb/x` is stored under the key `2/pb/x`: the number of `/` in the path,
//! then the path. A global prefix (`/test`) is prepended before tagging.

use crate::error::{Error, Result};

/// Deepest level a recursive listing or deletion goes below its path, as in the
/// Python tools.
pub const MAX_DEPTH: usize = 16;

/// Check a configuration path: starts with `/`, does not end with `/`, and uses only
/// the characters the Python tools allow (`:` too, for `/workflow/` keys).
///
/// # Errors
/// [`Error::InvalidPath`] naming the rule broken.
pub fn validate(path: &str) -> Result<()> {
    validate_prefix(path)?;
    if path.len() > 1 && path.ends_with('/') {
        return Err(invalid(path, "a key path must not end with '/'"));
    }
    Ok(())
}

/// Check a path prefix used for listing or watching (may end with `/`).
///
/// # Errors
/// [`Error::InvalidPath`].
pub fn validate_prefix(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(invalid(path, "a path must start with '/'"));
    }
    // The Python tools allow `[a-zA-Z0-9_\-/]`, plus `:` and `.` in `/workflow/` keys
    // (`/workflow/realtime:testdask:0.1.0`); the library accepts those two everywhere.
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | ':' | '.'))
    {
        return Err(invalid(
            path,
            "a path may contain only letters, digits and _ - / : .",
        ));
    }
    Ok(())
}

fn invalid(path: &str, reason: &'static str) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason,
    }
}

/// Number of `/` in a path: its depth tag.
pub fn depth(path: &str) -> usize {
    path.bytes().filter(|&b| b == b'/').count()
}

/// Maps configuration paths to etcd keys under one global prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
}

impl KeySpace {
    /// A key space with the given global prefix (`""` or e.g. `/test`).
    ///
    /// # Errors
    /// A prefix that is not a valid path.
    pub fn new(prefix: &str) -> Result<Self> {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate(prefix)?;
        }
        Ok(KeySpace {
            prefix: prefix.to_string(),
        })
    }

    /// The global prefix, without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// etcd key of a path at its own depth: `/pb/x` → `2/pb/x`.
    pub fn key(&self, path: &str) -> String {
        let full = format!("{}{}", self.prefix, path);
        format!("{}{}", depth(&full), full)
    }

    /// etcd key prefix for the paths starting with `prefix` that lie `levels` below
    /// the prefix's own depth (`("/pb/", 0)` → `2/pb/`, `("/pb/", 1)` → `3/pb/`).
    pub fn key_prefix(&self, prefix: &str, levels: usize) -> String {
        let full = format!("{}{}", self.prefix, prefix);
        format!("{}{}", depth(&full) + levels, full)
    }

    /// The path of an etcd key in this key space, or `None` when the key is not one.
    pub fn path(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        let digits = key.bytes().take_while(u8::is_ascii_digit).count();
        let (tag, full) = key.split_at(digits);
        if tag.parse::<usize>().ok()? != depth(full) {
            return None;
        }
        let rest = full.strip_prefix(&self.prefix)?;
        rest.starts_with('/').then(|| rest.to_string())
    }
}

/// End of the etcd range covering every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_tagged_with_their_depth() {
        let ks = KeySpace::default();
        assert_eq!(ks.key("/master"), "1/master");
        assert_eq!(
            ks.key("/pb/realtime-20191121-0000"),
            "2/pb/realtime-20191121-0000"
        );
        assert_eq!(
            ks.key("/pb/realtime-20191121-0000/owner"),
            "3/pb/realtime-20191121-0000/owner"
        );
        assert_eq!(ks.key_prefix("/pb/", 0), "2/pb/");
        assert_eq!(ks.key_prefix("/pb/", 1), "3/pb/");
    }

    #[test]
    fn global_prefix_is_prepended_before_tagging() {
        let ks = KeySpace::new("/test").unwrap();
        assert_eq!(ks.key("/pb/x"), "3/test/pb/x");
        assert_eq!(ks.path(b"3/test/pb/x").as_deref(), Some("/pb/x"));
        assert_eq!(ks.path(b"2/pb/x"), None);
    }

    #[test]
    fn paths_follow_the_sdpcfg_rules() {
        assert!(validate("/pb/x").is_ok());
        assert!(validate("/workflow/realtime:testdask:0.1.0").is_ok());
        assert!(
            validate("pb/x")
                .unwrap_err()
                .to_string()
                .contains("start with '/'")
        );
        assert!(
            validate("/pb/")
                .unwrap_err()
                .to_string()
                .contains("end with '/'")
        );
        assert!(validate("/pb/a b").is_err());
        assert!(validate_prefix("/pb/").is_ok());
    }

    #[test]
    fn untagged_or_mistagged_keys_are_not_paths() {
        let ks = KeySpace::default();
        assert_eq!(ks.path(b"3/pb/x"), None);
        assert_eq!(ks.path(b"election/x"), None);
        assert_eq!(ks.path(b"2/pb/x").as_deref(), Some("/pb/x"));
    }

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"2/pb/"), b"2/pb0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    }
}
