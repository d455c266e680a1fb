//! The stop, inside one budget ([`StopBudget`]): collect the file events
//! that happened before it (queued in the kernel or the watcher's channel:
//! the watcher drains them behind a barrier), then flush pending changes of
//! every target that writes to the remote, by priority — a full scan for a
//! target in polling mode or whose events were lost — then let a cancelled
//! pass wind down, abandoning it when even that runs out of time.
//!
//! Files that failed during the flush are retried (a few rounds per target,
//! within the budget). Whatever could not be flushed is returned by target
//! and path (the supervisor logs it and exits 6). A target waiting for a
//! human is not retried here either: its changes are reported as unflushed.

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::super::stop_budget::StopBudget;
use super::super::watcher::{DrainRequest, WatchMsg};
use super::SchedulerExit;
use super::event_loop::Scheduler;
use super::outcome::PassDone;

/// What was left unflushed at shutdown: (target, paths).
pub(crate) type Unflushed = Vec<(String, Vec<PathBuf>)>;

/// Passes a target gets during the flush (the first, then retries of the
/// files that failed): a file that keeps failing does not eat the budget.
const MAX_FLUSH_ROUNDS: u32 = 3;

impl Scheduler {
    /// Stop within `budget`; `skip_flush` (the lease is lost, or nothing
    /// was synced yet) cancels the pass in flight and flushes nothing, but
    /// still collects the events of before the stop, so every change left
    /// unpushed is named.
    pub(super) async fn stop(
        mut self,
        watch_rx: &mut mpsc::Receiver<WatchMsg>,
        drain: &mpsc::Sender<DrainRequest>,
        skip_flush: bool,
        budget: StopBudget,
    ) -> SchedulerExit {
        if skip_flush {
            self.pass_cancel.cancel();
        }
        self.collect_events(watch_rx, drain, budget.drain_until())
            .await;
        if !skip_flush {
            self.flush(budget).await;
        }
        self.wind_down(budget).await;
        self.exit(Some(budget))
    }

    /// Take in every file event that happened before the stop: ask the
    /// watcher to drain (it answers once everything queued before the
    /// request was sent), reading its messages meanwhile. When that cannot
    /// be proven in time, every watched target gets a full scan instead.
    async fn collect_events(
        &mut self,
        watch_rx: &mut mpsc::Receiver<WatchMsg>,
        drain: &mpsc::Sender<DrainRequest>,
        until: Instant,
    ) {
        let started = Instant::now();
        let (reply, mut done) = oneshot::channel();
        let complete = match drain.try_send(reply) {
            // No watcher to ask: fine only when nothing is watched.
            Err(_) => !self.targets.iter().any(|t| t.watched()),
            Ok(()) => loop {
                tokio::select! {
                    biased;
                    r = &mut done => break r.is_ok(),
                    Some(m) = watch_rx.recv() => self.on_watch(m),
                    Some(d) = self.passes.join_next(), if !self.passes.is_empty() => {
                        if let Ok(d) = d {
                            self.finish(d);
                        }
                    }
                    _ = tokio::time::sleep_until(until) => break false,
                }
            },
        };
        while let Ok(m) = watch_rx.try_recv() {
            self.on_watch(m);
        }
        if complete {
            tracing::debug!(elapsed = ?started.elapsed(), "file events before the stop collected");
        } else {
            tracing::warn!(
                "file events before the stop could not all be collected in time; \
                 scanning every watched target whole instead"
            );
            for t in self.targets.iter_mut().filter(|t| t.watched()) {
                t.rescan = true;
            }
        }
    }

    /// Push pending changes out, by priority, until the budget's flush
    /// time is up; then cancel the pass in flight.
    async fn flush(&mut self, budget: StopBudget) {
        // A full scan where events cannot tell what changed (polling, lost
        // events); only after a first full pass (nothing to compare with
        // before it).
        let mut needs_full: Vec<bool> = self
            .targets
            .iter()
            .map(|t| {
                t.info.writes_remote
                    && t.first_done
                    && !t.waiting_for_human
                    && (t.polling || t.rescan)
            })
            .collect();
        let mut rounds = vec![0u32; self.targets.len()];
        let pending: usize = self
            .targets
            .iter()
            .map(|t| t.pending.len() + t.inflight.len())
            .sum();
        let scans = needs_full.iter().filter(|n| **n).count();
        tracing::info!(
            pending_files = pending,
            full_scans = scans,
            budget = ?budget.total(),
            "flushing before exit"
        );
        let finished = tokio::time::timeout_at(budget.flush_until(), async {
            loop {
                if let Some(done) = self.passes.join_next().await {
                    if let Ok(done) = done {
                        self.finish_flushing(done);
                    }
                    continue;
                }
                let Some(i) = self.next_to_flush(&needs_full, &rounds) else {
                    break;
                };
                let full = std::mem::take(&mut needs_full[i]);
                rounds[i] += 1;
                self.start(i, full);
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(elapsed = ?budget.elapsed(), "stop budget: no time left to flush; cancelling the pass in flight");
            self.pass_cancel.cancel();
        }
    }

    /// A flush pass came back: files that failed stay pending (retried
    /// while rounds and time are left, else reported as not flushed).
    fn finish_flushing(&mut self, done: PassDone) {
        let i = done.target;
        let failed: Vec<PathBuf> = match &done.result {
            Ok(report) => {
                let root = &self.targets[i].info.root;
                report.failed.iter().map(|f| root.join(&f.path)).collect()
            }
            Err(_) => Vec::new(),
        };
        self.finish(done);
        if !failed.is_empty() {
            self.targets[i].requeue(failed);
        }
    }

    /// The most urgent target with something to flush.
    fn next_to_flush(&self, needs_full: &[bool], rounds: &[u32]) -> Option<usize> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                t.info.writes_remote
                    && !t.waiting_for_human
                    && rounds[*i] < MAX_FLUSH_ROUNDS
                    && (!t.pending.is_empty() || needs_full[*i])
            })
            .min_by_key(|(i, t)| (t.info.priority, *i))
            .map(|(i, _)| i)
    }

    /// Let cancelled passes report back until the budget's wind-down time;
    /// abandon those still running then (their paths stay in flight, so
    /// they are reported as not flushed).
    async fn wind_down(&mut self, budget: StopBudget) {
        if self.passes.is_empty() {
            return;
        }
        let wound = tokio::time::timeout_at(budget.wind_down_until(), async {
            while let Some(done) = self.passes.join_next().await {
                if let Ok(done) = done {
                    self.finish(done);
                }
            }
        })
        .await;
        if wound.is_err() {
            tracing::warn!(
                "stop budget: a cancelled pass did not stop in time; abandoning it \
                 (its files are listed as not flushed)"
            );
            self.passes.abort_all();
            while self.passes.join_next().await.is_some() {}
            self.abandoned_pass = true;
        }
    }

    /// How the scheduler ended: what stayed unflushed, the fatal failure if
    /// one stopped it, and the stop's budget.
    pub(super) fn exit(self, budget: Option<StopBudget>) -> SchedulerExit {
        let unflushed = self.unflushed();
        SchedulerExit {
            unflushed,
            fatal: self.fatal,
            budget,
            abandoned_pass: self.abandoned_pass,
        }
    }

    /// Pending and in-flight paths of targets that write to the remote.
    fn unflushed(&self) -> Unflushed {
        self.targets
            .iter()
            .filter(|t| t.info.writes_remote)
            .map(|t| (t.info.name.clone(), t.unflushed_paths()))
            .filter(|(_, p)| !p.is_empty())
            .collect()
    }
}
