//! Where values files live while helm reads them: a directory of this process's own,
//! inside a private base directory (mode 0700), so that no other user can read them and
//! nothing a killed deployer wrote stays behind for ever.
//!
//! Layout: `<base>/run-<pid>-<n>/` holds a `lock` file, locked (`flock`) for the life of
//! the process, and the values files of its running helm calls (`values-*.json`, 0600,
//! each removed after its call). At start every `run-*` directory whose lock can be
//! taken belongs to a process that is gone (the kernel drops a dead process's locks,
//! SIGKILL included) and is removed with what it holds; nothing else in the base is
//! touched. At a normal exit the process removes its own directory.
//!
//! A directory is made under a `new-*` name and renamed to `run-*` only once its lock
//! is held, so a deployer starting beside another never takes the other's directory,
//! made but not yet locked, for a dead one's. A `new-*` directory holds no values; one
//! left by a process killed while starting is removed once it is a minute old.

use std::fs::{DirBuilder, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::HelmError;

/// Start of the name of a process's directory.
const RUN_PREFIX: &str = "run-";
/// Start of the name of a directory being made (not locked yet).
const NEW_PREFIX: &str = "new-";
/// Age after which a `new-*` directory is a dead process's.
const NEW_STALE: std::time::Duration = std::time::Duration::from_secs(60);
/// The lock file in a process's directory.
const LOCK: &str = "lock";

/// The values directory of this process.
#[derive(Debug)]
pub(crate) struct ValuesDir {
    dir: PathBuf,
    /// Held (locked) while the process lives.
    _lock: File,
}

/// The default base: `$TMPDIR/sdp-deployer`.
pub(crate) fn default_base() -> PathBuf {
    std::env::temp_dir().join("sdp-deployer")
}

/// Create `base` (0700) if needed and check that it is a directory of ours that no one
/// else can enter.
fn private_base(base: &Path) -> Result<(), String> {
    match DirBuilder::new().recursive(true).mode(0o700).create(base) {
        Ok(()) => {}
        Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
    }
    let meta = std::fs::symlink_metadata(base)
        .map_err(|e| format!("cannot inspect {}: {e}", base.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", base.display()));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{} belongs to another user (uid {}); values files must stay private",
            base.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", base.display()))?;
    }
    Ok(())
}

/// Remove the directories of processes that are gone; the number removed.
fn remove_leftovers(base: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        if name.starts_with(NEW_PREFIX) {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > NEW_STALE);
            if stale && std::fs::remove_dir_all(&dir).is_ok() {
                removed += 1;
            }
            continue;
        }
        if !name.starts_with(RUN_PREFIX) {
            continue;
        }
        // No lock file: a process died while creating it (or it is not ours to judge):
        // the lock file comes first, so a directory without one holds no values.
        let Ok(lock) = File::open(dir.join(LOCK)) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // a live process holds it
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove values files left by an earlier deployer");
            }
        }
    }
    removed
}

impl ValuesDir {
    /// Make the directory of this process under `base`, after removing what processes
    /// that are gone left there.
    ///
    /// # Errors
    /// The base cannot be made private, or the directory cannot be created and locked.
    pub(crate) fn create(base: &Path) -> Result<Self, String> {
        private_base(base)?;
        let removed = remove_leftovers(base);
        if removed > 0 {
            tracing::info!(base = %base.display(), removed, "removed values files left by earlier deployers");
        }
        let pid = std::process::id();
        let mut n = 0u32;
        let (new, dir) = loop {
            let new = base.join(format!("{NEW_PREFIX}{pid}-{n}"));
            let dir = base.join(format!("{RUN_PREFIX}{pid}-{n}"));
            if dir.exists() {
                n += 1;
                continue;
            }
            match DirBuilder::new().mode(0o700).create(&new) {
                Ok(()) => break (new, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(format!("cannot create {}: {e}", new.display())),
            }
        };
        let made = File::create(new.join(LOCK))
            .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::from))
            .and_then(|lock| std::fs::rename(&new, &dir).map(|()| lock));
        match made {
            Ok(lock) => Ok(ValuesDir { dir, _lock: lock }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&new);
                Err(format!("cannot lock {}: {e}", new.display()))
            }
        }
    }

    /// The directory.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// The values document in a new file (0600), deleted when dropped.
    ///
    /// # Errors
    /// The file cannot be created or written.
    pub(crate) fn write(&self, values: &Value) -> Result<tempfile::NamedTempFile, HelmError> {
        let local =
            |e: std::io::Error| HelmError::Local(format!("cannot write the values file: {e}"));
        let mut file = tempfile::Builder::new()
            .prefix("values-")
            .suffix(".json")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(local)?;
        // JSON is YAML to helm, and quoting every string keeps YAML from retyping "no" or "1e3".
        let text =
            serde_json::to_vec_pretty(values).map_err(|e| HelmError::Local(e.to_string()))?;
        file.write_all(&text).map_err(local)?;
        file.flush().map_err(local)?;
        Ok(file)
    }
}

impl Drop for ValuesDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_files_are_private_and_go_with_their_directory() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("values");
        let dir = ValuesDir::create(&root).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(dir.path()), 0o700);
        let file = dir.write(&serde_json::json!({"a": "no"})).unwrap();
        assert_eq!(mode(file.path()), 0o600);
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(text.contains("\"no\""), "{text}");
        let path = dir.path().to_path_buf();
        drop(file);
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn leftovers_of_dead_processes_go_and_live_ones_stay() {
        let base = tempfile::tempdir().unwrap();
        let live = ValuesDir::create(base.path()).unwrap();
        let kept = live.write(&serde_json::json!({})).unwrap();
        // What a killed process leaves: its directory, an unlocked lock, a values file.
        let dead = base.path().join("run-999999-0");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK), "").unwrap();
        std::fs::write(dead.join("values-x.json"), "{}").unwrap();
        // Not ours: left alone.
        std::fs::write(base.path().join("other.json"), "{}").unwrap();
        let second = ValuesDir::create(base.path()).unwrap();
        assert!(!dead.exists(), "a dead process's files are removed");
        assert!(kept.path().exists(), "a live process's files stay");
        assert!(base.path().join("other.json").exists());
        assert_ne!(second.path(), live.path());
    }

    #[test]
    fn a_directory_being_made_is_left_alone_until_stale() {
        let base = tempfile::tempdir().unwrap();
        // Another process between making its directory and locking it.
        let young = base.path().join("new-999998-0");
        std::fs::create_dir(&young).unwrap();
        std::fs::write(young.join(LOCK), "").unwrap();
        let old = base.path().join("new-999997-0");
        std::fs::create_dir(&old).unwrap();
        let past = std::time::SystemTime::now() - 2 * NEW_STALE;
        File::open(&old).unwrap().set_modified(past).unwrap();
        let dir = ValuesDir::create(base.path()).unwrap();
        assert!(young.exists(), "a directory being made is not a dead one's");
        assert!(!old.exists(), "one a minute old is");
        assert!(
            dir.path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(RUN_PREFIX)
        );
        assert!(dir.path().join(LOCK).exists());
    }
}
