//! What a finished pass changes, one concern per function: the target's
//! runtime (due times, backoff, waiting for a human), the log, readiness
//! (every target's first full pass), the `sync --now` callers waiting for
//! it, and the board. What to do after a failed pass comes from the error's
//! type ([`disposition`]), never from its text.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::seam::{Disposition, PassResult, advice, disposition, error_chain};
use super::super::status::{PassCounts, SkippedPath, UndecryptableNames};
use super::event_loop::{SETTLE_TRIM_AFTER, Scheduler};
use super::{TargetFailure, TargetSynced};
use crate::sync::{PassReport, SyncError};

/// Conflict names kept per target for `status`.
const MAX_CONFLICTS_SHOWN: usize = 20;

/// A pass that came back from its task.
pub(super) struct PassDone {
    pub target: usize,
    pub full: bool,
    /// The target's full-pass sequence number when it started.
    pub seq: u64,
    pub result: PassResult,
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
    skipped: Option<Vec<SkippedPath>>,
    /// Crypt names that do not decrypt (`None`: the pass did not run).
    undecryptable: Option<UndecryptableNames>,
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
            Err(e) => match self.pass_failed(&done, e, now) {
                Some(summary) => summary,
                // Requeued: not an attempt anyone waits on or sees.
                None => return self.publish(),
            },
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
    fn pass_ran(&mut self, done: &PassDone, out: &PassReport, now: Instant) -> PassSummary {
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
                uploaded: out.uploaded,
                downloaded: out.downloaded,
                failed: out.failed.len() as u64,
            },
            error,
            counts: Some(counts(out)),
            conflicts: out.conflicts.clone(),
            skipped: Some(
                out.skipped
                    .iter()
                    .map(|s| SkippedPath {
                        path: s.path.clone(),
                        reason: s.reason.clone(),
                    })
                    .collect(),
            ),
            undecryptable: Some(UndecryptableNames {
                count: out.undecryptable.count,
                first: out.undecryptable.first.clone(),
            }),
            missed_events,
        }
    }

    /// The pass failed as a whole: its paths stay pending; retry after a
    /// backoff, wait for a human, requeue, or stop the daemon, by the
    /// error's type. `None` when requeued (nothing to report).
    fn pass_failed(
        &mut self,
        done: &PassDone,
        e: &Arc<SyncError>,
        now: Instant,
    ) -> Option<PassSummary> {
        let how = disposition(e);
        let t = &mut self.targets[done.target];
        let retry_in = t.pass_failed(how, now);
        let name = t.info.name.clone();
        let message = error_chain(&**e);
        let full = done.full;
        let shown = match how {
            Disposition::Retry => {
                tracing::warn!(target_name = %name, full, error = %message, ?retry_in, "pass failed");
                message
            }
            Disposition::Requeue => {
                tracing::debug!(target_name = %name, full, "pass cancelled; requeued");
                return None;
            }
            Disposition::NeedsHuman => {
                let advice = advice(e, &name);
                tracing::warn!(target_name = %name, full, error = %message, %advice, "pass refused; not retried until something changes");
                format!("{message} — {advice}")
            }
            Disposition::Stop => {
                tracing::error!(target_name = %name, full, error = %message, "pass failed in a way the daemon cannot go on from; stopping");
                self.fatal.get_or_insert(TargetFailure {
                    target: name.clone(),
                    error: e.clone(),
                });
                message
            }
        };
        Some(PassSummary {
            for_waiters: TargetSynced {
                target: name,
                error: Some(shown.clone()),
                uploaded: 0,
                downloaded: 0,
                failed: 0,
            },
            error: Some(shown),
            counts: None,
            conflicts: Vec::new(),
            skipped: None,
            undecryptable: None,
            missed_events: None,
        })
    }

    /// Readiness: every target's first full pass must succeed; the first
    /// that fails fails the start. A target that cannot be served here
    /// (see [`crate::preflight`]) is shown in `status` and does not hold
    /// the others up, unless no target is served at all.
    fn settle_readiness(&mut self, done: &PassDone) {
        if self.ready.is_none() {
            return;
        }
        let settled = |t: &super::target::TargetRuntime| t.first_done || t.unusable;
        match &done.result {
            Err(e) if matches!(**e, SyncError::Unavailable { .. }) => {
                self.targets[done.target].unusable = true;
                if !self.targets.iter().all(settled) {
                    return;
                }
                let result = if self.targets.iter().any(|t| t.first_done) {
                    Ok(())
                } else {
                    Err(TargetFailure {
                        target: self.targets[done.target].info.name.clone(),
                        error: e.clone(),
                    })
                };
                if let Some(tx) = self.ready.take() {
                    let _ = tx.send(result);
                }
            }
            Err(e) => {
                let failure = TargetFailure {
                    target: self.targets[done.target].info.name.clone(),
                    error: e.clone(),
                };
                if let Some(tx) = self.ready.take() {
                    let _ = tx.send(Err(failure));
                }
            }
            Ok(_) if self.targets.iter().all(settled) => {
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
        let now_unix = crate::clock::unix_now();
        self.board.update(|s| {
            let Some(ts) = s.targets.get_mut(i) else {
                return;
            };
            ts.last_attempt_at = Some(now_unix);
            if summary.error.is_none() {
                ts.last_success_at = Some(now_unix);
                ts.failing_since = None;
            } else {
                ts.failing_since.get_or_insert(now_unix);
            }
            ts.last_error = summary.error;
            if let Some(c) = summary.counts {
                if c.uploaded + c.deleted_remote > 0 {
                    ts.last_local_change_at = Some(now_unix);
                }
                if c.uploaded + c.deleted_remote + c.downloaded + c.deleted_local > 0 {
                    ts.last_remote_change_at = Some(now_unix);
                }
                ts.last_pass = Some(c);
            }
            if let Some(skipped) = summary.skipped {
                ts.skipped = skipped;
            }
            if let Some(u) = summary.undecryptable {
                ts.undecryptable = u;
            }
            ts.conflicts_total += summary.conflicts.len() as u64;
            ts.conflicts.extend(summary.conflicts);
            let extra = ts.conflicts.len().saturating_sub(MAX_CONFLICTS_SHOWN);
            ts.conflicts.drain(..extra);
        });
    }
}

/// The counters `status` shows for a pass.
fn counts(r: &PassReport) -> PassCounts {
    PassCounts {
        uploaded: r.uploaded,
        downloaded: r.downloaded,
        deleted_remote: r.deleted_remote,
        deleted_local: r.deleted_local,
        bytes_up: r.bytes_up,
        bytes_down: r.bytes_down,
        failed: r.failed.len() as u64,
        trashed: r.trashed,
    }
}

/// Idle interval passes are routine: keep them out of the info log so it
/// shows what actually moved.
fn log_pass_done(name: &str, full: bool, out: &PassReport) {
    let moved = out.uploaded
        + out.downloaded
        + out.deleted_remote
        + out.deleted_local
        + out.conflicts.len() as u64;
    if moved == 0 {
        tracing::debug!(target_name = %name, full, "pass done, nothing to do");
    } else {
        tracing::info!(
            target_name = %name,
            full,
            uploaded = out.uploaded,
            downloaded = out.downloaded,
            deleted_remote = out.deleted_remote,
            deleted_local = out.deleted_local,
            conflicts = out.conflicts.len(),
            "pass done"
        );
    }
}

/// Log each failed file; the error `status` shows (the first three).
fn failed_files(name: &str, out: &PassReport) -> String {
    for f in &out.failed {
        tracing::warn!(target_name = %name, path = %f.path, reason = %f.reason, "file failed to sync");
    }
    let first = out
        .failed
        .iter()
        .take(3)
        .map(|f| format!("{}: {}", f.path, f.reason))
        .collect::<Vec<_>>()
        .join("; ");
    format!("{} file(s) failed ({first})", out.failed.len())
}
