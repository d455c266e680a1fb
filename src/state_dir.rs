//! The per-workspace local state directory and its exclusive lock.
//!
//! It holds the sync-state database, the lease id, the daemon's pidfile,
//! control socket and last status. One process at a time may use it: the
//! lock is an `flock` on `lock`, which also works between containers that
//! (wrongly) share the directory through a named volume on one host.
//!
//! Only its owner may change it: a state dir (or a parent coltecd created
//! for it, or the default `…/coltecd` base) owned by another user, or
//! writable by group or others, is refused, since that user could remove
//! the lock, control socket and pidfile under a running daemon and make
//! `status`/`stop` lie.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{ExitStatus, HasExitStatus};
use crate::spec::Spec;

/// The lock file in the state dir (its content names the holder).
pub const LOCK_FILE: &str = "lock";

/// Environment variable that overrides the state dir location.
pub const STATE_DIR_ENV: &str = "COLTEC_STATE_DIR";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create state directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state directory {path} is in use by another coltecd ({holder}).\n\
         If no other coltecd runs in this container, another container shares this \
         directory (e.g. one named volume mounted into two devcontainers): give each \
         container its own state dir (persistence.daemon.state_dir or {STATE_DIR_ENV})."
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "refusing state directory {path}: {problem}, so another local user could remove \
         its lock, control socket and pidfile. Fix: {fix}, or use another state dir \
         (persistence.daemon.state_dir or {STATE_DIR_ENV})"
    )]
    Unsafe {
        path: PathBuf,
        problem: String,
        fix: String,
    },
}

impl HasExitStatus for StateDirError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            StateDirError::Locked { .. } => ExitStatus::LeaseHeld,
            _ => ExitStatus::Failure,
        }
    }
}

/// Where the state of one workspace lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// `COLTEC_STATE_DIR`, else `persistence.daemon.state_dir`, else
    /// `~/.local/share/coltecd/<org>-<project>-<env>`.
    pub fn for_spec(spec: &Spec) -> StateDir {
        let path = std::env::var_os(STATE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| spec.daemon.state_dir.clone())
            .unwrap_or_else(|| default_base().join(spec.workspace.dir_name()));
        StateDir { path }
    }

    pub fn at(path: impl Into<PathBuf>) -> StateDir {
        StateDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the directory (owner-only) if needed, then check that it, the
    /// parents created here and the default base are private to this user
    /// (see the module doc).
    pub fn ensure(&self) -> Result<(), StateDirError> {
        let missing: Vec<PathBuf> = self
            .path
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| {
                fs::symlink_metadata(a).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            })
            .map(Path::to_path_buf)
            .collect();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|source| StateDirError::Create {
                path: self.path.clone(),
                source,
            })?;
        let base = default_base();
        let mut check = vec![self.path.clone()];
        check.extend(missing.into_iter().filter(|p| *p != self.path));
        if self.path.starts_with(&base) && self.path != base {
            check.push(base);
        }
        check.iter().try_for_each(|p| check_private(p))
    }

    /// Take the exclusive lock, or explain who holds it.
    pub fn lock(&self) -> Result<StateLock, StateDirError> {
        self.ensure()?;
        let lock_path = self.path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StateDirError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = crate::escape::name(holder.trim());
                return Err(StateDirError::Locked {
                    path: self.path.clone(),
                    holder: if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder.into_owned()
                    },
                });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(StateDirError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        // Record who holds it, for the message another process prints.
        let me = crate::daemon::pidfile::Owner::current().to_line();
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(me.as_bytes());
        let _ = file.sync_data();
        Ok(StateLock {
            _file: file,
            dir: self.clone(),
        })
    }
}

/// A private throw-away state dir (under the temp dir, removed on drop):
/// what `sync --dry-run` plans against when the workspace has no state dir
/// yet, so a dry run creates none.
#[derive(Debug)]
pub struct ScratchStateDir {
    dir: StateDir,
}

impl ScratchStateDir {
    pub fn new() -> Result<ScratchStateDir, StateDirError> {
        let path = std::env::temp_dir().join(format!(
            "coltecd-dry-run-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        // Not recursive: an existing path (someone else's) is an error.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| StateDirError::Create {
                path: path.clone(),
                source,
            })?;
        Ok(ScratchStateDir {
            dir: StateDir::at(path),
        })
    }

    pub fn dir(&self) -> &StateDir {
        &self.dir
    }
}

impl Drop for ScratchStateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.dir.path());
    }
}

/// Proof that this process holds the state dir; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    dir: StateDir,
}

impl StateLock {
    pub fn dir(&self) -> &StateDir {
        &self.dir
    }
}

/// `path` is a directory owned by the effective user and not writable by
/// group or others.
fn check_private(path: &Path) -> Result<(), StateDirError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(|source| StateDirError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let me = nix::unistd::geteuid().as_raw();
    let unsafe_dir = |problem: String, fix: String| StateDirError::Unsafe {
        path: path.to_path_buf(),
        problem,
        fix,
    };
    if meta.uid() != me {
        return Err(unsafe_dir(
            format!("it is owned by uid {}, not by you (uid {me})", meta.uid()),
            format!(
                "remove it and let coltecd create it, or `chown {me} '{}'`",
                path.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(
            format!("it is writable by group or others (mode {mode:04o})"),
            format!(
                "`chmod go-w '{}'` (coltecd creates it 0700)",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn default_base() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("coltecd");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/share/coltecd")
}

/// This machine's host name (best effort).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_names_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::at(tmp.path().join("s"));
        let _held = dir.lock().unwrap();
        let err = dir.lock().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("shares this directory"), "{msg}");
    }

    #[test]
    fn a_state_dir_writable_by_others_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        let msg = StateDir::at(&path).lock().unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("mode 0777") && msg.contains("chmod go-w"),
            "{msg}"
        );
        assert!(!path.join("lock").exists());
        // Parents created here are checked too (and are private).
        let deep = StateDir::at(tmp.path().join("a/b/c"));
        deep.ensure().unwrap();
        let mode = fs::metadata(tmp.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn lock_is_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::at(tmp.path().join("s"));
        drop(dir.lock().unwrap());
        assert!(dir.lock().is_ok());
    }
}
