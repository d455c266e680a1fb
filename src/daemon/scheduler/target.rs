//! Per-target runtime: what one target has pending and in flight, when its
//! next pass is due, its retry backoff (with jitter), whether it waits for a
//! human, and its missed-event strikes.
//!
//! Everything here is plain state and arithmetic on instants handed in by
//! the caller, so the rules are unit-tested without running a scheduler.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::super::seam::{Disposition, Scope};
use super::TargetInfo;
use super::paths::SizedPaths;
use crate::sync::PassReport;

/// First retry delay after a failed pass; doubles up to the target interval.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_secs(5);

/// After this many routine interval scans in a row found local changes
/// that no file event reported (with no event at all in between), file
/// events are taken to be undelivered for the target (a network or FUSE
/// filesystem, a shared folder of a VM) and it is scanned every interval.
/// Two, because one such scan can be a fluke (a change in the instant
/// between the pass's scan and its start).
const MISSED_EVENT_STRIKES: u32 = 2;

pub(super) struct TargetRuntime {
    pub info: TargetInfo,
    /// Changed paths (with their sizes) not yet handed to a pass.
    pub pending: SizedPaths,
    pub pending_since: Option<SystemTime>,
    /// Paths of the pass in flight; back to pending if it fails.
    pub inflight: SizedPaths,
    pub inflight_since: Option<SystemTime>,
    last_event: Option<Instant>,
    /// When the current batch of pending changes began.
    first_event: Option<Instant>,
    /// When the next full pass is due.
    pub full_at: Instant,
    /// No pass before this (retry backoff).
    pub not_before: Instant,
    backoff: Duration,
    pub running: bool,
    /// The last pass failed in a way retrying cannot fix (the mass-delete
    /// guard refused): no pass until something changes (a local change, a
    /// rescan, a reload, `sync --now`).
    pub waiting_for_human: bool,
    /// The first full pass succeeded.
    pub first_done: bool,
    /// The target cannot be served here (the preflight's verdict, e.g. a
    /// crypt password missing): it does not hold up readiness.
    pub unusable: bool,
    /// No usable file events: scanned every interval.
    pub polling: bool,
    /// Something may have changed that no event named (events lost,
    /// switched to polling, `sync --now`): the next full pass is owed, and
    /// a stop scans the target whole.
    pub rescan: bool,
    pub full_seq_started: u64,
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

impl TargetRuntime {
    /// A target whose first full pass is due `now`.
    pub fn new(info: TargetInfo, polling: bool, now: Instant) -> TargetRuntime {
        TargetRuntime {
            info,
            pending: SizedPaths::default(),
            pending_since: None,
            inflight: SizedPaths::default(),
            inflight_since: None,
            last_event: None,
            first_event: None,
            full_at: now,
            not_before: now,
            backoff: FIRST_BACKOFF,
            running: false,
            waiting_for_human: false,
            first_done: false,
            unusable: false,
            polling,
            rescan: false,
            full_seq_started: 0,
            verify_next: false,
            routine_full: false,
            events_received: 0,
            probe: None,
            missed_strikes: 0,
        }
    }

    /// When the pending changes are due: once no new change came for a
    /// quarter of the debounce, and at the latest one debounce after the
    /// first of them, so a lone edit goes out quickly and a file that is
    /// written continuously still goes out every debounce.
    pub fn changes_due_at(&self, debounce: Duration, now: Instant) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        let quiet = debounce / 4;
        let settled = self.last_event.map_or(now, |ev| ev + quiet);
        let latest = self.first_event.map_or(now, |first| first + debounce);
        Some(settled.min(latest))
    }

    /// When this (idle) target next wants a pass.
    pub fn wake_at(&self, debounce: Duration, now: Instant) -> Instant {
        let at = match self.changes_due_at(debounce, now) {
            Some(due) => self.full_at.min(due),
            None => self.full_at,
        };
        at.max(self.not_before)
    }

    /// Whether an idle target wants a pass at `now`.
    pub fn is_due(&self, debounce: Duration, now: Instant) -> bool {
        !self.running
            && !self.waiting_for_human
            && now >= self.not_before
            && (now >= self.full_at
                || self
                    .changes_due_at(debounce, now)
                    .is_some_and(|due| now >= due))
    }

    /// A batch of changed paths arrived from the watcher.
    pub fn changed(&mut self, paths: Vec<(PathBuf, u64)>, now: Instant) {
        if self.pending.is_empty() {
            self.pending_since = Some(SystemTime::now());
            self.first_event = Some(now);
        }
        self.pending.extend(paths);
        self.last_event = Some(now);
        self.events_received += 1;
        self.missed_strikes = 0;
        self.waiting_for_human = false;
    }

    /// Scan the whole target now (events lost, switched to polling, `sync
    /// --now`): something may have changed, so a target waiting for a
    /// human gets another pass.
    pub fn full_pass_now(&mut self, now: Instant) {
        self.full_at = now;
        self.rescan = true;
        self.routine_full = false;
        self.waiting_for_human = false;
    }

    /// The spec was reloaded: a target waiting for a human gets another
    /// pass.
    pub fn reloaded(&mut self) {
        self.waiting_for_human = false;
    }

    /// `sync --now`: a full pass listing the remote, now, ignoring backoff.
    pub fn sync_now(&mut self, now: Instant) -> u64 {
        self.full_pass_now(now);
        self.not_before = now;
        self.verify_next = true;
        self.full_seq_started + 1
    }

    /// A new interval from a reload: re-base the next safety-net pass.
    pub fn set_interval(&mut self, interval: Duration, now: Instant) {
        if self.info.interval != interval {
            self.full_at = self.full_at.min(now + interval);
            self.info.interval = interval;
        }
    }

    /// Move pending into in flight and say what the pass covers.
    pub fn begin_pass(&mut self, full: bool) -> Scope {
        let taken = std::mem::take(&mut self.pending);
        self.probe = None;
        if full {
            let quiet = taken.is_empty() && self.inflight.is_empty();
            if std::mem::take(&mut self.routine_full)
                && quiet
                && self.first_done
                && !self.polling
                && self.info.writes_remote
            {
                self.probe = Some(self.events_received);
            }
        }
        self.first_event = None;
        self.inflight.extend(taken);
        self.inflight_since = min_time(self.inflight_since, self.pending_since.take());
        self.running = true;
        if full {
            self.rescan = false;
            self.full_seq_started += 1;
            // Remote changes only come from elsewhere for pull-only targets
            // (the lease keeps everyone else off the others): only those list
            // the remote every interval, so an idle daemon makes no requests.
            let verify = std::mem::take(&mut self.verify_next) || !self.info.writes_remote;
            Scope::Full { verify }
        } else {
            Scope::Paths(self.inflight.keys().cloned().collect())
        }
    }

    /// The pass ran; `all_ok` when no file failed.
    pub fn pass_ran(&mut self, full: bool, all_ok: bool, now: Instant) {
        self.running = false;
        self.inflight.clear();
        self.inflight_since = None;
        if full {
            self.full_at = now + self.info.interval;
            self.routine_full = true;
            self.first_done = true;
        }
        if all_ok {
            self.backoff = FIRST_BACKOFF;
        } else {
            // Retry soon with a full pass rather than waiting an interval.
            self.full_at = self.full_at.min(now + jittered(self.backoff));
            self.routine_full = false;
            self.backoff = self.backoff.saturating_mul(2).min(self.info.interval);
        }
    }

    /// The pass failed as a whole: its paths are pending again, and what
    /// happens next depends on `how`. Returns the backoff wait, if any.
    pub fn pass_failed(&mut self, how: Disposition, now: Instant) -> Option<Duration> {
        self.running = false;
        for (p, size) in std::mem::take(&mut self.inflight) {
            self.pending.insert_if_absent(p, size);
        }
        self.pending_since = min_time(self.pending_since, self.inflight_since.take());
        self.first_event = self.first_event.or(Some(now));
        match how {
            Disposition::Retry => {
                let wait = jittered(self.backoff);
                self.not_before = now + wait;
                self.backoff = self
                    .backoff
                    .saturating_mul(2)
                    .min(self.info.interval.max(FIRST_BACKOFF));
                Some(wait)
            }
            // Nothing went wrong with the target: run it again when due,
            // without waiting or growing the backoff.
            Disposition::Requeue => {
                self.not_before = now;
                None
            }
            // No retry loop: the same pass would fail the same way.
            Disposition::NeedsHuman | Disposition::Stop => {
                self.waiting_for_human = true;
                None
            }
        }
    }

    /// Whether a finished pass shows that file events are not delivered
    /// for this target: the reason to switch to polling, once the strikes
    /// are in.
    pub fn missed_events(&mut self, full: bool, out: &PassReport) -> Option<String> {
        let at_start = self.probe.take().filter(|_| full)?;
        let missed = out.uploaded + out.deleted_remote;
        if self.events_received != at_start || missed == 0 || !out.conflicts.is_empty() {
            return None;
        }
        self.missed_strikes += 1;
        if self.missed_strikes < MISSED_EVENT_STRIKES {
            tracing::warn!(
                target_name = %self.info.name,
                changes = missed,
                "the interval scan found local changes that no file event reported; \
                 if the next scan does too, this target switches to interval scans"
            );
            return None;
        }
        Some(format!(
            "{} interval scans in a row found local changes no file event reported: \
             this filesystem does not deliver file events (network, FUSE or VM shared folder?)",
            self.missed_strikes
        ))
    }

    /// Whether file events report this target's changes (it writes to the
    /// remote and is not polled).
    pub fn watched(&self) -> bool {
        self.info.writes_remote && !self.polling
    }

    /// Files that failed in a pass that otherwise ran: pending again (the
    /// stop's flush retries them and reports them if they never make it).
    pub fn requeue(&mut self, paths: Vec<PathBuf>) {
        if self.pending.is_empty() {
            self.pending_since = Some(SystemTime::now());
        }
        for p in paths {
            self.pending.insert_if_absent(p, 0);
        }
    }

    /// The write gate re-opened: a target held back by failed passes (fenced
    /// writes) runs again now, with its backoff reset. Returns whether it
    /// was held back.
    pub fn unfenced(&mut self, now: Instant) -> bool {
        let held = self.not_before > now || self.backoff > FIRST_BACKOFF;
        if held {
            self.not_before = self.not_before.min(now);
            if !self.routine_full {
                // The retry full pass of files that failed.
                self.full_at = self.full_at.min(now);
            }
            self.backoff = FIRST_BACKOFF;
        }
        held
    }

    /// Pending plus in-flight paths, sorted, once each.
    pub fn unflushed_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .pending
            .keys()
            .chain(self.inflight.keys())
            .cloned()
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// When the oldest change not yet on the remote was seen.
    pub fn oldest_pending(&self) -> Option<SystemTime> {
        min_time(self.pending_since, self.inflight_since)
    }
}

/// `d` scaled by a random factor in [0.5, 1]: targets that failed together
/// (a remote outage) do not all retry in the same instant.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..=1.0))
}

fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
