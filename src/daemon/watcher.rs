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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::spec::{Excludes, Target};

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
    /// Events work but miss some changes (see [`partial_events_fs`]).
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
/// One target's share of a batch: who, its watcher, its events.
type Work = (
    WatchTarget,
    SharedWatcher,
    Vec<notify::Result<notify::Event>>,
);

/// One watched target: its notify watcher and whether its events overflowed.
struct WatchedTarget {
    target: WatchTarget,
    watcher: SharedWatcher,
    overflowed: Arc<AtomicBool>,
}

/// Why a watch could not be set up.
enum SetupError {
    Budget(String),
    Other(String),
}

fn budget_message(e: &notify::Error) -> String {
    format!(
        "inotify watch limit reached ({e}); raise fs.inotify.max_user_watches \
         (sysctl -w fs.inotify.max_user_watches=524288) or exclude large directories"
    )
}

fn classify(e: notify::Error) -> SetupError {
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
fn watch_tree(
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

/// Create the slot's watcher and watch its whole tree. Blocking work runs
/// on the blocking pool; `Ok(false)` when cancelled.
async fn activate(
    slot: &WatchedTarget,
    tx: &mpsc::Sender<RawEvent>,
    cancel: &CancellationToken,
) -> Result<bool, SetupError> {
    let watcher =
        new_watcher(slot.target.index, tx.clone(), slot.overflowed.clone()).map_err(classify)?;
    let shared = slot.watcher.clone();
    let t = slot.target.clone();
    let setup = tokio::task::spawn_blocking(move || {
        let mut guard = match shared.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut w = watcher;
        let r = watch_tree(&t, &mut w, &t.root, false);
        if r.is_ok() {
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

/// Filesystems on which inotify reports only the changes made through
/// this kernel: what another NFS client, the host of a VM's shared folder
/// or the far side of a FUSE mount changes raises no event (unless the
/// platform forwards events itself, as Docker Desktop does for its bind
/// mounts). statfs magic numbers from `linux/magic.h`; virtiofs reports
/// FUSE.
const PARTIAL_EVENT_FS: &[(u32, &str)] = &[
    (0x6969, "nfs"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x517B, "smb"),
    (
        0x6573_5546,
        "a FUSE filesystem (sshfs, rclone mount, virtiofs, ...)",
    ),
    (0x0102_1997, "9p (a VM shared folder, e.g. WSL2)"),
    (0x00C3_6400, "ceph"),
    (0x5346_414F, "afs"),
    (0x7375_7245, "coda"),
    (0x4750_4653, "gpfs"),
];

/// The kind of filesystem `dir` is on, when file events there cover only
/// local changes.
fn partial_events_fs(dir: &Path) -> Option<&'static str> {
    let st = nix::sys::statfs::statfs(dir).ok()?;
    partial_events_kind(st.filesystem_type().0 as u64)
}

fn partial_events_kind(magic: u64) -> Option<&'static str> {
    // The magic is a 32-bit value in a signed or unsigned long.
    let magic = (magic & 0xFFFF_FFFF) as u32;
    PARTIAL_EVENT_FS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
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
        .map(|target| {
            (
                WatchedTarget {
                    target,
                    watcher: Arc::new(Mutex::new(None)),
                    overflowed: Arc::new(AtomicBool::new(false)),
                },
                false,
            )
        })
        .collect();
    if slots.is_empty() {
        cancel.cancelled().await;
        return;
    }
    let mut first_round = true;
    loop {
        // Activate what can be activated (first round: everything present).
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
            match activate(slot, &raw_tx, &cancel).await {
                Ok(true) => {
                    *active = true;
                    // Setting up the watches walked the whole tree.
                    super::memory::release_freed();
                    let root = slot.target.root.clone();
                    let fs = tokio::task::spawn_blocking(move || partial_events_fs(&root))
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
                        // It (re)appeared: what is in it now is unknown.
                        let _ = out
                            .send(WatchMsg::Rescan {
                                target: slot.target.index,
                                reason: "the directory appeared".into(),
                            })
                            .await;
                    }
                }
                Ok(false) => return,
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
        first_round = false;
        if slots.is_empty() {
            cancel.cancelled().await;
            return;
        }
        let waiting = slots.iter().any(|(_, active)| !active);

        let mut batch: Vec<RawEvent> = Vec::new();
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)), if waiting => {}
            got = raw_rx.recv() => match got {
                Some(ev) => batch.push(ev),
                None => break,
            },
        }
        while batch.len() < 1024 {
            match raw_rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        for (slot, _) in &slots {
            if slot.overflowed.swap(false, Ordering::Relaxed) {
                let _ = out
                    .send(WatchMsg::Rescan {
                        target: slot.target.index,
                        reason: "file event buffer overflowed".into(),
                    })
                    .await;
            }
        }
        if batch.is_empty() {
            continue;
        }
        let active: Vec<&WatchedTarget> =
            slots.iter().filter(|(_, a)| *a).map(|(s, _)| s).collect();
        let work: Vec<Work> = group(&active, batch);
        let processed = tokio::task::spawn_blocking(move || {
            work.into_iter()
                .map(|(t, w, evs)| (t.index, process(&t, &w, evs)))
                .collect::<Vec<_>>()
        });
        let processed = tokio::select! {
            _ = cancel.cancelled() => break,
            p = processed => p,
        };
        let Ok(processed) = processed else { continue };
        for (index, (msgs, root_gone)) in processed {
            if root_gone
                && let Some((slot, active)) =
                    slots.iter_mut().find(|(s, _)| s.target.index == index)
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
                    return;
                }
            }
        }
    }
    for (slot, _) in &slots {
        drop_watcher(slot);
    }
}

fn drop_watcher(slot: &WatchedTarget) {
    let taken = match slot.watcher.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    drop(taken);
}

fn group(slots: &[&WatchedTarget], batch: Vec<RawEvent>) -> Vec<Work> {
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
fn process(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_and_fuse_filesystems_are_known_to_miss_events() {
        assert_eq!(partial_events_kind(0x6969), Some("nfs"));
        assert!(partial_events_kind(0x6573_5546).unwrap().contains("FUSE"));
        // cifs as a sign-extended 32-bit value in a signed long
        assert_eq!(partial_events_kind(0xFFFF_FFFF_FF53_4D42), Some("cifs"));
        // ext4, tmpfs, overlayfs (Docker's root): events are complete
        for local in [0xEF53, 0x0102_1994, 0x794C_7630] {
            assert_eq!(partial_events_kind(local), None);
        }
        // The test machine's temp dir is local.
        assert_eq!(partial_events_fs(&std::env::temp_dir()), None);
    }

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
