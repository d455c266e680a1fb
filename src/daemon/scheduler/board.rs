//! The status board: the live [`DaemonStatus`] the scheduler writes and the
//! control socket and the status-file writer read.
//!
//! It sits between one writer and several readers, so it owns the lock; a
//! snapshot fills in what only exists at read time (the lease keeper's
//! view, in-flight progress, health as of now).

use std::sync::{Arc, Mutex, OnceLock};

use super::super::seam::{LeaseSeam, PassProgress};
use super::super::status::{DaemonStatus, StatusLeases, TargetStatus, WatchState};

/// The live status, shared by the scheduler (writer) and the control socket
/// and status-file writer (readers).
pub(crate) struct Board {
    inner: Mutex<DaemonStatus>,
    lease: OnceLock<Arc<dyn LeaseSeam>>,
    /// Per target, in board order.
    progress: Vec<Arc<PassProgress>>,
}

impl Board {
    pub fn new(initial: DaemonStatus) -> Board {
        let progress = initial
            .targets
            .iter()
            .map(|_| Arc::new(PassProgress::default()))
            .collect();
        Board {
            inner: Mutex::new(initial),
            lease: OnceLock::new(),
            progress,
        }
    }

    pub fn progress(&self, i: usize) -> Arc<PassProgress> {
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

    /// What the lease record carries for `coltecd fleet` (no lease data, so
    /// the keeper may call it while renewing).
    pub fn activity(&self) -> crate::lease::record::Activity {
        let s = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let ts = &s.targets;
        let max = |f: fn(&TargetStatus) -> Option<u64>| ts.iter().filter_map(f).max();
        let state = if ts.iter().any(|t| t.last_error.is_some()) {
            "degraded"
        } else if ts.iter().any(|t| t.pass_running) {
            "syncing"
        } else {
            "running"
        };
        crate::lease::record::Activity {
            last_local_change_at: max(|t| t.last_local_change_at.max(t.oldest_pending_at)),
            last_remote_change_at: max(|t| t.last_remote_change_at),
            pending_files: ts.iter().map(|t| t.pending_files).sum(),
            last_success_at: max(|t| t.last_success_at),
            started_at: s.started_at,
            daemon_state: state.to_string(),
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
            s.leases = StatusLeases {
                writes_allowed: gate.is_open(),
                fenced_reason: gate.check().err().map(|f| f.reason),
                renew_every_secs: s.leases.renew_every_secs,
                detail: lease.snapshot(),
            };
        }
        for (t, p) in s.targets.iter_mut().zip(&self.progress) {
            t.in_flight = t.pass_running.then(|| p.view());
        }
        let now = crate::clock::unix_now();
        s.updated_at = now;
        s.evaluate(now);
        s
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
        failing_since: None,
        pending_files: 0,
        pending_bytes: 0,
        oldest_pending_at: None,
        pass_running: false,
        in_flight: None,
        next_check_at: None,
        conflicts: Vec::new(),
        conflicts_total: 0,
        last_pass: None,
        skipped: Vec::new(),
        undecryptable: Default::default(),
        last_local_change_at: None,
        last_remote_change_at: None,
    }
}
