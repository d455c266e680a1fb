//! Staleness without trusting clocks: what this machine has seen, and since when.
//!
//! A lease held by someone else is stale only once *this machine* has seen
//! the same version (etag) of its lease object unchanged for longer than
//! its TTL, measured on `CLOCK_BOOTTIME` (monotonic, and unlike
//! `CLOCK_MONOTONIC` it keeps counting while the machine is suspended).
//! The first sighting of a version is persisted in the state dir, so a
//! refused `start` followed by another `start` after the TTL takes over.
//! Readings are only comparable within one boot, so the file also records
//! the boot id and is discarded after a reboot (which only ever delays a
//! takeover: losing observations is always the safe direction).
//!
//! Every lease reading of time goes through a [`Clock`]: boot time in
//! production, tokio's (pausable) clock in tests, so expiry and fencing are
//! tested on controlled time instead of wall-clock sleeps.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

const FILE: &str = "lease-observations.json";
/// Enough for every prefix of a spec plus their ancestors, many times over.
const MAX_ENTRIES: usize = 256;

/// Time since boot, including suspend.
pub fn boottime() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => Duration::new(
            u64::try_from(ts.tv_sec()).unwrap_or(0),
            u32::try_from(ts.tv_nsec()).unwrap_or(0),
        ),
        // CLOCK_BOOTTIME exists on every Linux since 2.6.39; std's monotonic
        // Instant is the closest fallback.
        Err(_) => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed()
        }
    }
}

/// The lease's source of time: a monotonic reading that only the lease
/// compares with itself (never with another machine's).
#[derive(Debug, Clone)]
pub struct Clock(Source);

#[derive(Debug, Clone)]
enum Source {
    Boot,
    Tokio {
        origin: tokio::time::Instant,
        base: Duration,
    },
}

impl Clock {
    /// `CLOCK_BOOTTIME` ([`boottime`]): what every command and the daemon use.
    pub fn boot() -> Clock {
        Clock(Source::Boot)
    }

    /// tokio's clock (paused and advanced by `tokio::time::pause` /
    /// `advance` in tests), reading like boot time from the moment it is made.
    pub fn tokio() -> Clock {
        Clock(Source::Tokio {
            origin: tokio::time::Instant::now(),
            base: boottime(),
        })
    }

    pub fn now(&self) -> Duration {
        match &self.0 {
            Source::Boot => boottime(),
            Source::Tokio { origin, base } => *base + origin.elapsed(),
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::boot()
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sighting {
    location: String,
    version: String,
    first_seen_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileData {
    boot_id: String,
    seen: VecDeque<Sighting>,
}

/// The verdict on a foreign lease version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Seen unchanged for `unchanged_for`; stale in `stale_in` if not renewed.
    Live {
        unchanged_for: Duration,
        stale_in: Duration,
    },
    /// Seen unchanged for longer than the TTL.
    Stale { unchanged_for: Duration },
}

/// The persisted sightings of one state dir.
#[derive(Debug)]
pub struct Observations {
    path: Option<PathBuf>,
    data: FileData,
    clock: Clock,
}

impl Observations {
    /// Load from `state_dir` (an unreadable or foreign-boot file starts
    /// empty); sightings are timed by `clock`.
    pub fn load(state_dir: &Path, clock: Clock) -> Observations {
        let path = state_dir.join(FILE);
        let current = boot_id();
        let data = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<FileData>(&b).ok())
            .filter(|d| d.boot_id == current)
            .unwrap_or_else(|| FileData {
                boot_id: current,
                seen: VecDeque::new(),
            });
        Observations {
            path: Some(path),
            data,
            clock,
        }
    }

    /// No sightings and no file (for a set that never judges staleness).
    pub fn none() -> Observations {
        Observations {
            path: None,
            data: FileData::default(),
            clock: Clock::boot(),
        }
    }

    /// Record seeing `version` of the lease at `location` now, and judge it
    /// against `ttl`.
    pub fn observe(&mut self, location: &str, version: &str, ttl: Duration) -> Staleness {
        let now = self.clock.now();
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let first = match self.data.seen.iter().position(|s| s.location == location) {
            Some(i) if self.data.seen[i].version == version => self.data.seen[i].first_seen_ms,
            found => {
                if let Some(i) = found {
                    self.data.seen.remove(i);
                }
                self.data.seen.push_back(Sighting {
                    location: location.to_string(),
                    version: version.to_string(),
                    first_seen_ms: now_ms,
                });
                while self.data.seen.len() > MAX_ENTRIES {
                    self.data.seen.pop_front();
                }
                now_ms
            }
        };
        let unchanged_for = Duration::from_millis(now_ms.saturating_sub(first));
        if unchanged_for > ttl {
            Staleness::Stale { unchanged_for }
        } else {
            Staleness::Live {
                unchanged_for,
                stale_in: ttl - unchanged_for,
            }
        }
    }

    /// Forget a location (after we took it over or it was released).
    pub fn forget(&mut self, location: &str) {
        self.data.seen.retain(|s| s.location != location);
    }

    /// Persist (best effort: a lost write only delays a future takeover).
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        match serde_json::to_vec(&self.data) {
            Ok(bytes) => {
                if let Err(e) = write_atomic(path, &bytes) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot save lease observations; a later takeover of a stale lease will wait longer");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode lease observations"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn same_version_ages_and_a_new_version_resets() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::tokio();
        let mut o = Observations::load(tmp.path(), clock.clone());
        let ttl = Duration::from_millis(100);
        assert!(matches!(o.observe("l", "e1", ttl), Staleness::Live { .. }));
        tokio::time::advance(ttl).await;
        // Exactly one TTL unchanged is not yet stale: only longer is.
        assert_eq!(
            o.observe("l", "e1", ttl),
            Staleness::Live {
                unchanged_for: ttl,
                stale_in: Duration::ZERO
            }
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        o.save();
        // The sighting survives a restart (same boot, same clock).
        let mut o = Observations::load(tmp.path(), clock);
        assert!(matches!(o.observe("l", "e1", ttl), Staleness::Stale { .. }));
        assert!(matches!(o.observe("l", "e2", ttl), Staleness::Live { .. }));
        assert!(matches!(
            o.observe("other", "e1", ttl),
            Staleness::Live { .. }
        ));
    }

    #[test]
    fn boottime_is_monotonic() {
        let a = boottime();
        let b = boottime();
        assert!(b >= a);
    }
}
