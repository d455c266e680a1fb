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
//! - `drain`: the stop-time drain: every event queued before the stop
//!   (in the kernel, in notify's channel) handed over, by a barrier.
//! - `fs_kind`: filesystems whose events miss remote changes.
//! - `tests`: the worker against real inotify.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::RecommendedWatcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::spec::{Excludes, Target};

mod drain;
mod events;
mod fs_kind;
mod setup;

use drain::Barrier;
pub(crate) use drain::DrainRequest;
use setup::{SetupError, WatchedTarget, activate, drop_watcher};

/// The barrier directory's name inside the state dir (see `drain`).
pub(crate) const BARRIER_DIR: &str = "watch-barrier";

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

/// The watch worker's inputs besides its targets.
pub(crate) struct WatchIo {
    /// Messages for the scheduler.
    pub out: mpsc::Sender<WatchMsg>,
    /// Drain requests (at stop) from the scheduler.
    pub drain: mpsc::Receiver<DrainRequest>,
    /// Where the drain barrier lives (`<state dir>/watch-barrier`); `None`:
    /// drains wait for a quiet moment instead.
    pub barrier_dir: Option<PathBuf>,
}

/// Start watching `targets`; runs until `cancel`. A target whose directory
/// does not exist yet (a bidirectional target before its first restore) is
/// watched once it appears, and again after it is deleted and re-created.
/// Watchers that cannot be set up report [`WatchMsg::Fallback`] and the rest
/// keep going. A drain request is answered once every event queued before
/// it went out (see `drain`).
pub(crate) async fn run(targets: Vec<WatchTarget>, io: WatchIo, cancel: CancellationToken) {
    let WatchIo {
        out,
        drain: mut drain_rx,
        barrier_dir,
    } = io;
    let barrier = match barrier_dir {
        Some(dir) if !targets.is_empty() => {
            tokio::task::spawn_blocking(move || Barrier::prepare(dir))
                .await
                .ok()
                .flatten()
        }
        _ => None,
    };
    let barrier_path = barrier.as_ref().map(|b| b.dir().to_path_buf());
    let (raw_tx, mut raw_rx) = mpsc::channel::<RawEvent>(RAW_CAPACITY);
    // (slot, active): inactive slots wait for their root directory.
    let mut slots: Vec<(WatchedTarget, bool)> = targets
        .into_iter()
        .map(|target| (WatchedTarget::new(target), false))
        .collect();
    let mut first_round = true;
    loop {
        let activated = activate_waiting(
            &mut slots,
            (&raw_tx, barrier_path.as_deref()),
            &out,
            &cancel,
            first_round,
        )
        .await;
        if let Next::Gone = activated {
            return;
        }
        first_round = false;
        if slots.is_empty() {
            drain::idle(&mut drain_rx, &cancel).await;
            return;
        }
        let waiting = slots.iter().any(|(_, active)| !active);
        let next = match next_input(&mut raw_rx, &mut drain_rx, &cancel, waiting).await {
            None => break,
            Some(Input::Batch(mut batch)) => {
                report_overflows(&slots, &out).await;
                batch.retain(|(_, ev)| !barrier.as_ref().is_some_and(|b| b.owns(ev)));
                if batch.is_empty() {
                    continue;
                }
                deliver(&mut slots, batch, &out, &cancel).await
            }
            Some(Input::Drain(reply)) => {
                let next =
                    drain::drain(&mut slots, &mut raw_rx, &out, &cancel, barrier.as_ref()).await;
                if let Next::Go = next {
                    let _ = reply.send(());
                }
                next
            }
        };
        match next {
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
    (raw_tx, barrier): (&mpsc::Sender<RawEvent>, Option<&Path>),
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
        match activate(slot, raw_tx, barrier.map(Path::to_path_buf), cancel).await {
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

/// What the worker handles next.
enum Input {
    Batch(Vec<RawEvent>),
    Drain(DrainRequest),
}

/// The next batch of raw events (up to 1024), or an empty one after a
/// second when a target waits for its directory, or a drain request;
/// `None` to stop.
async fn next_input(
    raw_rx: &mut mpsc::Receiver<RawEvent>,
    drain_rx: &mut mpsc::Receiver<DrainRequest>,
    cancel: &CancellationToken,
    waiting: bool,
) -> Option<Input> {
    let mut batch: Vec<RawEvent> = Vec::new();
    tokio::select! {
        _ = cancel.cancelled() => return None,
        Some(reply) = drain_rx.recv() => return Some(Input::Drain(reply)),
        _ = tokio::time::sleep(Duration::from_secs(1)), if waiting => {}
        got = raw_rx.recv() => batch.push(got?),
    }
    while batch.len() < 1024 {
        match raw_rx.try_recv() {
            Ok(ev) => batch.push(ev),
            Err(_) => break,
        }
    }
    Some(Input::Batch(batch))
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
mod tests;
