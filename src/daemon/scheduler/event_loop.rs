//! The scheduler's loop: start the most urgent due pass, take in file
//! events, commands and reloads, and keep the board's per-target view
//! current; resume fenced targets when the write gate re-opens. What a
//! finished pass changes lives in `outcome`, the stop in `stop`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::seam::SyncSeam;
use super::super::status::{WatchModeState, WatchState};
use super::super::stop_budget::StopBudget;
use super::super::watcher::WatchMsg;
use super::board::Board;
use super::outcome::{PassDone, SyncNowWaiter};
use super::target::TargetRuntime;
use super::{Inputs, SchedulerCommand, SchedulerExit, TargetFailure, TargetInfo, Tunables};
use crate::remote::WriteGate;
use crate::sync::SyncError;

/// After a pass some of what it allocated is freed only later (idle
/// blocking-pool threads exit after 10 s, connections close): trim again
/// once that happened.
pub(super) const SETTLE_TRIM_AFTER: Duration = Duration::from_secs(15);

/// While the write gate is closed, how often it is looked at.
pub(super) const GATE_POLL: Duration = Duration::from_secs(1);

pub(crate) struct Scheduler {
    pub(super) targets: Vec<TargetRuntime>,
    sync: Arc<dyn SyncSeam>,
    pub(super) board: Arc<Board>,
    pub(super) tunables: Tunables,
    pub(super) pass_cancel: CancellationToken,
    pub(super) passes: JoinSet<PassDone>,
    pub(super) waiters: Vec<SyncNowWaiter>,
    pub(super) ready: Option<oneshot::Sender<Result<(), TargetFailure>>>,
    /// A pass failed in a way the daemon cannot go on from (see
    /// `Disposition::Stop`): the first such failure.
    pub(super) fatal: Option<TargetFailure>,
    pid: u32,
    /// A second memory trim once things settled after a pass (see
    /// [`SETTLE_TRIM_AFTER`]).
    pub(super) settle_trim_at: Option<Instant>,
    /// The write gate and the generation last seen (it grows on re-open).
    gate: Option<(WriteGate, u64)>,
    /// A pass was abandoned at stop (see `SchedulerExit::abandoned_pass`).
    pub(super) abandoned_pass: bool,
}

impl Scheduler {
    /// Targets the board shows as polling get no file events (pull-only,
    /// `watch: poll`); their reason is already on the board.
    pub fn new(
        infos: Vec<TargetInfo>,
        sync: Arc<dyn SyncSeam>,
        board: Arc<Board>,
        tunables: Tunables,
        ready: oneshot::Sender<Result<(), TargetFailure>>,
    ) -> Scheduler {
        let now = Instant::now();
        let shown = board.snapshot().targets;
        let targets = infos
            .into_iter()
            .enumerate()
            .map(|(i, info)| {
                let polling = shown
                    .get(i)
                    .is_some_and(|t| t.watch.mode == WatchModeState::Polling);
                TargetRuntime::new(info, polling, now)
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
            fatal: None,
            pid: std::process::id(),
            settle_trim_at: None,
            gate: None,
            abandoned_pass: false,
        }
    }

    /// Run until `shutdown` (which it fires itself when a pass failed
    /// fatally), then stop within the stop budget: collect the file events
    /// of before the stop and flush (unless `skip_flush` is cancelled too,
    /// e.g. the lease is lost), and say what stayed unflushed.
    pub async fn run(
        mut self,
        inputs: Inputs,
        shutdown: CancellationToken,
        skip_flush: CancellationToken,
    ) -> SchedulerExit {
        let Inputs {
            watch: mut watch_rx,
            commands: mut cmd_rx,
            reload: mut reload_rx,
            drain,
            gate,
        } = inputs;
        self.gate = gate.map(|g| {
            let generation = g.generation();
            (g, generation)
        });
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
            self.look_at_gate();
            if self.fatal.is_some() {
                shutdown.cancel();
            }
            if self.passes.is_empty() && self.settle_trim_at.is_some_and(|at| Instant::now() >= at)
            {
                self.settle_trim_at = None;
                super::super::memory::release_freed();
            }
        }
        let budget = StopBudget::starting_now(self.tunables.flush_deadline);
        self.stop(&mut watch_rx, &drain, skip_flush.is_cancelled(), budget)
            .await
    }

    /// The gate re-opened since last seen (the lease was re-verified after
    /// a renewal gap): fenced targets retry now, not after their backoff.
    fn look_at_gate(&mut self) {
        let Some((gate, seen)) = &mut self.gate else {
            return;
        };
        let generation = gate.generation();
        if generation == *seen || !gate.is_open() {
            return;
        }
        *seen = generation;
        let now = Instant::now();
        let mut resumed = 0;
        for t in &mut self.targets {
            if t.unfenced(now) {
                resumed += 1;
            }
        }
        tracing::info!(
            targets_resumed = resumed,
            "remote writes allowed again (lease re-verified); pending changes go out now"
        );
        self.publish();
    }

    /// Whether the write gate is known closed.
    fn fenced(&self) -> bool {
        self.gate.as_ref().is_some_and(|(g, _)| !g.is_open())
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let far = now + Duration::from_secs(3600);
        self.targets
            .iter()
            .filter(|t| !t.running && !t.waiting_for_human)
            .map(|t| t.wake_at(self.tunables.debounce, now))
            .min()
            .unwrap_or(far)
            .min(self.settle_trim_at.unwrap_or(far))
            .min(if self.fenced() { now + GATE_POLL } else { far })
            .min(far)
    }

    /// Start the most urgent due pass, if any: the lowest priority, then
    /// spec order.
    fn start_due(&mut self) -> bool {
        let now = Instant::now();
        let debounce = self.tunables.debounce;
        let pick = self
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_due(debounce, now))
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

    pub(super) fn start(&mut self, i: usize, full: bool) {
        let t = &mut self.targets[i];
        let scope = t.begin_pass(full);
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
            let result = std::panic::AssertUnwindSafe(sync.pass(&name, scope, cancel, progress))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(Arc::new(SyncError::Internal(
                        "the sync pass panicked (see the log)".into(),
                    )))
                });
            PassDone {
                target: i,
                full,
                seq,
                result,
            }
        });
        self.publish();
    }

    pub(super) fn on_watch(&mut self, msg: WatchMsg) {
        let now = Instant::now();
        match msg {
            WatchMsg::Changed { target, paths } => {
                let Some(t) = self.targets.get_mut(target) else {
                    return;
                };
                if !t.info.writes_remote {
                    return;
                }
                t.changed(paths, now);
            }
            WatchMsg::Rescan { target, reason } => {
                let Some(t) = self.targets.get_mut(target) else {
                    return;
                };
                tracing::warn!(target_name = %t.info.name, %reason, "file events were lost; scanning the whole target");
                t.full_pass_now(now);
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
    pub(super) fn switch_to_polling(&mut self, target: usize, reason: String) {
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
        t.full_pass_now(Instant::now());
        self.board.update(|s| {
            if let Some(ts) = s.targets.get_mut(target) {
                ts.watch = WatchState {
                    mode: WatchModeState::Polling,
                    reason: Some(reason),
                };
            }
        });
    }

    fn on_command(&mut self, cmd: SchedulerCommand, shutdown: &CancellationToken) {
        match cmd {
            SchedulerCommand::SyncNow { reply } => {
                let now = Instant::now();
                let required: Vec<u64> = self.targets.iter_mut().map(|t| t.sync_now(now)).collect();
                if required.is_empty() {
                    let _ = reply.send(Vec::new());
                    return;
                }
                self.waiters.push(SyncNowWaiter::new(required, reply));
            }
            SchedulerCommand::Stop { reply } => {
                tracing::info!("stop requested over the control socket");
                let _ = reply.send(self.pid);
                shutdown.cancel();
            }
        }
    }

    fn on_reload(&mut self, t: Tunables) {
        let now = Instant::now();
        for (rt, interval) in self.targets.iter_mut().zip(&t.intervals) {
            rt.set_interval(*interval, now);
            rt.reloaded();
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
    pub(super) fn publish(&self) {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        // (pending files, pending bytes, oldest pending, running, next check)
        type View = (u64, u64, Option<u64>, bool, Option<u64>);
        let views: Vec<View> = self
            .targets
            .iter()
            .map(|t| {
                let files = (t.pending.len() + t.inflight.len()) as u64;
                let bytes = t.pending.bytes().saturating_add(t.inflight.bytes());
                let oldest = t.oldest_pending().map(crate::clock::to_unix);
                let next = if t.running || t.waiting_for_human {
                    None
                } else {
                    let at = t.full_at.max(t.not_before);
                    let delta = at.saturating_duration_since(now);
                    Some(crate::clock::to_unix(now_sys + delta))
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
}
