//! The local side of a pass: what the walk (or, for a path-scoped pass,
//! the re-check of the changed paths) found under the target's root
//! ([`LocalSide`]), the root itself, and removing partial downloads a
//! killed process left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::kind::RESERVED;
use super::names;
use super::scan::{self, LocalEntry};
use super::state::BaseMap;
use super::{FailedFile, PassScope, SkippedFile, SyncError};
use crate::spec::Excludes;

/// The local side of a pass.
#[derive(Debug, Default)]
pub(super) struct LocalSide {
    pub(super) entries: BTreeMap<String, LocalEntry>,
    /// Paths this pass must plan (for a path-scoped pass: only those).
    pub(super) candidates: BTreeSet<String>,
    pub(super) problems: Vec<FailedFile>,
    /// Special files (never synced), each path once.
    pub(super) skipped: Vec<SkippedFile>,
    pub(super) unreadable_dirs: Vec<String>,
    /// Partial downloads left by a killed process (see [`scan::Scan`]).
    pub(super) stale_temps: Vec<PathBuf>,
}

impl LocalSide {
    /// Add a walk's findings; its files become candidates.
    fn absorb(&mut self, s: scan::Scan) {
        self.candidates.extend(s.entries.keys().cloned());
        self.entries.extend(s.entries);
        self.problems.extend(s.problems);
        self.skipped.extend(s.skipped);
        self.unreadable_dirs.extend(s.unreadable_dirs);
        self.stale_temps.extend(s.stale_temps);
    }

    /// Whether `rel` lies under a directory that could not be read (its
    /// state is unknown: it must not be taken as deleted).
    pub(super) fn under_unreadable(&self, rel: &str) -> bool {
        self.unreadable_dirs.iter().any(|d| {
            d.is_empty()
                || rel == d
                || rel
                    .strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// `p` (absolute, or relative to `root`) as an absolute path and as a
/// root-relative path in [`names`] form (empty for the root); `None`
/// outside the root or for a name without an encoding.
pub(super) fn root_relative(root: &Path, p: &Path) -> Option<(PathBuf, String)> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    let rel = names::rel_of(abs.strip_prefix(root).ok()?).ok()?;
    Some((abs, rel))
}

/// Whether the root exists (as a directory; anything else there is an error).
pub(super) async fn root_is_dir(root: &Path, target: &str) -> Result<bool, SyncError> {
    match tokio::fs::metadata(root).await {
        Ok(md) if md.is_dir() => Ok(true),
        Ok(_) => Err(SyncError::Local {
            target: target.to_string(),
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SyncError::Local {
            target: target.to_string(),
            path: root.to_path_buf(),
            source,
        }),
    }
}

/// Create a missing root.
pub(super) async fn create_root(root: &Path, target: &str) -> Result<(), SyncError> {
    tokio::fs::create_dir_all(root)
        .await
        .map_err(|source| SyncError::Local {
            target: target.to_string(),
            path: root.to_path_buf(),
            source,
        })
}

/// Delete the partial downloads a killed process left (never user data:
/// see [`scan::is_temp_name`]).
pub(super) async fn remove_stale_temps(target: &str, paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let target = target.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        for p in paths {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::info!(target_name = %target, path = %p.display(), "removed a partial download left by an interrupted run"),
                Err(e) => tracing::warn!(target_name = %target, path = %p.display(), error = %e, "cannot remove a partial download left by an interrupted run"),
            }
        }
    })
    .await;
}

/// Walk the root (full scope) or re-check the scope's paths.
pub(super) async fn gather_local(
    root: PathBuf,
    excludes: Excludes,
    scope: PassScope,
    base: Arc<BaseMap>,
) -> Result<LocalSide, SyncError> {
    tokio::task::spawn_blocking(move || match scope {
        PassScope::Full { .. } => {
            let mut side = LocalSide::default();
            side.absorb(scan::walk(&root, "", &excludes));
            side.candidates.extend(base.keys().cloned());
            side
        }
        // For path-scoped passes the base entries under each path are candidates.
        PassScope::Paths(paths) => {
            let mut side = LocalSide::default();
            for p in &paths {
                gather_path(&mut side, &root, &excludes, p, &base);
            }
            side
        }
    })
    .await
    .map_err(|e| SyncError::Internal(e.to_string()))
}

/// Re-check one changed path (a file, a directory, or a path that is gone).
fn gather_path(side: &mut LocalSide, root: &Path, excludes: &Excludes, p: &Path, base: &BaseMap) {
    let Some((abs, rel)) = root_relative(root, p) else {
        return;
    };
    if rel.is_empty() {
        side.absorb(scan::walk(root, "", excludes));
        side.candidates.extend(base.keys().cloned());
        return;
    }
    if rel.split('/').next() == Some(RESERVED)
        || abs
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(scan::is_temp_name)
    {
        return;
    }
    // Base entries at and under this path must be re-checked (a
    // deleted directory deletes its files).
    side.candidates.insert(rel.clone());
    let prefix = format!("{rel}/");
    side.candidates.extend(
        base.range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone()),
    );
    if !parents_are_dirs(root, &rel) {
        return;
    }
    match std::fs::symlink_metadata(&abs) {
        Ok(md) if md.is_dir() => {
            if !scan::excluded_with_parents(excludes, &rel, true) {
                side.absorb(scan::walk(root, &rel, excludes));
            }
        }
        Ok(md) if !md.is_file() && !md.file_type().is_symlink() => {
            if !scan::excluded_with_parents(excludes, &rel, false) {
                side.skipped.push(SkippedFile::special(rel, &md));
            }
        }
        Ok(_) => {
            if !scan::excluded_with_parents(excludes, &rel, false) {
                read_one(side, &abs, rel);
            }
        }
        Err(_) => {}
    }
}

/// Anything but a real directory above `rel` means the path is not in the
/// tree (the walker never follows symlinks).
fn parents_are_dirs(root: &Path, rel: &str) -> bool {
    let Some((parent, _)) = rel.rsplit_once('/') else {
        return true;
    };
    let mut cur = root.to_path_buf();
    for c in parent.split('/') {
        cur = names::local_path(&cur, c);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.is_dir() => {}
            _ => return false,
        }
    }
    true
}

fn read_one(side: &mut LocalSide, abs: &Path, rel: String) {
    match LocalEntry::read(abs) {
        Ok(Some(e)) => {
            side.entries.insert(rel, e);
        }
        Ok(None) => {}
        Err(e) => {
            side.problems.push(FailedFile {
                path: rel.clone(),
                reason: format!("cannot read: {e}"),
            });
            // Unknown state: do not treat as deleted.
            side.unreadable_dirs.push(rel);
        }
    }
}
