//! File watching: turns inotify events into "these paths of target N
//! changed" messages for the scheduler, and says when a target must fall
//! back to interval scans.
//!
//! Every directory is watched on its own (non-recursively) so excluded
//! directories (`node_modules/**`, …) are never watched: they cost no
//! inotify watch and wake nobody. New directories get a watch as they
//! appear, and their contents (created before the watch existed) count as
//! changed. The notify callback never blocks: it `try_send`s into a bounded
//! channel; when that is full the target is marked for a full rescan.
//! When the watch budget runs out (`ENOSPC`, `fs.inotify.max_user_watches`)
//! the target's watcher is dropped and it is scanned every interval
//! instead; an inotify queue overflow triggers one full rescan.
//!
//! # Layout
//!
//! - `mod.rs`: the messages, the watched targets, the worker loop.
//! - `setup`: a target's notify watcher and the walk that places its
//!   watches; watch-budget errors turned into advice.
//! - `events`: raw events of a batch turned into scheduler messages.
//! - `fs_kind`: filesystems whose events miss remote changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::RecommendedWatcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::spec::{Excludes, Target};

mod events;
mod fs_kind;
mod setup;

use setup::{SetupError, WatchedTarget, activate, drop_watcher};

/// Raw events buffered between the notify thread and the watch worker.
const RAW_CAPACITY: usize = 4096;

/// What the watch worker tells the scheduler.
#[derive(Debug)]
pub(crate) enum WatchMsg {
    /// These files (absolute paths, with their current size; 0 if gone) changed.
    Changed {
        target: usize,
        paths: Vec<(PathBuf, u64)>,
    },
    /// Events were lost: run a full pass of this target.
    Rescan { target: usize, reason: String },
    /// Events are unusable for this target from now on: poll.
    Fallback { target: usize, reason: String },
    /// Events work but miss some changes (see `fs_kind`).
    Partial { target: usize, reason: String },
}

/// One watched target.
#[derive(Clone)]
pub(crate) struct WatchTarget {
    pub index: usize,
    pub name: String,
    pub root: PathBuf,
    pub excludes: Excludes,
}

impl WatchTarget {
    pub fn from_target(index: usize, t: &Target) -> WatchTarget {
        WatchTarget {
            index,
            name: t.name.clone(),
            root: t.local_path.clone(),
            excludes: t.excludes.clone(),
        }
    }

    /// `path` relative to the root ('/'-separated), or `None` if outside.
    fn rel(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let s = rel.to_string_lossy().replace('\\', "/");
        Some(s)
    }

    /// Whether `rel` or any of its parent directories is excluded.
    fn excluded(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() {
            return false;
        }
        let mut prefix = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let last = i + 1 == parts.len();
            if self
                .excludes
                .is_excluded(&prefix, if last { is_dir } else { true })
            {
                return true;
            }
        }
        false
    }
}

type RawEvent = (usize, notify::Result<notify::Event>);
type SharedWatcher = Arc<Mutex<Option<RecommendedWatcher>>>;

/// What the loop does next.
enum Next {
    Go,
    /// Stop watching (drop every watcher).
    Stop,
    /// The scheduler is gone.
    Gone,
}

/// Start watching `targets`; runs until `cancel`. A target whose directory
/// does not exist yet (a bidirectional target before its first restore) is
/// watched once it appears, and again after it is deleted and re-created.
/// Watchers that cannot be set up report [`WatchMsg::Fallback`] and the rest
/// keep going.
pub(crate) async fn run(
    targets: Vec<WatchTarget>,
    out: mpsc::Sender<WatchMsg>,
    cancel: CancellationToken,
) {
    let (raw_tx, mut raw_rx) = mpsc::channel::<RawEvent>(RAW_CAPACITY);
    // (slot, active): inactive slots wait for their root directory.
    let mut slots: Vec<(WatchedTarget, bool)> = targets
        .into_iter()
        .map(|target| (WatchedTarget::new(target), false))
        .collect();
    let mut first_round = true;
    loop {
        if let Next::Gone = activate_waiting(&mut slots, &raw_tx, &out, &cancel, first_round).await
        {
            return;
        }
        first_round = false;
        if slots.is_empty() {
            cancel.cancelled().await;
            return;
        }
        let waiting = slots.iter().any(|(_, active)| !active);
        let Some(batch) = next_batch(&mut raw_rx, &cancel, waiting).await else {
            break;
        };
        report_overflows(&slots, &out).await;
        if batch.is_empty() {
            continue;
        }
        match deliver(&mut slots, batch, &out, &cancel).await {
            Next::Go => {}
            Next::Stop => break,
            Next::Gone => return,
        }
    }
    for (slot, _) in &slots {
        drop_watcher(slot);
    }
}

/// Activate the targets whose directory is there (first round: everything
/// present); drop those that cannot be watched (they fall back to polling).
async fn activate_waiting(
    slots: &mut Vec<(WatchedTarget, bool)>,
    raw_tx: &mpsc::Sender<RawEvent>,
    out: &mpsc::Sender<WatchMsg>,
    cancel: &CancellationToken,
    first_round: bool,
) -> Next {
    let mut gave_up = Vec::new();
    for (i, (slot, active)) in slots.iter_mut().enumerate() {
        if *active {
            continue;
        }
        let root = slot.target.root.clone();
        let present = tokio::task::spawn_blocking(move || root.is_dir())
            .await
            .unwrap_or(false);
        if !present {
            if first_round {
                tracing::info!(target_name = %slot.target.name, root = %slot.target.root.display(), "directory does not exist yet; watching it once it appears");
            }
            continue;
        }
        match activate(slot, raw_tx, cancel).await {
            Ok(true) => {
                *active = true;
                announce(slot, out, first_round).await;
            }
            Ok(false) => return Next::Gone,
            Err(SetupError::Budget(reason) | SetupError::Other(reason)) => {
                drop_watcher(slot);
                let _ = out
                    .send(WatchMsg::Fallback {
                        target: slot.target.index,
                        reason,
                    })
                    .await;
                gave_up.push(i);
            }
        }
    }
    for i in gave_up.into_iter().rev() {
        slots.remove(i);
    }
    Next::Go
}

/// A target is watched now: say what its events miss, and that what it
/// holds is unknown if it (re)appeared.
async fn announce(slot: &WatchedTarget, out: &mpsc::Sender<WatchMsg>, first_round: bool) {
    // Setting up the watches walked the whole tree.
    super::memory::release_freed();
    let root = slot.target.root.clone();
    let fs = tokio::task::spawn_blocking(move || fs_kind::partial_events_fs(&root))
        .await
        .ok()
        .flatten();
    if let Some(fs) = fs {
        let _ = out
            .send(WatchMsg::Partial {
                target: slot.target.index,
                reason: format!(
                    "on {fs}: changes made outside this machine may raise no file \
                     event; the interval scan picks them up"
                ),
            })
            .await;
    }
    tracing::info!(target_name = %slot.target.name, root = %slot.target.root.display(), "watching for changes");
    if !first_round {
        let _ = out
            .send(WatchMsg::Rescan {
                target: slot.target.index,
                reason: "the directory appeared".into(),
            })
            .await;
    }
}

/// The next batch of raw events (up to 1024), or an empty one after a
/// second when a target waits for its directory; `None` to stop.
async fn next_batch(
    raw_rx: &mut mpsc::Receiver<RawEvent>,
    cancel: &CancellationToken,
    waiting: bool,
) -> Option<Vec<RawEvent>> {
    let mut batch: Vec<RawEvent> = Vec::new();
    tokio::select! {
        _ = cancel.cancelled() => return None,
        _ = tokio::time::sleep(Duration::from_secs(1)), if waiting => {}
        got = raw_rx.recv() => batch.push(got?),
    }
    while batch.len() < 1024 {
        match raw_rx.try_recv() {
            Ok(ev) => batch.push(ev),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Targets whose event channel overflowed get a full rescan.
async fn report_overflows(slots: &[(WatchedTarget, bool)], out: &mpsc::Sender<WatchMsg>) {
    for (slot, _) in slots {
        if slot.overflowed.swap(false, Ordering::Relaxed) {
            let _ = out
                .send(WatchMsg::Rescan {
                    target: slot.target.index,
                    reason: "file event buffer overflowed".into(),
                })
                .await;
        }
    }
}

/// Turn a batch into messages (on the blocking pool) and send them; a
/// target whose root went away waits for it again, one that fell back is
/// dropped.
async fn deliver(
    slots: &mut Vec<(WatchedTarget, bool)>,
    batch: Vec<RawEvent>,
    out: &mpsc::Sender<WatchMsg>,
    cancel: &CancellationToken,
) -> Next {
    let active: Vec<&WatchedTarget> = slots.iter().filter(|(_, a)| *a).map(|(s, _)| s).collect();
    let work = events::group(&active, batch);
    let processed = tokio::task::spawn_blocking(move || {
        work.into_iter()
            .map(|(t, w, evs)| (t.index, events::process(&t, &w, evs)))
            .collect::<Vec<_>>()
    });
    let processed = tokio::select! {
        _ = cancel.cancelled() => return Next::Stop,
        p = processed => p,
    };
    let Ok(processed) = processed else {
        return Next::Go;
    };
    for (index, (msgs, root_gone)) in processed {
        if root_gone
            && let Some((slot, active)) = slots.iter_mut().find(|(s, _)| s.target.index == index)
        {
            tracing::warn!(target_name = %slot.target.name, "the synced directory was removed; watching for it to come back");
            drop_watcher(slot);
            *active = false;
        }
        for msg in msgs {
            if let WatchMsg::Fallback { target, .. } = &msg
                && let Some(pos) = slots.iter().position(|(s, _)| s.target.index == *target)
            {
                drop_watcher(&slots[pos].0);
                slots.remove(pos);
            }
            if out.send(msg).await.is_err() {
                return Next::Gone;
            }
        }
    }
    Next::Go
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_root_that_appears_later_or_comes_back_is_watched() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("later");
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            vec![WatchTarget {
                index: 0,
                name: "t".into(),
                root: root.clone(),
                excludes: Excludes::default(),
            }],
            tx,
            cancel.clone(),
        ));
        for round in 0..2 {
            std::fs::create_dir_all(&root).unwrap();
            // Keep writing new files until one is reported: the watch is
            // placed asynchronously once the directory exists.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut seen = false;
            let mut k = 0;
            while !seen {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round}: never watched"
                );
                let file = root.join(format!("f{round}-{k}"));
                k += 1;
                std::fs::write(&file, b"x").unwrap();
                let until = tokio::time::Instant::now() + Duration::from_millis(1500);
                while let Ok(Some(msg)) = tokio::time::timeout_at(until, rx.recv()).await {
                    if let WatchMsg::Changed { paths, .. } = msg
                        && paths.iter().any(|(p, _)| *p == file)
                    {
                        seen = true;
                        break;
                    }
                }
            }
            std::fs::remove_dir_all(&root).unwrap();
        }
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reports_new_files_and_files_in_new_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            vec![WatchTarget {
                index: 0,
                name: "t".into(),
                root: root.clone(),
                excludes: Excludes::default(),
            }],
            tx,
            cancel.clone(),
        ));
        // Give the initial watches a moment to be placed, then write.
        let mut seen: BTreeMap<PathBuf, u64> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let wanted = [root.join("sub/a.txt"), root.join("new/deep/b.txt")];
        let mut wrote = false;
        while tokio::time::Instant::now() < deadline && !wanted.iter().all(|w| seen.contains_key(w))
        {
            if !wrote {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::write(root.join("sub/a.txt"), b"hello").unwrap();
                std::fs::create_dir_all(root.join("new/deep")).unwrap();
                std::fs::write(root.join("new/deep/b.txt"), b"hi").unwrap();
                wrote = true;
            }
            if let Ok(Some(WatchMsg::Changed { paths, .. })) =
                tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
            {
                seen.extend(paths);
            }
        }
        assert_eq!(seen.get(&root.join("sub/a.txt")), Some(&5), "{seen:?}");
        assert!(seen.contains_key(&root.join("new/deep/b.txt")), "{seen:?}");
        cancel.cancel();
        task.await.unwrap();
    }
}
