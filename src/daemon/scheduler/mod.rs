//! The scheduler: decides which target gets a pass when, and flushes on
//! shutdown.
//!
//! Per target it keeps the changed paths reported by the watcher (pending),
//! the paths of the pass in flight, and when the next full pass is due
//! (`interval`, the safety net; immediately after start, a queue overflow or
//! `sync --now`). A target with pending changes is due once no new change
//! arrived for a quarter of the debounce, and at the latest one debounce
//! after the first change: a lone edit is on the remote well within the
//! debounce, and a file written continuously still goes out every debounce.
//! One pass runs at a time; among due targets the lowest `priority` (then
//! spec order) goes first. A pass that failed keeps its paths pending;
//! what happens next comes from the error's type (`seam::disposition`): a
//! transient failure retries after a growing, jittered backoff; a refusal
//! that retrying cannot fix (the mass-delete guard) waits until something
//! changes, with advice in `status`; a cancelled pass is requeued without
//! backoff; a fatal one stops the daemon.
//!
//! On shutdown it stops starting ordinary work and, inside the stop budget
//! (`flush_deadline` for the whole stop, see `stop_budget`), collects the
//! file events that happened before the stop (the watcher drains them),
//! then flushes: pending changes of every target that writes to the remote,
//! by priority, a full scan where events cannot tell what changed;
//! whatever could not be flushed is returned (and logged by path).
//!
//! While the write gate is closed (the lease is fenced) it looks at the
//! gate every second; when the gate re-opens (the lease proved still ours)
//! the targets whose passes were fenced run again at once, without waiting
//! out their backoff.
//!
//! It is driven by its own [`SchedulerCommand`]s, not by the control
//! socket's wire types: the control socket translates.
//!
//! # Layout
//!
//! - `event_loop`: [`Scheduler`] and its loop: picking and starting passes,
//!   file events, commands, reloads, publishing to the board.
//! - `target`: per-target runtime: pending and in-flight paths, due times,
//!   backoff, missed-event strikes.
//! - `outcome`: what a finished pass changes (runtime, log, readiness,
//!   `sync --now` waiters, board), one function per concern.
//! - `stop`: the stop: event drain, flush, wind-down, and what stayed
//!   unflushed.
//! - `board`: the live status [`Board`] shared with the control socket and
//!   the status-file writer.
//! - `tests`: the whole scheduler against a recording fake seam.

mod board;
mod event_loop;
mod outcome;
mod paths;
mod stop;
mod target;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub(crate) use board::{Board, initial_target_status};
pub(crate) use event_loop::Scheduler;
pub(crate) use stop::Unflushed;

use super::stop_budget::StopBudget;
use super::watcher::{DrainRequest, WatchMsg};
use crate::error::{ExitStatus, HasExitStatus};
use crate::remote::WriteGate;
use crate::sync::SyncError;

/// What drives a running scheduler besides time.
pub(crate) struct Inputs {
    /// File events from the watcher.
    pub watch: mpsc::Receiver<WatchMsg>,
    pub commands: mpsc::Receiver<SchedulerCommand>,
    pub reload: mpsc::Receiver<Tunables>,
    /// Asks the watcher, at stop, to hand over every event queued before.
    pub drain: mpsc::Sender<DrainRequest>,
    /// The write gate (fencing), watched to resume at once when it re-opens.
    pub gate: Option<WriteGate>,
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
    /// The local directory (failed files are reported relative to it).
    pub root: PathBuf,
    pub priority: u32,
    pub interval: Duration,
    pub writes_remote: bool,
}

/// What others may ask of a running scheduler.
#[derive(Debug)]
pub(crate) enum SchedulerCommand {
    /// A fresh full pass of every target, listing the remote; answered once
    /// each target has one that started after this command.
    SyncNow {
        reply: oneshot::Sender<Vec<TargetSynced>>,
    },
    /// Flush and stop: answered with this process's pid, then the shutdown
    /// fires.
    Stop { reply: oneshot::Sender<u32> },
}

/// One target's part of a [`SchedulerCommand::SyncNow`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetSynced {
    pub target: String,
    /// `None` when the pass succeeded.
    pub error: Option<String>,
    pub uploaded: u64,
    pub downloaded: u64,
    pub failed: u64,
}

/// A target's pass that failed as a whole (a first pass, for readiness; a
/// fatal one, for the daemon's exit).
#[derive(Debug, Clone)]
pub(crate) struct TargetFailure {
    pub target: String,
    pub error: Arc<SyncError>,
}

impl TargetFailure {
    pub fn exit_status(&self) -> ExitStatus {
        self.error.exit_status()
    }

    /// The error's message with its causes.
    pub fn message(&self) -> String {
        super::seam::error_chain(&*self.error)
    }
}

/// How the scheduler ended.
#[derive(Debug, Default)]
pub(crate) struct SchedulerExit {
    pub unflushed: Unflushed,
    /// The failure that stopped the daemon, if one did.
    pub fatal: Option<TargetFailure>,
    /// The stop's budget, from when the scheduler noticed the stop.
    pub budget: Option<StopBudget>,
    /// A pass had to be abandoned (it did not stop within the budget): the
    /// engine's view of that target may lag the remote, so no manifest is
    /// written from it.
    pub abandoned_pass: bool,
}
