//! Health: what makes a status "degraded" and the sentences that say why
//! (`problems`): a pass failing (since when), a lease renewal overdue, the
//! write gate closed, a stale target, each with what is pending; and, for a
//! daemon that stopped on an error, why and what it never pushed.

use std::path::PathBuf;

use super::{
    DaemonState, DaemonStatus, Health, PrefixLeaseState, Source, TargetStatus, ago, human_secs,
};

/// A target counts as stale when its last success is older than this many
/// intervals (plus the debounce): it should have synced several times by then.
const STALE_INTERVALS: u32 = 3;

/// A held lease's renewal is overdue (the renewals fail) once the last one
/// is older than `renew_every` plus this share of it, at least
/// [`RENEWAL_GRACE_MIN_SECS`]: a slow but working renewal never trips it.
const RENEWAL_GRACE_DIVISOR: u64 = 4;
const RENEWAL_GRACE_MIN_SECS: u64 = 3;

/// At most this many paths are named in a problem sentence.
const PATHS_NAMED: usize = 5;

/// `a, b, c and 4 more`.
pub(crate) fn name_paths(paths: &[PathBuf]) -> String {
    let mut out: Vec<String> = paths
        .iter()
        .take(PATHS_NAMED)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > PATHS_NAMED {
        out.push(format!("and {} more", paths.len() - PATHS_NAMED));
    }
    out.join(", ")
}
impl DaemonStatus {
    /// Recompute `health`, `problems` and `uptime_secs` from the rest, as of `now`.
    pub fn evaluate(&mut self, now: u64) {
        self.uptime_secs = match (self.state, self.started_at) {
            (DaemonState::Running, Some(s)) => Some(now.saturating_sub(s)),
            _ => None,
        };
        let mut problems = Vec::new();
        match self.state {
            DaemonState::Disabled => {
                self.health = Health::Disabled;
                self.problems = problems;
                return;
            }
            DaemonState::Stopped => {
                problems.push("the daemon is not running".to_string());
                if let Some(stop) = &self.stop {
                    problems.push(format!(
                        "it stopped with exit code {}: {}",
                        stop.exit_code, stop.reason
                    ));
                    for u in stop.unpushed.iter().filter(|u| !u.paths.is_empty()) {
                        problems.push(format!(
                            "{}: {} local change(s) were NOT pushed and exist only on this disk: \
                             {}; the next start keeps them as conflict copies",
                            u.target,
                            u.paths.len(),
                            name_paths(&u.paths)
                        ));
                    }
                }
                self.health = Health::NotRunning;
                self.problems = problems;
                return;
            }
            DaemonState::Running => {}
        }
        let pending = self.pending_summary(now);
        if !self.leases.writes_allowed {
            problems.push(format!(
                "remote writes are paused (lease not held): {}{pending}",
                self.leases
                    .fenced_reason
                    .as_deref()
                    .unwrap_or("unknown reason")
            ));
        } else if let Some(p) = self.overdue_renewal() {
            problems.push(format!("{p}{pending}"));
        }
        for t in &self.targets {
            if let Some(err) = &t.last_error {
                let since = t
                    .failing_since
                    .map(|at| format!(" (failing since {})", ago(now, at)))
                    .unwrap_or_default();
                problems.push(format!(
                    "{}{since}: {err}{}",
                    t.name,
                    target_pending(t, now)
                ));
            }
            let stale_after = t.interval_secs.saturating_mul(u64::from(STALE_INTERVALS));
            let reference = t.last_success_at.or(self.started_at);
            if let Some(at) = reference
                && now.saturating_sub(at) > stale_after
                && !t.pass_running
            {
                problems.push(format!(
                    "{}: no successful sync for {} (interval {})",
                    t.name,
                    ago(now, at),
                    human_secs(t.interval_secs)
                ));
            }
        }
        self.health = if problems.is_empty() {
            Health::Healthy
        } else {
            Health::Degraded
        };
        self.problems = problems;
    }

    /// A held lease whose last renewal is overdue: renewals are failing
    /// (the remote is unreachable or refuses them) though writes are not
    /// fenced yet.
    fn overdue_renewal(&self) -> Option<String> {
        let every = self.leases.renew_every_secs?;
        let grace = (every / RENEWAL_GRACE_DIVISOR).max(RENEWAL_GRACE_MIN_SECS);
        let late = self
            .leases
            .detail
            .iter()
            .filter(|l| l.state == PrefixLeaseState::Held)
            .filter_map(|l| l.last_renewal_secs_ago.map(|a| (a, l)))
            .filter(|(a, _)| *a > every.saturating_add(grace))
            .max_by_key(|(a, _)| *a)?;
        let (secs, lease) = late;
        Some(format!(
            "lease renewals failing on {} since {} ago (last renewed {} ago, every {}): the remote \
             is unreachable or refuses them; remote writes pause if this goes on",
            lease.location,
            human_secs(secs.saturating_sub(every)),
            human_secs(secs),
            human_secs(every)
        ))
    }

    /// `; 2 file(s) pending, oldest 35 s ago` over every target, or "".
    fn pending_summary(&self, now: u64) -> String {
        let files: u64 = self.targets.iter().map(|t| t.pending_files).sum();
        if files == 0 {
            return String::new();
        }
        let oldest = self
            .targets
            .iter()
            .filter_map(|t| t.oldest_pending_at)
            .min();
        pending_text(files, oldest, now)
    }

    /// The last status a daemon wrote, re-labelled as not running.
    pub fn as_stopped(mut self, now: u64) -> DaemonStatus {
        self.state = DaemonState::Stopped;
        self.source = Source::File;
        self.pid = None;
        for t in &mut self.targets {
            t.pass_running = false;
            t.in_flight = None;
            t.next_check_at = None;
        }
        self.evaluate(now);
        self
    }
}

/// `; 2 file(s) pending, oldest 35 s ago`, or "" when nothing is pending.
fn pending_text(files: u64, oldest: Option<u64>, now: u64) -> String {
    if files == 0 {
        return String::new();
    }
    match oldest {
        Some(at) => format!("; {files} file(s) pending, oldest {}", ago(now, at)),
        None => format!("; {files} file(s) pending"),
    }
}

fn target_pending(t: &TargetStatus, now: u64) -> String {
    pending_text(t.pending_files, t.oldest_pending_at, now)
}
