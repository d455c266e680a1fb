//! The shutdown flush: push pending changes of every target that writes to
//! the remote, by priority, within the flush deadline; report (by target
//! and path) whatever could not be flushed. A target waiting for a human
//! is not retried here either: its changes are reported as unflushed.

use std::path::PathBuf;

use tokio::time::Instant;

use super::SchedulerExit;
use super::event_loop::Scheduler;

/// What was left unflushed at shutdown: (target, paths).
pub(crate) type Unflushed = Vec<(String, Vec<PathBuf>)>;

impl Scheduler {
    /// Push pending changes out, by priority, within the flush deadline.
    pub(super) async fn flush(mut self) -> SchedulerExit {
        let deadline = Instant::now() + self.tunables.flush_deadline;
        // Polling targets cannot know what changed: give each one full pass.
        let mut needs_full: Vec<bool> = self
            .targets
            .iter()
            .map(|t| t.info.writes_remote && t.polling && t.first_done && !t.waiting_for_human)
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
                let Some(i) = self.next_to_flush(&needs_full) else {
                    break;
                };
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
        self.exit()
    }

    /// The most urgent target with something to flush.
    fn next_to_flush(&self, needs_full: &[bool]) -> Option<usize> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                t.info.writes_remote
                    && !t.waiting_for_human
                    && (!t.pending.is_empty() || needs_full[*i])
            })
            .min_by_key(|(i, t)| (t.info.priority, *i))
            .map(|(i, _)| i)
    }

    /// How the scheduler ended: what stayed unflushed, and the fatal
    /// failure, if one stopped it.
    pub(super) fn exit(self) -> SchedulerExit {
        SchedulerExit {
            unflushed: self.unflushed(),
            fatal: self.fatal,
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
