//! The spec-wide settings: `lease` (ttl, renewal), `safety` (the delete
//! guard, trash retention) and `daemon` (state/log dirs, debounce, flush
//! deadline, watch mode, request rate). Defaults come from
//! [`crate::spec::defaults`].

use std::time::Duration;

use super::Resolver;
use super::values::fmt_duration;
use crate::spec::defaults::*;
use crate::spec::model::*;
use crate::spec::raw::*;

impl Resolver<'_> {
    pub(super) fn lease(&mut self, raw: Option<&RawLease>) -> LeaseSettings {
        let defaults = LeaseSettings {
            enabled: true,
            ttl: DEFAULT_LEASE_TTL,
            renew_every: DEFAULT_LEASE_RENEW_EVERY,
        };
        if matches!(
            raw,
            Some(RawLease::Switch(false))
                | Some(RawLease::Settings(RawLeaseSettings {
                    enabled: Some(false),
                    ..
                }))
        ) {
            self.warn(
                "persistence.lease",
                "the lease is off: nothing stops a second container from writing the same remote prefixes",
                "turn it off only for a backend without conditional writes, and make sure no two containers share {org}/{project}/{env}",
            );
        }
        let s = match raw {
            None => return defaults,
            Some(RawLease::Switch(enabled)) => {
                return LeaseSettings {
                    enabled: *enabled,
                    ..defaults
                };
            }
            Some(RawLease::Settings(s)) => s,
        };
        let ttl = self.duration("persistence.lease.ttl", s.ttl.as_ref(), defaults.ttl);
        let ttl = if ttl < MIN_LEASE_TTL {
            self.err(
                "persistence.lease.ttl",
                format!(
                    "{} is below the minimum of {}",
                    fmt_duration(ttl),
                    fmt_duration(MIN_LEASE_TTL)
                ),
                "use `ttl: 60s` (the default) or more",
            );
            defaults.ttl
        } else if ttl > MAX_LEASE_TTL {
            self.err(
                "persistence.lease.ttl",
                format!(
                    "{} is above the maximum of {}",
                    fmt_duration(ttl),
                    fmt_duration(MAX_LEASE_TTL)
                ),
                "use `ttl: 60s` (the default); a long ttl keeps a crashed container's prefixes locked that long",
            );
            defaults.ttl
        } else {
            ttl
        };
        let renew_default = if s.ttl.is_some() {
            ttl / 4
        } else {
            defaults.renew_every
        };
        let renew_every = self.duration(
            "persistence.lease.renew_every",
            s.renew_every.as_ref(),
            renew_default,
        );
        // `renew_every < ttl / 2`, written so that no value can overflow.
        let renew_every = if renew_every < MIN_LEASE_RENEW_EVERY || renew_every >= ttl / 2 {
            self.err(
                "persistence.lease.renew_every",
                format!(
                    "{} must be at least {} and less than half of ttl ({})",
                    fmt_duration(renew_every),
                    fmt_duration(MIN_LEASE_RENEW_EVERY),
                    fmt_duration(ttl)
                ),
                "renew at most every ttl/4 (e.g. `ttl: 60s`, `renew_every: 15s`) so a missed renewal does not lose the lease",
            );
            renew_default
        } else {
            renew_every
        };
        LeaseSettings {
            enabled: s.enabled.unwrap_or(true),
            ttl,
            renew_every,
        }
    }

    pub(super) fn safety(&mut self, raw: Option<&RawSafety>) -> SafetySettings {
        let empty = RawSafety::default();
        let s = raw.unwrap_or(&empty);
        let percent = s
            .mass_delete_max_percent
            .unwrap_or(DEFAULT_MASS_DELETE_MAX_PERCENT);
        if !(0.0..=100.0).contains(&percent) {
            self.err(
                "persistence.safety.mass_delete_max_percent",
                format!("{percent} is not a percentage"),
                "use a number from 0 to 100 (default 25)",
            );
        }
        let max_files = s
            .mass_delete_max_files
            .unwrap_or(DEFAULT_MASS_DELETE_MAX_FILES);
        if max_files > MAX_MASS_DELETE_MAX_FILES {
            self.err(
                "persistence.safety.mass_delete_max_files",
                format!("{max_files} is above the maximum of {MAX_MASS_DELETE_MAX_FILES}"),
                "use a number of files from 0 up (default 50); `mass_delete_max_percent` is the other half of the guard",
            );
        }
        SafetySettings {
            mass_delete_max_files: max_files.min(MAX_MASS_DELETE_MAX_FILES),
            mass_delete_max_fraction: if percent.is_finite() {
                percent.clamp(0.0, 100.0) / 100.0
            } else {
                DEFAULT_MASS_DELETE_MAX_PERCENT / 100.0
            },
            trash_retention: self.duration_in(
                "persistence.safety.trash_retention",
                s.trash_retention.as_ref(),
                DEFAULT_TRASH_RETENTION,
                (Duration::ZERO, MAX_TRASH_RETENTION),
            ),
        }
    }

    pub(super) fn daemon(&mut self, raw: Option<&RawDaemon>) -> DaemonSettings {
        let empty = RawDaemon::default();
        let d = raw.unwrap_or(&empty);
        let state_dir = d
            .state_dir
            .as_ref()
            .and_then(|p| self.local_path("persistence.daemon.state_dir", p));
        let log_dir = d
            .log_dir
            .as_ref()
            .and_then(|p| self.local_path("persistence.daemon.log_dir", p))
            .unwrap_or_else(|| self.spec_dir.join("logs"));
        let flush_deadline = self.duration_in(
            "persistence.daemon.flush_deadline",
            d.flush_deadline.as_ref(),
            DEFAULT_FLUSH_DEADLINE,
            (MIN_FLUSH_DEADLINE, MAX_FLUSH_DEADLINE),
        );
        if flush_deadline >= DOCKER_STOP_GRACE {
            self.warn(
                "persistence.daemon.flush_deadline",
                format!(
                    "{} is the budget of the whole stop (final flush, manifest writes, lease release) and does not fit docker's default stop grace period of 10s: the stop may be cut off by SIGKILL",
                    fmt_duration(flush_deadline)
                ),
                "lower it (the default 8s fits), or raise the container's stop timeout above it",
            );
        }
        let rps = d
            .max_requests_per_second
            .unwrap_or(DEFAULT_MAX_REQUESTS_PER_SECOND);
        if rps == 0 || rps > MAX_REQUESTS_PER_SECOND {
            self.err(
                "persistence.daemon.max_requests_per_second",
                if rps == 0 {
                    "must be at least 1".to_string()
                } else {
                    format!("{rps} is above the maximum of {MAX_REQUESTS_PER_SECOND}")
                },
                "use the default 1000, or lower it when many workspaces share a bucket and it throttles",
            );
        }
        DaemonSettings {
            state_dir,
            log_dir,
            debounce: self.duration_in(
                "persistence.daemon.debounce",
                d.debounce.as_ref(),
                DEFAULT_DEBOUNCE,
                (Duration::ZERO, MAX_DEBOUNCE),
            ),
            flush_deadline,
            watch: match d.watch.unwrap_or(RawWatch::Auto) {
                RawWatch::Auto => WatchMode::Auto,
                RawWatch::Poll => WatchMode::Poll,
            },
            max_requests_per_second: rps.clamp(1, MAX_REQUESTS_PER_SECOND),
        }
    }
}
