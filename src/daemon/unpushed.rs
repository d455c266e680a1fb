//! Local changes a daemon could not push before it lost its lease, kept
//! safe until the next start.
//!
//! When the lease is taken over (another host broke it, or took it over
//! after an outage fenced us), the daemon stops at once, without flushing:
//! writing would overwrite the new holder. Its pending edits then exist only
//! on this disk, and the remote has moved on under someone else, so a later
//! `restore` (or the next start's reconcile) may replace them. So the stop
//! records them in `unpushed.json` in the state dir, and the next start,
//! before anything else, copies each one that is still there to a conflict
//! copy next to it (`notes.conflict-<host>-<stamp>.md`, the engine's
//! naming): the copy is a new file, which nothing overwrites, and the first
//! pass pushes it. The record is removed once every copy is made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::scheduler::{Board, Unflushed};
use super::status::UnpushedFiles;
use crate::spec::Spec;
use crate::state_dir::StateDir;

/// The record's file name in the state dir.
pub const UNPUSHED_FILE: &str = "unpushed.json";

/// What `unpushed.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    /// Why they were not pushed.
    reason: String,
    /// When the daemon stopped (unix seconds).
    at: u64,
    targets: Vec<UnpushedFiles>,
}

/// The unflushed paths as the status shows them.
pub(crate) fn as_files(unflushed: &Unflushed) -> Vec<UnpushedFiles> {
    unflushed
        .iter()
        .map(|(target, paths)| UnpushedFiles {
            target: target.clone(),
            paths: paths.clone(),
        })
        .collect()
}

/// Record `files` (absolute paths) as never pushed because of `reason`.
/// Merged with an earlier record that was not handled yet.
pub(crate) fn record(
    state_dir: &Path,
    reason: &str,
    files: &[UnpushedFiles],
) -> std::io::Result<()> {
    let path = state_dir.join(UNPUSHED_FILE);
    let mut rec = read(&path).unwrap_or_else(|| Record {
        reason: reason.to_string(),
        at: crate::clock::unix_now(),
        targets: Vec::new(),
    });
    rec.reason = reason.to_string();
    rec.at = crate::clock::unix_now();
    for f in files {
        match rec.targets.iter_mut().find(|t| t.target == f.target) {
            Some(t) => {
                t.paths.extend(f.paths.iter().cloned());
                t.paths.sort();
                t.paths.dedup();
            }
            None => rec.targets.push(f.clone()),
        }
    }
    let bytes = serde_json::to_vec_pretty(&rec).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&path, &bytes)
}

fn read(path: &Path) -> Option<Record> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Changes a previous run could not push before it lost its lease become
/// conflict copies now, before anything can overwrite them; `status`
/// lists them with the target's conflicts.
pub(crate) async fn keep_at_start(spec: &Arc<Spec>, state: &StateDir, board: &Board) {
    let (spec2, dir) = (spec.clone(), state.path().to_path_buf());
    let kept = tokio::task::spawn_blocking(move || keep_as_conflict_copies(&spec2, &dir))
        .await
        .unwrap_or_default();
    if kept.is_empty() {
        return;
    }
    board.update(|s| {
        for k in kept {
            if let Some(t) = s.targets.iter_mut().find(|t| t.name == k.target) {
                t.conflicts.push(k.copy);
                t.conflicts_total += 1;
            }
        }
    });
}

/// One conflict copy made at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kept {
    pub target: String,
    /// The copy's path relative to the target's directory.
    pub copy: String,
}

/// At start: keep every recorded unpushed file that still exists as a
/// conflict copy next to it; drop the record once all are handled. Paths of
/// targets no longer in the spec, files gone since, directories and
/// symlinks are logged and left alone. Blocking (small local copies).
pub(crate) fn keep_as_conflict_copies(spec: &Spec, state_dir: &Path) -> Vec<Kept> {
    let path = state_dir.join(UNPUSHED_FILE);
    let Some(rec) = read(&path) else {
        return Vec::new();
    };
    let host = crate::state_dir::hostname();
    let stamp = crate::sync::layout::stamp(jiff::Timestamp::now());
    let mut kept = Vec::new();
    let mut all_handled = true;
    for t in &rec.targets {
        let Some(target) = spec.targets.iter().find(|s| s.name == t.target) else {
            tracing::warn!(target_name = %t.target, files = t.paths.len(), "unpushed changes of a target no longer in the spec are left as they are");
            continue;
        };
        for p in &t.paths {
            match keep_one(&target.local_path, p, &host, &stamp) {
                Ok(Some(copy)) => {
                    tracing::warn!(target_name = %t.target, path = %p.display(), copy = %copy, reason = %rec.reason, "a change the last run could not push is kept as a conflict copy");
                    kept.push(Kept {
                        target: t.target.clone(),
                        copy,
                    });
                }
                Ok(None) => {
                    tracing::warn!(target_name = %t.target, path = %p.display(), "a change the last run could not push is no longer a file here (deleted, or a directory); nothing to keep");
                }
                Err(e) => {
                    all_handled = false;
                    tracing::error!(target_name = %t.target, path = %p.display(), error = %e, "cannot keep a change the last run could not push as a conflict copy; it stays recorded in {UNPUSHED_FILE}");
                }
            }
        }
    }
    if all_handled && let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(error = %e, "cannot remove {UNPUSHED_FILE}");
    }
    kept
}

/// Copy `abs` (a regular file under `root`) to its conflict name; the
/// copy's relative path, or `None` when there is no regular file to keep.
fn keep_one(root: &Path, abs: &Path, host: &str, stamp: &str) -> std::io::Result<Option<String>> {
    let Ok(rel) = abs.strip_prefix(root) else {
        return Ok(None);
    };
    // Names are in their encoded form (see `sync::names`).
    let Ok(rel) = crate::sync::names::rel_of(rel) else {
        return Ok(None);
    };
    match std::fs::symlink_metadata(abs) {
        Ok(md) if md.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let copy = crate::sync::conflict_name(&rel, host, stamp);
    let dest: PathBuf = crate::sync::names::local_path(root, &copy);
    if dest.exists() {
        return Ok(Some(copy));
    }
    let tmp = dest.with_file_name(format!(
        ".{}.coltec-keep",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::copy(abs, &tmp)?;
    if let Err(e) = crate::fsutil::rename_into_place(&tmp, &dest) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Some(copy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_files_become_conflict_copies_and_the_record_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("notes");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/a.md"), "mine, never pushed").unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let files = vec![UnpushedFiles {
            target: "notes".into(),
            paths: vec![root.join("d/a.md"), root.join("gone.txt")],
        }];
        record(&state, "lease taken over", &files).unwrap();
        let spec_text = format!(
            "name: t\nmetadata:\n  org: o\n  project: p\n  environment: e\npersistence:\n  enabled: true\n  default_remote: local\n  remotes:\n    local:\n      type: local\n      path_prefix: {}\n  sync:\n    - name: notes\n      path: {}\n      direction: bidirectional\n",
            tmp.path().join("remote").display(),
            root.display()
        );
        let spec_path = tmp.path().join("spec.yaml");
        std::fs::write(&spec_path, spec_text).unwrap();
        let spec = crate::spec::load(&spec_path).unwrap();
        let kept = keep_as_conflict_copies(&spec, &state);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].copy.starts_with("d/a.conflict-"), "{kept:?}");
        assert!(kept[0].copy.ends_with(".md"), "{kept:?}");
        assert_eq!(
            std::fs::read_to_string(root.join(&kept[0].copy)).unwrap(),
            "mine, never pushed"
        );
        // The original stays; the record is gone, so a second start keeps nothing.
        assert!(root.join("d/a.md").exists());
        assert!(!state.join(UNPUSHED_FILE).exists());
        assert!(keep_as_conflict_copies(&spec, &state).is_empty());
    }
}
