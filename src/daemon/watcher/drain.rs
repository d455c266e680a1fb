//! The stop-time drain: hand the scheduler every file event that happened
//! before the stop, including those still queued in the kernel or in the
//! channel between notify's thread and this worker.
//!
//! An edit made just before SIGTERM has its inotify event queued in the
//! kernel by the time the write returns, but reading it, converting it and
//! delivering it crosses three threads; the stop signal can overtake it.
//! So, on a drain request, every watched target's inotify instance is sent
//! a barrier: one file created in a private directory (in the state dir)
//! that each target's watcher also watches. Each instance delivers its
//! events in order, so once a target's barrier event came back, everything
//! queued before it is in hand. A target whose queue overflowed (the
//! barrier may be lost with the rest) is not waited for: its overflow makes
//! the scheduler scan it whole. Without a barrier (its directory could not
//! be made or watched) the drain waits for a quiet moment instead. The
//! scheduler bounds the wait with its stop budget and scans every watched
//! target whole when it runs out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::setup::WatchedTarget;
use super::{Next, RawEvent, WatchMsg, deliver, report_overflows};

/// A drain request: answered once every event queued before it was sent to
/// the scheduler.
pub(crate) type DrainRequest = oneshot::Sender<()>;

/// Without a barrier: the drain ends once no raw event came for this long.
const QUIET: Duration = Duration::from_millis(100);
/// How often a drain checks for overflowed targets while it waits.
const OVERFLOW_CHECK: Duration = Duration::from_millis(20);

/// The barrier directory (`<state dir>/watch-barrier`).
pub(super) struct Barrier {
    dir: PathBuf,
    seq: AtomicU64,
}

impl Barrier {
    /// Create (and empty) the barrier directory; `None` when it cannot be
    /// made. Blocking.
    pub fn prepare(dir: PathBuf) -> Option<Barrier> {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the file-event barrier directory; the stop-time drain waits for a quiet moment instead");
            return None;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Some(Barrier {
            dir,
            seq: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `ev` is about the barrier directory only (never a change of
    /// a target, even if the state dir lies inside one).
    pub fn owns(&self, ev: &notify::Result<notify::Event>) -> bool {
        ev.as_ref().is_ok_and(|ev| {
            !ev.paths.is_empty() && ev.paths.iter().all(|p| p.starts_with(&self.dir))
        })
    }

    /// Create a fresh barrier file; its path.
    async fn raise(&self) -> Option<PathBuf> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("drain-{}-{n}", std::process::id()));
        let p = path.clone();
        match tokio::task::spawn_blocking(move || std::fs::write(&p, b"")).await {
            Ok(Ok(())) => Some(path),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot create the file-event barrier; waiting for a quiet moment instead");
                None
            }
            Err(_) => None,
        }
    }

    async fn lower(path: PathBuf) {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }
}

/// Whether `ev` is the creation (or any event) of the barrier file `token`.
fn is_token(ev: &notify::Result<notify::Event>, token: &Path) -> bool {
    ev.as_ref()
        .is_ok_and(|ev| ev.paths.iter().any(|p| p == token))
}

/// Collect every raw event queued before now (see the module docs), then
/// turn them into messages for the scheduler.
pub(super) async fn drain(
    slots: &mut Vec<(WatchedTarget, bool)>,
    raw_rx: &mut mpsc::Receiver<RawEvent>,
    out: &mpsc::Sender<WatchMsg>,
    cancel: &CancellationToken,
    barrier: Option<&Barrier>,
) -> Next {
    let mut batch: Vec<RawEvent> = Vec::new();
    let keep = |batch: &mut Vec<RawEvent>, ev: RawEvent| {
        if !barrier.is_some_and(|b| b.owns(&ev.1)) {
            batch.push(ev);
        }
    };
    let active: Vec<&WatchedTarget> = slots.iter().filter(|(_, a)| *a).map(|(s, _)| s).collect();
    let mut waiting: BTreeSet<usize> = active
        .iter()
        .filter(|s| s.barrier_watched.load(Ordering::SeqCst))
        .map(|s| s.target.index)
        .collect();
    let unmarked = active
        .iter()
        .any(|s| !s.barrier_watched.load(Ordering::SeqCst));
    let any_active = !active.is_empty();
    let token = match (barrier, waiting.is_empty()) {
        (Some(b), false) => b.raise().await,
        _ => None,
    };
    let waited_for_barrier = token.is_some();
    if let Some(token) = token {
        let mut tick = tokio::time::interval(OVERFLOW_CHECK);
        while !waiting.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return Next::Stop,
                got = raw_rx.recv() => {
                    let Some((i, ev)) = got else { break };
                    if is_token(&ev, &token) {
                        waiting.remove(&i);
                        continue;
                    }
                    // A kernel queue overflow may have dropped the barrier
                    // too; the overflow makes the scheduler scan the target.
                    if ev.as_ref().is_ok_and(|e| e.need_rescan()) {
                        waiting.remove(&i);
                    }
                    keep(&mut batch, (i, ev));
                }
                _ = tick.tick() => {
                    for (s, _) in slots.iter() {
                        if s.overflowed.load(Ordering::Relaxed) {
                            waiting.remove(&s.target.index);
                        }
                    }
                }
            }
        }
        Barrier::lower(token).await;
    }
    if unmarked || (any_active && !waited_for_barrier) {
        // Some target has no barrier: take events until a quiet moment.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Next::Stop,
                got = tokio::time::timeout(QUIET, raw_rx.recv()) => match got {
                    Ok(Some(ev)) => keep(&mut batch, ev),
                    Ok(None) | Err(_) => break,
                },
            }
        }
    }
    while let Ok(ev) = raw_rx.try_recv() {
        keep(&mut batch, ev);
    }
    report_overflows(slots, out).await;
    if batch.is_empty() {
        return Next::Go;
    }
    deliver(slots, batch, out, cancel).await
}

/// No target is watched: answer drain requests at once until `cancel`.
pub(super) async fn idle(drain_rx: &mut mpsc::Receiver<DrainRequest>, cancel: &CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            got = drain_rx.recv() => match got {
                Some(reply) => { let _ = reply.send(()); }
                None => {
                    cancel.cancelled().await;
                    return;
                }
            },
        }
    }
}
