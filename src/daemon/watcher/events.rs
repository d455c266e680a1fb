//! A batch of raw notify events turned into scheduler messages: changed
//! paths with their sizes, rescans when events were lost, a fallback when
//! the watch budget ran out; new directories get their watches on the way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use notify::RecommendedWatcher;
use notify::event::{AccessKind, AccessMode, EventKind};

use super::setup::{SetupError, WatchedTarget, classify, watch_tree};
use super::{RawEvent, SharedWatcher, WatchMsg, WatchTarget};

/// One target's share of a batch: who, its watcher, its events.
pub(super) type Work = (
    WatchTarget,
    SharedWatcher,
    Vec<notify::Result<notify::Event>>,
);

pub(super) fn group(slots: &[&WatchedTarget], batch: Vec<RawEvent>) -> Vec<Work> {
    let mut by: BTreeMap<usize, Vec<notify::Result<notify::Event>>> = BTreeMap::new();
    for (i, ev) in batch {
        by.entry(i).or_default().push(ev);
    }
    by.into_iter()
        .filter_map(|(i, evs)| {
            let slot = slots.iter().find(|s| s.target.index == i)?;
            Some((slot.target.clone(), slot.watcher.clone(), evs))
        })
        .collect()
}

/// Turn a batch of raw events of one target into scheduler messages,
/// watching new directories on the way. Blocking (stats, walks).
pub(super) fn process(
    target: &WatchTarget,
    watcher: &Mutex<Option<RecommendedWatcher>>,
    events: Vec<notify::Result<notify::Event>>,
) -> (Vec<WatchMsg>, bool) {
    let mut changed: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut msgs = Vec::new();
    let mut rescan = None;
    let mut root_gone = false;
    for ev in events {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => match classify(e) {
                SetupError::Budget(reason) => {
                    msgs.push(WatchMsg::Fallback {
                        target: target.index,
                        reason,
                    });
                    return (msgs, false);
                }
                SetupError::Other(m) => {
                    tracing::warn!(target_name = %target.name, error = %m, "file watch error; rescanning");
                    rescan = Some(m);
                    continue;
                }
            },
        };
        if ev.need_rescan() {
            rescan = Some("the kernel dropped file events (inotify queue overflow)".to_string());
            continue;
        }
        if matches!(
            ev.kind,
            EventKind::Access(AccessKind::Open(_))
                | EventKind::Access(AccessKind::Read)
                | EventKind::Access(AccessKind::Close(AccessMode::Read))
                | EventKind::Access(AccessKind::Close(AccessMode::Execute))
        ) {
            continue;
        }
        let removed = matches!(ev.kind, EventKind::Remove(_));
        for path in ev.paths {
            let Some(rel) = target.rel(&path) else {
                continue;
            };
            if rel.is_empty() {
                // The root itself went away (rm -rf, re-mount): its watches
                // are gone with it. Checking `is_dir` alone is not enough:
                // `rm -rf dir && mkdir dir` can re-create it before this
                // batch is processed, leaving a watch on the deleted inode.
                if removed || !path.is_dir() {
                    root_gone = true;
                    rescan = Some("the synced directory was removed".to_string());
                }
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).ok();
            let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
            if target.excluded(&rel, is_dir) {
                continue;
            }
            if is_dir {
                // A new (or moved-in) directory: watch it and everything
                // below, and treat what is already inside as changed.
                let mut guard = match watcher.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if let Some(w) = guard.as_mut() {
                    match watch_tree(target, w, &path, true) {
                        Ok(files) => changed.extend(files),
                        Err(SetupError::Budget(reason)) => {
                            msgs.push(WatchMsg::Fallback {
                                target: target.index,
                                reason,
                            });
                            return (msgs, false);
                        }
                        Err(SetupError::Other(_)) => {}
                    }
                }
                // The directory itself matters too (empty dirs, renames).
                changed.insert(path, 0);
            } else {
                let size = meta.map(|m| m.len()).unwrap_or(0);
                changed.insert(path, size);
            }
        }
    }
    if let Some(reason) = rescan {
        msgs.push(WatchMsg::Rescan {
            target: target.index,
            reason,
        });
    }
    if !changed.is_empty() {
        msgs.push(WatchMsg::Changed {
            target: target.index,
            paths: changed.into_iter().collect(),
        });
    }
    (msgs, root_gone)
}
