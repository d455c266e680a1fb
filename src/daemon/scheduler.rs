//! The scheduler: decides which target gets a pass when, and flushes on
//! shutdown.
//!
//! Per target it keeps the changed paths reported by the watcher (pending),
//! the paths of the pass in flight, and when the next full pass is due
//! (`interval`, the safety net; immediately after start, a queue overflow or
//! `sync --now`). A target with pending changes is due once no new change
//! arrived for a quarter of the debounce, and at the latest one debounce
//! after the first change: a lone edit is on the remote well within the
//! debounce, and a file written continuously still goes out every debounce. One pass runs at a time; among due targets
//! the lowest `priority` (then spec order) goes first. Failed passes keep
//! their paths pending and retry with a growing backoff.
//!
//! On shutdown it stops starting ordinary work and flushes: pending changes
//! of every target that writes to the remote, by priority, within the flush
//! deadline; whatever could not be flushed is returned (and logged by path).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{LeaseSeam, PassOutcome, Progress, Scope, SeamError, SyncSeam};
use super::control::{Command, Request, Response, SyncNowOutcome};
use super::status::{
    DaemonStatus, LeaseState, TargetStatus, WatchModeState, WatchState, to_unix, unix_now,
};
use super::watcher::WatchMsg;

/// Conflict names kept per target for `status`.
const MAX_CONFLICTS_SHOWN: usize = 20;
/// First retry delay after a failed pass; doubles up to the target interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// The live status, shared by the scheduler (writer) and the control socket
/// and status-file writer (readers).
pub(crate) struct Board {
    inner: Mutex<DaemonStatus>,
    lease: OnceLock<Arc<dyn LeaseSeam>>,
    /// Per target, in board order.
    progress: Vec<Arc<Progress>>,
}

impl Board {
    pub fn new(initial: DaemonStatus) -> Board {
        let progress = initial
            .targets
            .iter()
            .map(|_| Arc::new(Progress::default()))
            .collect();
        Board {
            inner: Mutex::new(initial),
            lease: OnceLock::new(),
            progress,
        }
    }

    pub fn progress(&self, i: usize) -> Arc<Progress> {
        self.progress.get(i).cloned().unwrap_or_default()
    }

    pub fn set_lease(&self, lease: Arc<dyn LeaseSeam>) {
        let _ = self.lease.set(lease);
    }

    pub fn update(&self, f: impl FnOnce(&mut DaemonStatus)) {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// A consistent copy with lease data and health filled in as of now.
    pub fn snapshot(&self) -> DaemonStatus {
        let mut s = match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if let Some(lease) = self.lease.get() {
            let gate = lease.gate();
            s.leases = LeaseState {
                writes_allowed: gate.is_open(),
                fenced_reason: gate.check().err().map(|f| f.reason),
                detail: lease.snapshot(),
            };
        }
        for (t, p) in s.targets.iter_mut().zip(&self.progress) {
            t.in_flight = t.pass_running.then(|| p.view());
        }
        let now = unix_now();
        s.updated_at = now;
        s.evaluate(now);
        s
    }
}

/// Settings that SIGHUP may change.
#[derive(Debug, Clone)]
pub(crate) struct Tunables {
    pub debounce: Duration,
    pub flush_deadline: Duration,
    /// Per target, in scheduler order.
    pub intervals: Vec<Duration>,
}

/// Static facts about a target.
#[derive(Debug, Clone)]
pub(crate) struct TargetInfo {
    pub name: String,
    pub priority: u32,
    pub interval: Duration,
    pub writes_remote: bool,
}

struct TargetRt {
    info: TargetInfo,
    pending: BTreeMap<PathBuf, u64>,
    pending_since: Option<SystemTime>,
    inflight: BTreeMap<PathBuf, u64>,
    inflight_since: Option<SystemTime>,
    last_event: Option<Instant>,
    /// When the current batch of pending changes began.
    first_event: Option<Instant>,
    full_at: Instant,
    not_before: Instant,
    backoff: Duration,
    running: bool,
    first_done: bool,
    polling: bool,
    full_seq_started: u64,
    /// The next full pass also lists the remote (`sync --now`).
    verify_next: bool,
    /// The next full pass is the routine interval check (not a rescan,
    /// retry or `sync --now`).
    routine_full: bool,
    /// File-event batches received (see [`MISSED_EVENT_STRIKES`]).
    events_received: u64,
    /// For a running routine full pass that started with nothing pending:
    /// `events_received` at its start.
    probe: Option<u64>,
    /// Routine full passes in a row that found local changes no event
    /// reported.
    missed_strikes: u32,
}

/// After this many routine interval scans in a row found local changes
/// that no file event reported (with no event at all in between), file
/// events are taken to be undelivered for the target (a network or FUSE
/// filesystem, a shared folder of a VM) and it is scanned every interval.
/// Two, because one such scan can be a fluke (a change in the instant
/// between the pass's scan and its start).
const MISSED_EVENT_STRIKES: u32 = 2;

struct Waiter {
    required: Vec<u64>,
    outcomes: Vec<Option<SyncNowOutcome>>,
    reply: oneshot::Sender<Response>,
}

type PassResult = (usize, bool, u64, Result<PassOutcome, SeamError>);

/// What was left unflushed at shutdown: (target, paths).
pub(crate) type Unflushed = Vec<(String, Vec<PathBuf>)>;

pub(crate) struct Scheduler {
    targets: Vec<TargetRt>,
    sync: Arc<dyn SyncSeam>,
    board: Arc<Board>,
    tunables: Tunables,
    pass_cancel: CancellationToken,
    passes: JoinSet<PassResult>,
    waiters: Vec<Waiter>,
    ready: Option<oneshot::Sender<Result<(), SeamError>>>,
    pid: u32,
    /// A second memory trim once things settled after a pass (see
    /// [`SETTLE_TRIM_AFTER`]).
    settle_trim_at: Option<Instant>,
}

/// After a pass some of what it allocated is freed only later (idle
/// blocking-pool threads exit after 10 s, connections close): trim again
/// once that happened.
const SETTLE_TRIM_AFTER: Duration = Duration::from_secs(15);

impl Scheduler {
    /// `polling[i]`: target i gets no file events (pull-only, `watch:
    /// poll`); its reason is already on the board.
    pub fn new(
        infos: Vec<TargetInfo>,
        sync: Arc<dyn SyncSeam>,
        board: Arc<Board>,
        tunables: Tunables,
        ready: oneshot::Sender<Result<(), SeamError>>,
    ) -> Scheduler {
        let now = Instant::now();
        let polling = board.snapshot().targets;
        let targets = infos
            .into_iter()
            .enumerate()
            .map(|(i, info)| TargetRt {
                routine_full: false,
                events_received: 0,
                probe: None,
                missed_strikes: 0,
                polling: polling
                    .get(i)
                    .is_some_and(|t| t.watch.mode == WatchModeState::Polling),
                backoff: FIRST_BACKOFF,
                info,
                pending: BTreeMap::new(),
                pending_since: None,
                inflight: BTreeMap::new(),
                inflight_since: None,
                last_event: None,
                first_event: None,
                full_at: now,
                not_before: now,
                running: false,
                first_done: false,
                full_seq_started: 0,
                verify_next: false,
            })
            .collect();
        Scheduler {
            targets,
            sync,
            board,
            tunables,
            pass_cancel: CancellationToken::new(),
            passes: JoinSet::new(),
            waiters: Vec::new(),
            ready: Some(ready),
            pid: std::process::id(),
            settle_trim_at: None,
        }
    }

    /// Run until `shutdown`, then flush (unless `skip_flush` is cancelled
    /// too, e.g. the lease is lost) and return what stayed unflushed.
    pub async fn run(
        mut self,
        mut watch_rx: mpsc::Receiver<WatchMsg>,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut reload_rx: mpsc::Receiver<Tunables>,
        shutdown: CancellationToken,
        skip_flush: CancellationToken,
    ) -> Unflushed {
        self.publish();
        let mut watch_open = true;
        loop {
            if self.passes.is_empty() {
                self.start_due();
            }
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = self.passes.join_next(), if !self.passes.is_empty() => {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                }
                msg = watch_rx.recv(), if watch_open => match msg {
                    Some(m) => self.on_watch(m),
                    None => watch_open = false,
                },
                Some(cmd) = cmd_rx.recv() => self.on_command(cmd, &shutdown),
                Some(t) = reload_rx.recv() => self.on_reload(t),
                _ = tokio::time::sleep_until(wake) => {}
            }
            if self.passes.is_empty() && self.settle_trim_at.is_some_and(|at| Instant::now() >= at)
            {
                self.settle_trim_at = None;
                super::memory::release_freed();
            }
        }
        // Take what the watcher already noticed.
        while let Ok(m) = watch_rx.try_recv() {
            self.on_watch(m);
        }
        if skip_flush.is_cancelled() {
            self.pass_cancel.cancel();
            while self.passes.join_next().await.is_some() {}
            return self.unflushed();
        }
        self.flush().await
    }

    /// When target `t`'s pending changes are due: once no new change came
    /// for a quarter of the debounce, and at the latest one debounce after
    /// the first of them, so a lone edit goes out quickly and a file that is
    /// written continuously still goes out every debounce.
    fn changes_due_at(&self, t: &TargetRt) -> Option<Instant> {
        if t.pending.is_empty() {
            return None;
        }
        let debounce = self.tunables.debounce;
        let quiet = debounce / 4;
        let now = Instant::now();
        let settled = t.last_event.map_or(now, |ev| ev + quiet);
        let latest = t.first_event.map_or(now, |first| first + debounce);
        Some(settled.min(latest))
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.targets
            .iter()
            .filter(|t| !t.running)
            .map(|t| {
                let at = match self.changes_due_at(t) {
                    Some(due) => t.full_at.min(due),
                    None => t.full_at,
                };
                at.max(t.not_before)
            })
            .min()
            .unwrap_or(far)
            .min(self.settle_trim_at.unwrap_or(far))
            .min(far)
    }

    /// Start the most urgent due pass, if any.
    fn start_due(&mut self) -> bool {
        let now = Instant::now();
        let pick = self
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.running && now >= t.not_before)
            .filter(|(_, t)| {
                now >= t.full_at || self.changes_due_at(t).is_some_and(|due| now >= due)
            })
            .min_by_key(|(i, t)| (t.info.priority, *i))
            .map(|(i, _)| i);
        match pick {
            Some(i) => {
                let full = now >= self.targets[i].full_at;
                self.start(i, full);
                true
            }
            None => false,
        }
    }

    fn start(&mut self, i: usize, full: bool) {
        let t = &mut self.targets[i];
        let taken = std::mem::take(&mut t.pending);
        t.probe = None;
        if full {
            let quiet = taken.is_empty() && t.inflight.is_empty();
            if std::mem::take(&mut t.routine_full)
                && quiet
                && t.first_done
                && !t.polling
                && t.info.writes_remote
            {
                t.probe = Some(t.events_received);
            }
        }
        t.first_event = None;
        t.inflight.extend(taken);
        t.inflight_since = min_time(t.inflight_since, t.pending_since.take());
        t.running = true;
        let scope = if full {
            t.full_seq_started += 1;
            // Remote changes only come from elsewhere for pull-only targets
            // (the lease keeps everyone else off the others): only those list
            // the remote every interval, so an idle daemon makes no requests.
            let verify = std::mem::take(&mut t.verify_next) || !t.info.writes_remote;
            Scope::Full { verify }
        } else {
            Scope::Paths(t.inflight.keys().cloned().collect())
        };
        let seq = t.full_seq_started;
        let name = t.info.name.clone();
        tracing::debug!(target_name = %name, full, paths = t.inflight.len(), "pass starting");
        let sync = self.sync.clone();
        let cancel = self.pass_cancel.child_token();
        let progress = self.board.progress(i);
        progress.reset();
        self.passes.spawn(async move {
            use futures::FutureExt;
            // A panicking pass must still report back, or its target would
            // count as running forever.
            let r = std::panic::AssertUnwindSafe(sync.pass(&name, scope, cancel, progress))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(SeamError {
                        status: crate::error::ExitStatus::Failure,
                        message: "internal error: the sync pass panicked (see the log)".into(),
                    })
                });
            (i, full, seq, r)
        });
        self.publish();
    }

    fn finish(&mut self, (i, full, seq, result): PassResult) {
        super::memory::release_freed();
        let now = Instant::now();
        self.settle_trim_at = Some(now + SETTLE_TRIM_AFTER);
        let t = &mut self.targets[i];
        t.running = false;
        let name = t.info.name.clone();
        let interval = t.info.interval;
        let mut last_error = None;
        let mut success = false;
        let mut counts = None;
        let mut conflicts = Vec::new();
        let mut missed = None;
        let outcome_for_waiters;
        match &result {
            Ok(out) => {
                t.inflight.clear();
                t.inflight_since = None;
                if full {
                    t.full_at = now + interval;
                    t.routine_full = true;
                    t.first_done = true;
                }
                if out.failed.is_empty() {
                    success = true;
                    t.backoff = FIRST_BACKOFF;
                    let moved = out.counts.uploaded
                        + out.counts.downloaded
                        + out.counts.deleted_remote
                        + out.counts.deleted_local
                        + out.conflicts.len() as u64;
                    // Idle interval passes are routine: keep them out of the
                    // info log so it shows what actually moved.
                    if moved == 0 {
                        tracing::debug!(target_name = %name, full, "pass done, nothing to do");
                    } else {
                        tracing::info!(
                            target_name = %name,
                            full,
                            uploaded = out.counts.uploaded,
                            downloaded = out.counts.downloaded,
                            deleted_remote = out.counts.deleted_remote,
                            deleted_local = out.counts.deleted_local,
                            conflicts = out.conflicts.len(),
                            "pass done"
                        );
                    }
                } else {
                    let first = out
                        .failed
                        .iter()
                        .take(3)
                        .map(|(p, r)| format!("{p}: {r}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let msg = format!("{} file(s) failed ({first})", out.failed.len());
                    for (p, r) in &out.failed {
                        tracing::warn!(target_name = %name, path = %p, reason = %r, "file failed to sync");
                    }
                    last_error = Some(msg);
                    // Retry soon with a full pass rather than waiting an interval.
                    t.full_at = t.full_at.min(now + t.backoff);
                    t.routine_full = false;
                    t.backoff = (t.backoff * 2).min(interval);
                }
                if let Some(reason) = missed_events(t, full, out) {
                    missed = Some(reason);
                }
                counts = Some(out.counts.clone());
                conflicts = out.conflicts.clone();
                outcome_for_waiters = SyncNowOutcome {
                    target: name.clone(),
                    error: last_error.clone(),
                    uploaded: out.counts.uploaded,
                    downloaded: out.counts.downloaded,
                    failed: out.failed.len() as u64,
                };
            }
            Err(e) => {
                tracing::warn!(target_name = %name, full, error = %e, retry_in = ?t.backoff, "pass failed");
                let back = std::mem::take(&mut t.inflight);
                for (p, size) in back {
                    t.pending.entry(p).or_insert(size);
                }
                t.pending_since = min_time(t.pending_since, t.inflight_since.take());
                t.first_event = t.first_event.or(Some(now));
                t.not_before = now + t.backoff;
                t.backoff = (t.backoff * 2).min(interval.max(FIRST_BACKOFF));
                last_error = Some(e.message.clone());
                outcome_for_waiters = SyncNowOutcome {
                    target: name.clone(),
                    error: Some(e.message.clone()),
                    uploaded: 0,
                    downloaded: 0,
                    failed: 0,
                };
            }
        }
        // Readiness: every target's first full pass must succeed.
        if full && self.ready.is_some() {
            match &result {
                Err(e) => {
                    if let Some(tx) = self.ready.take() {
                        let _ = tx.send(Err(SeamError {
                            status: e.status,
                            message: format!("first sync of target {name} failed: {}", e.message),
                        }));
                    }
                }
                Ok(_) if self.targets.iter().all(|t| t.first_done) => {
                    if let Some(tx) = self.ready.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Ok(_) => {}
            }
        }
        if full {
            for w in &mut self.waiters {
                if seq >= w.required[i] && w.outcomes[i].is_none() {
                    w.outcomes[i] = Some(outcome_for_waiters.clone());
                }
            }
            let (done, open): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
                .into_iter()
                .partition(|w| w.outcomes.iter().all(Option::is_some));
            self.waiters = open;
            for w in done {
                let outcomes = w.outcomes.into_iter().flatten().collect();
                let _ = w.reply.send(Response::Synced { outcomes });
            }
        }
        let now_unix = unix_now();
        self.board.update(|s| {
            if let Some(ts) = s.targets.get_mut(i) {
                ts.last_attempt_at = Some(now_unix);
                if success {
                    ts.last_success_at = Some(now_unix);
                    ts.last_error = None;
                } else {
                    ts.last_error = last_error;
                }
                if let Some(c) = counts {
                    ts.last_pass = Some(c);
                }
                ts.conflicts_total += conflicts.len() as u64;
                ts.conflicts.extend(conflicts);
                let extra = ts.conflicts.len().saturating_sub(MAX_CONFLICTS_SHOWN);
                ts.conflicts.drain(..extra);
            }
        });
        if let Some(reason) = missed {
            self.switch_to_polling(i, reason);
        }
        self.publish();
    }

    fn on_watch(&mut self, msg: WatchMsg) {
        let now = Instant::now();
        match msg {
            WatchMsg::Changed { target, paths } => {
                let Some(t) = self.targets.get_mut(target) else {
                    return;
                };
                if !t.info.writes_remote {
                    return;
                }
                if t.pending.is_empty() {
                    t.pending_since = Some(SystemTime::now());
                    t.first_event = Some(now);
                }
                t.pending.extend(paths);
                t.last_event = Some(now);
                t.events_received += 1;
                t.missed_strikes = 0;
            }
            WatchMsg::Rescan { target, reason } => {
                let Some(t) = self.targets.get_mut(target) else {
                    return;
                };
                tracing::warn!(target_name = %t.info.name, %reason, "file events were lost; scanning the whole target");
                t.full_at = now;
                t.routine_full = false;
            }
            WatchMsg::Fallback { target, reason } => self.switch_to_polling(target, reason),
            WatchMsg::Partial { target, reason } => {
                let Some(t) = self.targets.get(target) else {
                    return;
                };
                tracing::warn!(
                    target_name = %t.info.name,
                    %reason,
                    interval = ?t.info.interval,
                    "file events cover only part of the changes here"
                );
                self.board.update(|s| {
                    if let Some(ts) = s.targets.get_mut(target) {
                        ts.watch.reason = Some(reason);
                    }
                });
            }
        }
        self.publish();
    }

    /// Target `target` gets no (usable) file events from now on: it is
    /// scanned every interval, starting now (changes since the events
    /// stopped are unknown).
    fn switch_to_polling(&mut self, target: usize, reason: String) {
        let Some(t) = self.targets.get_mut(target) else {
            return;
        };
        tracing::warn!(
            target_name = %t.info.name,
            %reason,
            interval = ?t.info.interval,
            "file events unavailable; falling back to scanning every interval"
        );
        t.polling = true;
        t.full_at = Instant::now();
        t.routine_full = false;
        self.board.update(|s| {
            if let Some(ts) = s.targets.get_mut(target) {
                ts.watch = WatchState {
                    mode: WatchModeState::Polling,
                    reason: Some(reason),
                };
            }
        });
    }

    fn on_command(&mut self, cmd: Command, shutdown: &CancellationToken) {
        match cmd.req {
            Request::SyncNow => {
                let now = Instant::now();
                let mut required = Vec::new();
                for t in &mut self.targets {
                    t.full_at = now;
                    t.routine_full = false;
                    t.not_before = now;
                    t.verify_next = true;
                    required.push(t.full_seq_started + 1);
                }
                if self.targets.is_empty() {
                    let _ = cmd.reply.send(Response::Synced { outcomes: vec![] });
                    return;
                }
                self.waiters.push(Waiter {
                    outcomes: vec![None; required.len()],
                    required,
                    reply: cmd.reply,
                });
            }
            Request::Stop => {
                tracing::info!("stop requested over the control socket");
                let _ = cmd.reply.send(Response::Stopping { pid: self.pid });
                shutdown.cancel();
            }
            Request::Status => {
                let _ = cmd.reply.send(Response::Status {
                    status: Box::new(self.board.snapshot()),
                });
            }
        }
    }

    fn on_reload(&mut self, t: Tunables) {
        let now = Instant::now();
        for (rt, interval) in self.targets.iter_mut().zip(&t.intervals) {
            if rt.info.interval != *interval {
                // Re-base the next safety-net pass on the new interval.
                rt.full_at = rt.full_at.min(now + *interval);
                rt.info.interval = *interval;
            }
        }
        self.tunables = t;
        let intervals: Vec<u64> = self
            .targets
            .iter()
            .map(|t| t.info.interval.as_secs())
            .collect();
        self.board.update(|s| {
            for (ts, i) in s.targets.iter_mut().zip(intervals) {
                ts.interval_secs = i;
            }
        });
        self.publish();
    }

    /// Push the scheduler's per-target view to the board.
    fn publish(&self) {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        // (pending files, pending bytes, oldest pending, running, next check)
        type View = (u64, u64, Option<u64>, bool, Option<u64>);
        let views: Vec<View> = self
            .targets
            .iter()
            .map(|t| {
                let files = (t.pending.len() + t.inflight.len()) as u64;
                let bytes = t.pending.values().chain(t.inflight.values()).sum();
                let oldest = min_time(t.pending_since, t.inflight_since).map(to_unix);
                let next = if t.running {
                    None
                } else {
                    let at = t.full_at.max(t.not_before);
                    let delta = at.saturating_duration_since(now);
                    Some(to_unix(now_sys + delta))
                };
                (files, bytes, oldest, t.running, next)
            })
            .collect();
        self.board.update(|s| {
            for (ts, (files, bytes, oldest, running, next)) in s.targets.iter_mut().zip(views) {
                ts.pending_files = files;
                ts.pending_bytes = bytes;
                ts.oldest_pending_at = oldest;
                ts.pass_running = running;
                ts.next_check_at = next;
            }
        });
    }

    /// Push pending changes out, by priority, within the flush deadline.
    async fn flush(mut self) -> Unflushed {
        let deadline = Instant::now() + self.tunables.flush_deadline;
        // Polling targets cannot know what changed: give each one full pass.
        let mut needs_full: Vec<bool> = self
            .targets
            .iter()
            .map(|t| t.info.writes_remote && t.polling && t.first_done)
            .collect();
        let pending: usize = self
            .targets
            .iter()
            .map(|t| t.pending.len() + t.inflight.len())
            .sum();
        tracing::info!(pending_files = pending, deadline = ?self.tunables.flush_deadline, "flushing before exit");
        let finished = tokio::time::timeout_at(deadline, async {
            loop {
                if let Some(done) = self.passes.join_next().await {
                    if let Ok(done) = done {
                        self.finish(done);
                    }
                    continue;
                }
                let pick = self
                    .targets
                    .iter()
                    .enumerate()
                    .filter(|(i, t)| {
                        t.info.writes_remote && (!t.pending.is_empty() || needs_full[*i])
                    })
                    .min_by_key(|(i, t)| (t.info.priority, *i))
                    .map(|(i, _)| i);
                let Some(i) = pick else { break };
                let full = needs_full[i];
                needs_full[i] = false;
                self.start(i, full);
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!("flush deadline reached; cancelling the pass in flight");
            self.pass_cancel.cancel();
            while let Some(done) = self.passes.join_next().await {
                if let Ok(done) = done {
                    self.finish(done);
                }
            }
        }
        self.unflushed()
    }

    fn unflushed(&self) -> Unflushed {
        self.targets
            .iter()
            .filter(|t| t.info.writes_remote)
            .map(|t| {
                let mut paths: Vec<PathBuf> =
                    t.pending.keys().chain(t.inflight.keys()).cloned().collect();
                paths.sort();
                paths.dedup();
                (t.info.name.clone(), paths)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect()
    }
}

/// Whether a finished pass shows that file events are not delivered for
/// its target: the reason to switch to polling, once the strikes are in.
fn missed_events(t: &mut TargetRt, full: bool, out: &PassOutcome) -> Option<String> {
    let at_start = t.probe.take().filter(|_| full)?;
    let missed = out.counts.uploaded + out.counts.deleted_remote;
    if t.events_received != at_start || missed == 0 || !out.conflicts.is_empty() {
        return None;
    }
    t.missed_strikes += 1;
    if t.missed_strikes < MISSED_EVENT_STRIKES {
        tracing::warn!(
            target_name = %t.info.name,
            changes = missed,
            "the interval scan found local changes that no file event reported; \
             if the next scan does too, this target switches to interval scans"
        );
        return None;
    }
    Some(format!(
        "{} interval scans in a row found local changes no file event reported: \
         this filesystem does not deliver file events (network, FUSE or VM shared folder?)",
        t.missed_strikes
    ))
}

fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The board entry for a target before anything happened.
pub(crate) fn initial_target_status(t: &crate::spec::Target, watch: WatchState) -> TargetStatus {
    TargetStatus {
        name: t.name.clone(),
        direction: t.direction.as_str().to_string(),
        local_path: t.local_path.clone(),
        remote: t.location().to_string(),
        priority: t.priority,
        interval_secs: t.interval.as_secs(),
        watch,
        last_success_at: None,
        last_attempt_at: None,
        last_error: None,
        pending_files: 0,
        pending_bytes: 0,
        oldest_pending_at: None,
        pass_running: false,
        in_flight: None,
        next_check_at: None,
        conflicts: Vec::new(),
        conflicts_total: 0,
        last_pass: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{Health, RunState, STATUS_SCHEMA, Source};
    use futures::future::BoxFuture;

    /// Records passes; fails the first `fail_first` of them.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<(String, Scope)>>,
        fail_first: Mutex<usize>,
        /// Files every full pass reports as uploaded.
        full_uploads: Mutex<u64>,
    }

    impl SyncSeam for Recorder {
        fn pass(
            &self,
            target: &str,
            scope: Scope,
            _cancel: CancellationToken,
            _progress: Arc<Progress>,
        ) -> BoxFuture<'static, Result<PassOutcome, SeamError>> {
            let uploaded = match scope {
                Scope::Full { .. } => *self.full_uploads.lock().unwrap(),
                Scope::Paths(_) => 0,
            };
            self.calls.lock().unwrap().push((target.to_string(), scope));
            let mut f = self.fail_first.lock().unwrap();
            let fail = *f > 0;
            if fail {
                *f -= 1;
            }
            Box::pin(async move {
                if fail {
                    Err(SeamError {
                        status: crate::error::ExitStatus::Remote,
                        message: "remote unreachable".into(),
                    })
                } else {
                    let mut out = PassOutcome::default();
                    out.counts.uploaded = uploaded;
                    Ok(out)
                }
            })
        }

        fn finish(&self, _cancel: CancellationToken) -> BoxFuture<'static, Result<(), SeamError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn board(names: &[&str]) -> Arc<Board> {
        Arc::new(Board::new(DaemonStatus {
            schema: STATUS_SCHEMA,
            state: RunState::Running,
            source: Source::Live,
            health: Health::Healthy,
            problems: vec![],
            workspace: "o/p/e".into(),
            spec: "/s".into(),
            pid: Some(1),
            started_at: Some(unix_now()),
            uptime_secs: None,
            updated_at: unix_now(),
            leases: LeaseState {
                writes_allowed: true,
                fenced_reason: None,
                detail: serde_json::Value::Null,
            },
            targets: names
                .iter()
                .map(|n| TargetStatus {
                    name: n.to_string(),
                    direction: "push-only".into(),
                    local_path: "/x".into(),
                    remote: "local:/r".into(),
                    priority: 0,
                    interval_secs: 60,
                    watch: WatchState {
                        mode: WatchModeState::Events,
                        reason: None,
                    },
                    last_success_at: None,
                    last_attempt_at: None,
                    last_error: None,
                    pending_files: 0,
                    pending_bytes: 0,
                    oldest_pending_at: None,
                    pass_running: false,
                    in_flight: None,
                    next_check_at: None,
                    conflicts: vec![],
                    conflicts_total: 0,
                    last_pass: None,
                })
                .collect(),
        }))
    }

    fn info(name: &str, priority: u32) -> TargetInfo {
        TargetInfo {
            name: name.into(),
            priority,
            interval: Duration::from_secs(600),
            writes_remote: true,
        }
    }

    /// Poll `cond` until true (generous deadline; no timing assertion).
    async fn eventually(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "condition not reached");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    struct Harness {
        rec: Arc<Recorder>,
        board: Arc<Board>,
        watch_tx: mpsc::Sender<WatchMsg>,
        cmd_tx: mpsc::Sender<Command>,
        _reload_tx: mpsc::Sender<Tunables>,
        shutdown: CancellationToken,
        ready: oneshot::Receiver<Result<(), SeamError>>,
        task: tokio::task::JoinHandle<Unflushed>,
    }

    fn harness(infos: Vec<TargetInfo>, fail_first: usize) -> Harness {
        let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        let board = board(&names);
        let rec = Arc::new(Recorder::default());
        *rec.fail_first.lock().unwrap() = fail_first;
        let (ready_tx, ready) = oneshot::channel();
        let tunables = Tunables {
            debounce: Duration::from_millis(200),
            flush_deadline: Duration::from_secs(8),
            intervals: infos.iter().map(|i| i.interval).collect(),
        };
        let sched = Scheduler::new(infos, rec.clone(), board.clone(), tunables, ready_tx);
        let (watch_tx, watch_rx) = mpsc::channel(16);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (reload_tx, reload_rx) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sched.run(
            watch_rx,
            cmd_rx,
            reload_rx,
            shutdown.clone(),
            CancellationToken::new(),
        ));
        Harness {
            rec,
            board,
            watch_tx,
            cmd_tx,
            _reload_tx: reload_tx,
            shutdown,
            ready,
            task,
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn first_passes_are_full_by_priority_then_ready() {
        let h = harness(vec![info("low", 5), info("high", 1)], 0);
        h.ready.await.unwrap().unwrap();
        let calls = h.rec.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                ("high".into(), Scope::Full { verify: false }),
                ("low".into(), Scope::Full { verify: false })
            ]
        );
        h.shutdown.cancel();
        assert!(h.task.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn changes_become_paths_passes_and_interval_brings_full_passes() {
        let mut short = info("t", 1);
        short.interval = Duration::from_secs(2);
        let h = harness(vec![short], 0);
        h.ready.await.unwrap().unwrap();
        h.watch_tx
            .send(WatchMsg::Changed {
                target: 0,
                paths: vec![("/x/a".into(), 3), ("/x/b".into(), 3)],
            })
            .await
            .unwrap();
        let rec = h.rec.clone();
        eventually(|| {
            rec.calls
                .lock()
                .unwrap()
                .iter()
                .any(|(_, s)| *s == Scope::Paths(vec!["/x/a".into(), "/x/b".into()]))
        })
        .await;
        let board = h.board.clone();
        eventually(|| board.snapshot().targets[0].pending_files == 0).await;
        // The interval brings another full pass.
        eventually(|| {
            rec.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| matches!(s, Scope::Full { .. }))
                .count()
                >= 2
        })
        .await;
        h.shutdown.cancel();
        h.task.await.unwrap();
    }

    #[tokio::test]
    async fn pending_changes_show_in_status_with_sizes_and_age() {
        let h = harness(vec![info("t", 1)], 0);
        h.ready.await.unwrap().unwrap();
        h.watch_tx
            .send(WatchMsg::Changed {
                target: 0,
                paths: vec![("/x/a".into(), 3), ("/x/b".into(), 4)],
            })
            .await
            .unwrap();
        let board = h.board.clone();
        let rec = h.rec.clone();
        // Either still pending, or already pushed: both are valid states;
        // when pending it must carry counts, bytes and an age.
        eventually(|| {
            let t = &board.snapshot().targets[0];
            (t.pending_files == 2 && t.pending_bytes == 7 && t.oldest_pending_at.is_some())
                || rec.calls.lock().unwrap().len() >= 2
        })
        .await;
        h.shutdown.cancel();
        h.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_continuously_written_file_still_goes_out_within_the_debounce() {
        let h = harness(vec![info("t", 1)], 0);
        h.ready.await.unwrap().unwrap();
        // The harness debounce is 200 ms: changes every 20 ms never leave a
        // quiet gap of 50 ms on an idle machine, yet a pass must happen.
        let rec = h.rec.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut n = 0u64;
        while rec.calls.lock().unwrap().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "no pass while changes kept coming"
            );
            h.watch_tx
                .send(WatchMsg::Changed {
                    target: 0,
                    paths: vec![("/x/log".into(), n)],
                })
                .await
                .unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            rec.calls.lock().unwrap()[1],
            ("t".into(), Scope::Paths(vec!["/x/log".into()]))
        );
        h.shutdown.cancel();
        h.task.await.unwrap();
    }

    #[tokio::test]
    async fn failed_first_pass_fails_readiness() {
        let h = harness(vec![info("t", 1)], 1);
        let err = h.ready.await.unwrap().unwrap_err();
        assert_eq!(err.status, crate::error::ExitStatus::Remote);
        assert!(
            err.message.contains("remote unreachable"),
            "{}",
            err.message
        );
        h.shutdown.cancel();
        h.task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_flushes_pending_without_waiting_for_debounce() {
        let h = harness(vec![info("t", 1)], 0);
        h.ready.await.unwrap().unwrap();
        h.watch_tx
            .send(WatchMsg::Changed {
                target: 0,
                paths: vec![("/x/late".into(), 1)],
            })
            .await
            .unwrap();
        settle().await;
        h.shutdown.cancel();
        let unflushed = h.task.await.unwrap();
        assert!(unflushed.is_empty(), "{unflushed:?}");
        let calls = h.rec.calls.lock().unwrap().clone();
        assert_eq!(
            calls.last().unwrap(),
            &("t".into(), Scope::Paths(vec!["/x/late".into()]))
        );
    }

    #[tokio::test]
    async fn sync_now_waits_for_a_fresh_full_pass_and_stop_cancels() {
        let h = harness(vec![info("t", 1)], 0);
        h.ready.await.unwrap().unwrap();
        let (tx, rx) = oneshot::channel();
        h.cmd_tx
            .send(Command {
                req: Request::SyncNow,
                reply: tx,
            })
            .await
            .unwrap();
        match rx.await.unwrap() {
            Response::Synced { outcomes } => {
                assert_eq!(outcomes.len(), 1);
                assert_eq!(outcomes[0].error, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            h.rec.calls.lock().unwrap()[1],
            ("t".into(), Scope::Full { verify: true })
        );
        let (tx, rx) = oneshot::channel();
        h.cmd_tx
            .send(Command {
                req: Request::Stop,
                reply: tx,
            })
            .await
            .unwrap();
        assert!(matches!(rx.await.unwrap(), Response::Stopping { .. }));
        assert!(h.shutdown.is_cancelled());
        h.task.await.unwrap();
    }

    #[tokio::test]
    async fn fallback_marks_polling_and_rescans() {
        let h = harness(vec![info("t", 1)], 0);
        h.ready.await.unwrap().unwrap();
        h.watch_tx
            .send(WatchMsg::Fallback {
                target: 0,
                reason: "inotify watch limit reached".into(),
            })
            .await
            .unwrap();
        let rec = h.rec.clone();
        eventually(|| rec.calls.lock().unwrap().len() >= 2).await;
        let st = h.board.snapshot();
        assert_eq!(st.targets[0].watch.mode, WatchModeState::Polling);
        assert_eq!(
            h.rec.calls.lock().unwrap()[1].1,
            Scope::Full { verify: false }
        );
        h.shutdown.cancel();
        h.task.await.unwrap();
    }

    fn full_calls(rec: &Recorder) -> usize {
        rec.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| matches!(s, Scope::Full { .. }))
            .count()
    }

    #[tokio::test]
    async fn interval_scans_finding_unreported_changes_switch_to_polling() {
        let mut t = info("t", 1);
        t.interval = Duration::from_millis(200);
        let h = harness(vec![t], 0);
        h.ready.await.unwrap().unwrap();
        // Every routine scan now finds a change no event reported.
        *h.rec.full_uploads.lock().unwrap() = 1;
        let board = h.board.clone();
        eventually(|| board.snapshot().targets[0].watch.mode == WatchModeState::Polling).await;
        let reason = board.snapshot().targets[0].watch.reason.clone().unwrap();
        assert!(reason.contains("no file event"), "{reason}");
        // The first scan after the first sync is strike one, the next one
        // is strike two.
        assert!(full_calls(&h.rec) >= 3);
        h.shutdown.cancel();
        h.task.await.unwrap();
    }

    #[tokio::test]
    async fn interval_scans_with_events_in_between_keep_events() {
        let mut t = info("t", 1);
        t.interval = Duration::from_millis(500);
        let h = harness(vec![t], 0);
        h.ready.await.unwrap().unwrap();
        *h.rec.full_uploads.lock().unwrap() = 1;
        // Events keep arriving (far more often than the interval), so no
        // two routine scans ever follow each other without one between.
        let rec = h.rec.clone();
        while full_calls(&rec) < 5 {
            h.watch_tx
                .send(WatchMsg::Changed {
                    target: 0,
                    paths: vec![("/x/a".into(), 1)],
                })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let st = h.board.snapshot();
        assert_eq!(st.targets[0].watch.mode, WatchModeState::Events);
        h.shutdown.cancel();
        h.task.await.unwrap();
    }

    #[tokio::test]
    async fn partial_event_filesystems_keep_events_and_say_so() {
        let h = harness(vec![info("t", 1)], 0);
        h.ready.await.unwrap().unwrap();
        h.watch_tx
            .send(WatchMsg::Partial {
                target: 0,
                reason: "on nfs: ...".into(),
            })
            .await
            .unwrap();
        let board = h.board.clone();
        eventually(|| board.snapshot().targets[0].watch.reason.is_some()).await;
        let st = board.snapshot();
        assert_eq!(st.targets[0].watch.mode, WatchModeState::Events);
        let text = st.render_text(unix_now());
        assert!(text.contains("events (on nfs: ...)"), "{text}");
        h.shutdown.cancel();
        h.task.await.unwrap();
    }
}
