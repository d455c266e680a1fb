//! A target's notify watcher: one non-recursive watch per directory that
//! is not excluded, placed by walking the tree; watch-budget errors
//! (`ENOSPC`, `EMFILE`) turned into advice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{RawEvent, SharedWatcher, WatchTarget};

/// One watched target: its notify watcher, whether its events overflowed,
/// and whether its watcher also watches the drain barrier (see `drain`).
pub(super) struct WatchedTarget {
    pub target: WatchTarget,
    pub watcher: SharedWatcher,
    pub overflowed: Arc<AtomicBool>,
    pub barrier_watched: Arc<AtomicBool>,
}

impl WatchedTarget {
    pub fn new(target: WatchTarget) -> WatchedTarget {
        WatchedTarget {
            target,
            watcher: Arc::new(Mutex::new(None)),
            overflowed: Arc::new(AtomicBool::new(false)),
            barrier_watched: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Why a watch could not be set up.
pub(super) enum SetupError {
    Budget(String),
    Other(String),
}

fn budget_message(e: &notify::Error) -> String {
    format!(
        "inotify watch limit reached ({e}); raise fs.inotify.max_user_watches \
         (sysctl -w fs.inotify.max_user_watches=524288) or exclude large directories"
    )
}

pub(super) fn classify(e: notify::Error) -> SetupError {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => SetupError::Budget(budget_message(&e)),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28) => {
            SetupError::Budget(budget_message(&e))
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24) => SetupError::Budget(format!(
            "too many open files / inotify instances ({e}); raise fs.inotify.max_user_instances \
             or the open-file limit"
        )),
        _ => SetupError::Other(e.to_string()),
    }
}

/// Walk `dir` (not descending into excluded directories) and add a
/// non-recursive watch on each directory. Returns the files found (for new
/// directories whose contents appeared before their watch).
pub(super) fn watch_tree(
    target: &WatchTarget,
    watcher: &mut RecommendedWatcher,
    dir: &Path,
    collect_files: bool,
) -> Result<Vec<(PathBuf, u64)>, SetupError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        match watcher.watch(&d, RecursiveMode::NonRecursive) {
            Ok(()) => {}
            Err(e) => match classify(e) {
                SetupError::Budget(m) => return Err(SetupError::Budget(m)),
                // Vanished in the meantime, or unreadable: skip it.
                SetupError::Other(m) => {
                    tracing::debug!(target_name = %target.name, dir = %d.display(), error = %m, "cannot watch directory");
                    continue;
                }
            },
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let path = entry.path();
            let Some(rel) = target.rel(&path) else {
                continue;
            };
            if ft.is_dir() {
                if !target.excluded(&rel, true) {
                    stack.push(path);
                }
            } else if collect_files && !target.excluded(&rel, false) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                files.push((path, size));
            }
        }
    }
    Ok(files)
}

/// A fresh watcher for target `index` whose callback feeds `tx`.
fn new_watcher(
    index: usize,
    tx: mpsc::Sender<RawEvent>,
    overflowed: Arc<AtomicBool>,
) -> notify::Result<RecommendedWatcher> {
    notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Never block the notify thread: a full channel means we lost
        // events, which a rescan makes up for.
        if tx.try_send((index, ev)).is_err() {
            overflowed.store(true, Ordering::Relaxed);
        }
    })
}

/// Create the slot's watcher and watch its whole tree (and the drain
/// barrier directory, when there is one). Blocking work runs on the
/// blocking pool; `Ok(false)` when cancelled.
pub(super) async fn activate(
    slot: &WatchedTarget,
    tx: &mpsc::Sender<RawEvent>,
    barrier: Option<PathBuf>,
    cancel: &CancellationToken,
) -> Result<bool, SetupError> {
    let watcher =
        new_watcher(slot.target.index, tx.clone(), slot.overflowed.clone()).map_err(classify)?;
    let shared = slot.watcher.clone();
    let t = slot.target.clone();
    let marked = slot.barrier_watched.clone();
    let setup = tokio::task::spawn_blocking(move || {
        let mut guard = match shared.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut w = watcher;
        let r = watch_tree(&t, &mut w, &t.root, false);
        if r.is_ok() {
            let watched = barrier.is_some_and(|b| w.watch(&b, RecursiveMode::NonRecursive).is_ok());
            marked.store(watched, Ordering::SeqCst);
            *guard = Some(w);
        }
        r.map(|_| ())
    });
    tokio::select! {
        _ = cancel.cancelled() => Ok(false),
        r = setup => match r {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(SetupError::Other(format!("watch setup failed: {e}"))),
        },
    }
}

pub(super) fn drop_watcher(slot: &WatchedTarget) {
    let taken = match slot.watcher.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    drop(taken);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn watch_budget_errors_mean_fallback_with_advice() {
        let enospc = notify::Error::io(std::io::Error::from_raw_os_error(28));
        match classify(enospc) {
            SetupError::Budget(m) => assert!(m.contains("max_user_watches"), "{m}"),
            SetupError::Other(m) => panic!("not a budget error: {m}"),
        }
        match classify(notify::Error::new(notify::ErrorKind::MaxFilesWatch)) {
            SetupError::Budget(m) => assert!(m.contains("sysctl"), "{m}"),
            SetupError::Other(m) => panic!("not a budget error: {m}"),
        }
        assert!(matches!(
            classify(notify::Error::path_not_found()),
            SetupError::Other(_)
        ));
    }

    #[test]
    fn excluded_dirs_are_not_watched_or_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::create_dir_all(root.join("src/node_modules/pkg")).unwrap();
        std::fs::create_dir_all(root.join("node_modules/x")).unwrap();
        std::fs::write(root.join("src/a.rs"), "a").unwrap();
        std::fs::write(root.join("node_modules/x/i.js"), "i").unwrap();
        let spec_excludes = crate::spec::Excludes::new(vec!["node_modules/**".to_string()]);
        let Ok(excludes) = spec_excludes else {
            panic!("excludes do not compile")
        };
        let t = WatchTarget {
            index: 0,
            name: "t".into(),
            root: root.clone(),
            excludes,
        };
        assert!(t.excluded("node_modules", true));
        assert!(t.excluded("src/node_modules/pkg", true));
        assert!(t.excluded("node_modules/x/i.js", false));
        assert!(!t.excluded("src/a.rs", false));
        let mut w = notify::recommended_watcher(|_: notify::Result<notify::Event>| {}).unwrap();
        let files = match watch_tree(&t, &mut w, &root, true) {
            Ok(f) => f,
            Err(_) => panic!("watch setup failed"),
        };
        let names: Vec<_> = files.iter().map(|(p, _)| p.clone()).collect();
        // Nothing below an excluded directory was walked (so not watched).
        assert_eq!(names, vec![root.join("src/a.rs")]);
    }
}
