//! What a finished pass changes, one concern per function: the target's
//! runtime (due times, backoff), the log, readiness (every target's first
//! full pass), the `sync --now` callers waiting for it, and the board.

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::backend::{PassOutcome, SeamError};
use super::super::status::{PassCounts, SkippedPath, unix_now};
use super::TargetSynced;
use super::event_loop::{SETTLE_TRIM_AFTER, Scheduler};

/// Conflict names kept per target for `status`.
const MAX_CONFLICTS_SHOWN: usize = 20;

/// A pass that came back from its task.
pub(super) struct PassDone {
    pub target: usize,
    pub full: bool,
    /// The target's full-pass sequence number when it started.
    pub seq: u64,
    pub result: Result<PassOutcome, SeamError>,
}

/// A `sync --now` caller, waiting for a fresh full pass of every target.
pub(super) struct SyncNowWaiter {
    /// Per target: the full-pass sequence number that counts as fresh.
    required: Vec<u64>,
    outcomes: Vec<Option<TargetSynced>>,
    reply: oneshot::Sender<Vec<TargetSynced>>,
}

impl SyncNowWaiter {
    pub fn new(required: Vec<u64>, reply: oneshot::Sender<Vec<TargetSynced>>) -> SyncNowWaiter {
        SyncNowWaiter {
            outcomes: vec![None; required.len()],
            required,
            reply,
        }
    }
}

/// What the board and the waiters learn from one pass.
struct PassSummary {
    /// `None` when the pass succeeded with every file.
    error: Option<String>,
    counts: Option<PassCounts>,
    conflicts: Vec<String>,
    /// What the pass skipped on purpose (`None`: the pass did not run).
    skipped: Option<Vec<(String, String)>>,
    /// Why the target switches to polling, when the pass showed it.
    missed_events: Option<String>,
    for_waiters: TargetSynced,
}

impl Scheduler {
    pub(super) fn finish(&mut self, done: PassDone) {
        super::super::memory::release_freed();
        let now = Instant::now();
        self.settle_trim_at = Some(now + SETTLE_TRIM_AFTER);
        let summary = match &done.result {
            Ok(out) => self.pass_ran(&done, out, now),
            Err(e) => self.pass_failed(&done, e, now),
        };
        if done.full {
            self.settle_readiness(&done);
            self.answer_waiters(&done, &summary.for_waiters);
        }
        let missed = summary.missed_events.clone();
        self.record_on_board(done.target, summary);
        if let Some(reason) = missed {
            self.switch_to_polling(done.target, reason);
        }
        self.publish();
    }

    /// The pass ran (some files may have failed).
    fn pass_ran(&mut self, done: &PassDone, out: &PassOutcome, now: Instant) -> PassSummary {
        let t = &mut self.targets[done.target];
        let name = t.info.name.clone();
        t.pass_ran(done.full, out.failed.is_empty(), now);
        let error = if out.failed.is_empty() {
            log_pass_done(&name, done.full, out);
            None
        } else {
            Some(failed_files(&name, out))
        };
        let missed_events = t.missed_events(done.full, out);
        PassSummary {
            for_waiters: TargetSynced {
                target: name,
                error: error.clone(),
                uploaded: out.counts.uploaded,
                downloaded: out.counts.downloaded,
                failed: out.failed.len() as u64,
            },
            error,
            counts: Some(out.counts.clone()),
            conflicts: out.conflicts.clone(),
            skipped: Some(out.skipped.clone()),
            missed_events,
        }
    }

    /// The pass failed as a whole: back off, keep its paths pending.
    fn pass_failed(&mut self, done: &PassDone, e: &SeamError, now: Instant) -> PassSummary {
        let t = &mut self.targets[done.target];
        let retry_in = t.pass_failed(now);
        let name = t.info.name.clone();
        tracing::warn!(target_name = %name, full = done.full, error = %e, ?retry_in, "pass failed");
        PassSummary {
            for_waiters: TargetSynced {
                target: name,
                error: Some(e.message.clone()),
                uploaded: 0,
                downloaded: 0,
                failed: 0,
            },
            error: Some(e.message.clone()),
            counts: None,
            conflicts: Vec::new(),
            skipped: None,
            missed_events: None,
        }
    }

    /// Readiness: every target's first full pass must succeed; the first
    /// that fails fails the start.
    fn settle_readiness(&mut self, done: &PassDone) {
        if self.ready.is_none() {
            return;
        }
        match &done.result {
            Err(e) => {
                let name = &self.targets[done.target].info.name;
                let err = SeamError {
                    status: e.status,
                    message: format!("first sync of target {name} failed: {}", e.message),
                };
                if let Some(tx) = self.ready.take() {
                    let _ = tx.send(Err(err));
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

    /// Hand a full pass's result to the `sync --now` callers waiting for
    /// it; answer those who now have every target's.
    fn answer_waiters(&mut self, done: &PassDone, outcome: &TargetSynced) {
        let i = done.target;
        for w in &mut self.waiters {
            if done.seq >= w.required[i] && w.outcomes[i].is_none() {
                w.outcomes[i] = Some(outcome.clone());
            }
        }
        let (complete, open): (Vec<SyncNowWaiter>, Vec<SyncNowWaiter>) =
            std::mem::take(&mut self.waiters)
                .into_iter()
                .partition(|w| w.outcomes.iter().all(Option::is_some));
        self.waiters = open;
        for w in complete {
            let _ = w.reply.send(w.outcomes.into_iter().flatten().collect());
        }
    }

    fn record_on_board(&self, i: usize, summary: PassSummary) {
        let now_unix = unix_now();
        self.board.update(|s| {
            let Some(ts) = s.targets.get_mut(i) else {
                return;
            };
            ts.last_attempt_at = Some(now_unix);
            if summary.error.is_none() {
                ts.last_success_at = Some(now_unix);
            }
            ts.last_error = summary.error;
            if let Some(c) = summary.counts {
                ts.last_pass = Some(c);
            }
            if let Some(skipped) = summary.skipped {
                ts.skipped = skipped
                    .into_iter()
                    .map(|(path, reason)| SkippedPath { path, reason })
                    .collect();
            }
            ts.conflicts_total += summary.conflicts.len() as u64;
            ts.conflicts.extend(summary.conflicts);
            let extra = ts.conflicts.len().saturating_sub(MAX_CONFLICTS_SHOWN);
            ts.conflicts.drain(..extra);
        });
    }
}

/// Idle interval passes are routine: keep them out of the info log so it
/// shows what actually moved.
fn log_pass_done(name: &str, full: bool, out: &PassOutcome) {
    let moved = out.counts.uploaded
        + out.counts.downloaded
        + out.counts.deleted_remote
        + out.counts.deleted_local
        + out.conflicts.len() as u64;
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
}

/// Log each failed file; the error `status` shows (the first three).
fn failed_files(name: &str, out: &PassOutcome) -> String {
    for (p, r) in &out.failed {
        tracing::warn!(target_name = %name, path = %p, reason = %r, "file failed to sync");
    }
    let first = out
        .failed
        .iter()
        .take(3)
        .map(|(p, r)| format!("{p}: {r}"))
        .collect::<Vec<_>>()
        .join("; ");
    format!("{} file(s) failed ({first})", out.failed.len())
}
