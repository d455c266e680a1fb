//! The text of `coltecd status`: one line for the daemon, one for the
//! lease and each leased prefix, two or more per target; ages ("12 s ago")
//! and sizes ("5.0 KiB") in a short human form.

use std::fmt::Write as _;

use crate::escape::name as esc;

use super::{DaemonState, DaemonStatus, Health, PrefixLease, TargetStatus, WatchModeState};

impl DaemonStatus {
    /// The short human rendering of `coltecd status`.
    pub fn render_text(&self, now: u64) -> String {
        let mut out = String::new();
        self.render_header(&mut out, now);
        if self.state == DaemonState::Disabled {
            return out;
        }
        self.render_leases(&mut out);
        for t in &self.targets {
            render_target(&mut out, t, now);
        }
        for p in &self.problems {
            if !out.contains(p.as_str()) {
                let _ = writeln!(out, "problem: {}", esc(p));
            }
        }
        out
    }

    /// `coltecd <workspace>: <state> — <health>`.
    fn render_header(&self, out: &mut String, now: u64) {
        let state = match (self.state, self.pid) {
            (DaemonState::Running, Some(pid)) => {
                let up = self
                    .started_at
                    .map(|s| format!(", up {}", human_secs(now.saturating_sub(s))))
                    .unwrap_or_default();
                format!("running (pid {pid}{up})")
            }
            (DaemonState::Running, None) => "running".to_string(),
            (DaemonState::Stopped, _) => {
                format!(
                    "not running (last known state from {})",
                    ago(now, self.updated_at)
                )
            }
            (DaemonState::Disabled, _) => "disabled by COLTEC_DISABLED".to_string(),
        };
        let health = match self.health {
            Health::Healthy => "healthy",
            Health::Degraded => "DEGRADED",
            Health::NotRunning => "not running",
            Health::Disabled => "paused",
        };
        // "not running" already says it all; don't repeat it as the health.
        if self.health == Health::NotRunning {
            let _ = writeln!(out, "coltecd {}: {state}", esc(&self.workspace));
        } else {
            let _ = writeln!(out, "coltecd {}: {state} — {health}", esc(&self.workspace));
        }
    }

    /// `lease: held`, then one line per leased prefix.
    fn render_leases(&self, out: &mut String) {
        let lease = if self.state == DaemonState::Stopped {
            "not held (the daemon is not running)".to_string()
        } else if self.leases.writes_allowed {
            "held".to_string()
        } else {
            format!(
                "NOT held ({})",
                esc(self.leases.fenced_reason.as_deref().unwrap_or("unknown"))
            )
        };
        let _ = writeln!(out, "lease: {lease}");
        for lease in &self.leases.detail {
            let _ = writeln!(out, "  {}", lease_line(lease));
        }
    }
}

/// A target: where it syncs, then its state, conflicts and last error.
fn render_target(out: &mut String, t: &TargetStatus, now: u64) {
    let last = match t.last_success_at {
        Some(at) => format!("synced {}", ago(now, at)),
        None => "never synced".to_string(),
    };
    let mode = match t.watch.mode {
        WatchModeState::Events => "events",
        WatchModeState::Polling => "polling",
    };
    let watch = match &t.watch.reason {
        Some(r) => format!("{mode} ({})", esc(r)),
        None => mode.to_string(),
    };
    let _ = writeln!(
        out,
        "{} [{}] {} → {}",
        esc(&t.name),
        t.direction,
        esc(&t.local_path.display().to_string()),
        esc(&t.remote)
    );
    let _ = write!(out, "  {last}; watch: {watch}");
    if t.pending_files > 0 {
        let oldest = t
            .oldest_pending_at
            .map(|at| format!(", oldest {}", ago(now, at)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "; pending {} file(s), {}{oldest}",
            t.pending_files,
            human_bytes(t.pending_bytes)
        );
    }
    render_activity(out, t, now);
    out.push('\n');
    if t.conflicts_total > 0 {
        let _ = writeln!(
            out,
            "  conflicts: {} (latest: {})",
            t.conflicts_total,
            esc(t.conflicts.last().map(String::as_str).unwrap_or("-"))
        );
    }
    if let Some(s) = t.skipped.first() {
        let _ = writeln!(
            out,
            "  skipped: {} (e.g. {:?}: {})",
            t.skipped.len(),
            s.path,
            s.reason
        );
    }
    if t.undecryptable.count > 0 {
        let _ = writeln!(
            out,
            "  undecryptable: {} object name(s) do not decrypt with this target's password \
             and salt, left alone (e.g. {}): written with another password/salt or tool; \
             decrypt them with the right config or move them out of the prefix",
            t.undecryptable.count,
            esc(t
                .undecryptable
                .first
                .first()
                .map(String::as_str)
                .unwrap_or("-"))
        );
    }
    if let Some(err) = &t.last_error {
        let _ = writeln!(out, "  last error: {}", esc(err));
    }
}

/// What the target does now: transferring, checking, or its next check.
fn render_activity(out: &mut String, t: &TargetStatus, now: u64) {
    if t.pass_running {
        match &t.in_flight {
            Some(f) if f.files_planned > 0 => {
                let _ = write!(
                    out,
                    "; transferring {}/{} file(s), {}/{}",
                    f.files_done,
                    f.files_planned,
                    human_bytes(f.bytes_done),
                    human_bytes(f.bytes_planned)
                );
            }
            _ => {
                let _ = write!(out, "; checking now");
            }
        }
    } else if let Some(next) = t.next_check_at {
        let _ = write!(
            out,
            "; next check in {}",
            human_secs(next.saturating_sub(now))
        );
    }
}

/// One lease of the keeper's snapshot: where, held/lost, last renewal,
/// holder.
fn lease_line(l: &PrefixLease) -> String {
    let mut line = format!("{}: {}", esc(&l.location), l.state.as_str());
    if let Some(secs) = l.last_renewal_secs_ago {
        let _ = write!(line, ", renewed {} ago", human_secs(secs));
    }
    if let Some(h) = &l.holder {
        let _ = write!(line, ", holder {} ({})", esc(&h.host), esc(&h.container_id));
    }
    if let Some(d) = &l.detail {
        let _ = write!(line, " — {}", esc(d));
    }
    line
}

/// "12 s ago", "3 min ago".
pub fn ago(now: u64, then: u64) -> String {
    if then > now {
        return "just now".to_string();
    }
    format!("{} ago", human_secs(now - then))
}

/// A short, coarse duration for ages in `status`: "12 s", "4 min", "2 h",
/// "3 d". (humantime prints exact durations, "4m 12s": too much precision
/// for "renewed … ago" lines that change every second.)
pub fn human_secs(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// Bytes as `sync` prints them too (indicatif's binary units).
pub fn human_bytes(b: u64) -> String {
    indicatif::HumanBytes(b).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::sample;
    use super::super::*;
    #[test]
    fn healthy_renders_ages_and_pending() {
        let now = 1_000_000;
        let mut s = sample(now);
        s.evaluate(now);
        assert_eq!(s.health, Health::Healthy);
        let text = s.render_text(now);
        assert!(
            text.contains("running (pid 42, up 100 s) — healthy"),
            "{text}"
        );
        assert!(text.contains("synced 12 s ago"), "{text}");
        assert!(
            text.contains("pending 2 file(s), 5.00 KiB, oldest 1 s ago"),
            "{text}"
        );
        assert!(text.contains("next check in 48 s"), "{text}");
        assert!(
            text.contains("lease: held\n  s3://b/acme/widget/dev-a: held, renewed 3 s ago\n"),
            "{text}"
        );
    }

    #[test]
    fn stopped_and_disabled_exit_codes() {
        let now = 1_000_000;
        let s = sample(now).as_stopped(now + 5);
        assert_eq!(s.health.exit_status().code(), 3);
        assert!(
            s.render_text(now + 5)
                .contains("not running (last known state from 5 s ago)")
        );
        let mut d = sample(now);
        d.state = DaemonState::Disabled;
        d.evaluate(now);
        assert_eq!(d.health.exit_status().code(), 0);
    }
}
