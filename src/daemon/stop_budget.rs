//! One stop budget: `daemon.flush_deadline` bounds the WHOLE stop, from the
//! moment the daemon is told to stop (SIGTERM, `coltecd stop`, `init`'s
//! command exiting, a lost lease) to the moment it releases the lease, so
//! the stop fits the container's grace period (docker: 10 s) even when the
//! remote hangs.
//!
//! The budget is sliced by priority, each phase ending at a fixed instant
//! so whatever an earlier phase leaves unused flows to the later ones:
//!
//! 1. drain the file events already delivered or queued (ends early; at
//!    most a quarter of the budget, 2 s),
//! 2. flush pending changes (the bulk),
//! 3. wind down a cancelled pass (upload aborts): [`StopBudget::wind_down_until`],
//! 4. deferred manifest writes and the workers (control socket drain):
//!    [`StopBudget::manifests_until`],
//! 5. lease release: [`StopBudget::end`].
//!
//! Each later phase keeps a reserve of about an eighth of the budget (capped),
//! so a flush against a hanging remote cannot starve the lease release.

use std::time::Duration;

use tokio::time::Instant;

/// Reserve for the lease release: an eighth of the budget, at most 2 s.
const RELEASE_CAP: Duration = Duration::from_secs(2);
/// Reserve for the deferred manifests (and joining the workers).
const MANIFESTS_CAP: Duration = Duration::from_secs(2);
/// Reserve for a cancelled pass to wind down (abort its uploads).
const WIND_DOWN_CAP: Duration = Duration::from_secs(1);
/// The event drain normally takes milliseconds; this bounds a stuck one.
const DRAIN_CAP: Duration = Duration::from_secs(2);

/// The whole stop's budget, started when the stop was noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StopBudget {
    start: Instant,
    total: Duration,
}

impl StopBudget {
    /// A stop of at most `total` starting now.
    pub fn starting_now(total: Duration) -> StopBudget {
        StopBudget::starting_at(Instant::now(), total)
    }

    pub fn starting_at(start: Instant, total: Duration) -> StopBudget {
        StopBudget { start, total }
    }

    pub fn total(&self) -> Duration {
        self.total
    }

    /// `start + offset`, saturating far in the future (a huge budget from
    /// the spec must not overflow).
    fn at(&self, offset: Duration) -> Instant {
        self.start
            .checked_add(offset)
            .unwrap_or_else(|| self.start + Duration::from_secs(86400 * 365))
    }

    /// When everything, lease release included, must be done.
    pub fn end(&self) -> Instant {
        self.at(self.total)
    }

    fn release_reserve(&self) -> Duration {
        (self.total / 8).min(RELEASE_CAP)
    }

    fn manifests_reserve(&self) -> Duration {
        (self.total / 8).min(MANIFESTS_CAP)
    }

    fn wind_down_reserve(&self) -> Duration {
        (self.total / 16).min(WIND_DOWN_CAP)
    }

    /// The end of the event drain.
    pub fn drain_until(&self) -> Instant {
        self.at((self.total / 4).min(DRAIN_CAP))
            .min(self.flush_until())
    }

    /// The end of the flush: no pass starts after it, the one in flight is
    /// cancelled.
    pub fn flush_until(&self) -> Instant {
        self.at(self
            .total
            .saturating_sub(self.release_reserve())
            .saturating_sub(self.manifests_reserve())
            .saturating_sub(self.wind_down_reserve()))
    }

    /// The end of the wind-down of a cancelled pass: a pass still running
    /// then is abandoned (its files are reported as not flushed).
    pub fn wind_down_until(&self) -> Instant {
        self.at(self
            .total
            .saturating_sub(self.release_reserve())
            .saturating_sub(self.manifests_reserve()))
    }

    /// The end of the deferred manifest writes and of the workers' stop.
    pub fn manifests_until(&self) -> Instant {
        self.at(self.total.saturating_sub(self.release_reserve()))
    }

    /// Time elapsed since the stop began.
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_ordered_inside_the_budget_and_reserve_time_for_the_release() {
        let start = Instant::now();
        for secs in [1, 2, 8, 9, 30, 300] {
            let b = StopBudget::starting_at(start, Duration::from_secs(secs));
            assert!(start < b.drain_until(), "{secs}");
            assert!(b.drain_until() <= b.flush_until(), "{secs}");
            assert!(b.flush_until() < b.wind_down_until(), "{secs}");
            assert!(b.wind_down_until() < b.manifests_until(), "{secs}");
            assert!(b.manifests_until() < b.end(), "{secs}");
            assert_eq!(b.end(), start + Duration::from_secs(secs));
        }
        // The default 8 s: the flush gets 5.5 s, the rest 2.5 s.
        let b = StopBudget::starting_at(start, Duration::from_secs(8));
        assert_eq!(b.flush_until() - start, Duration::from_millis(5500));
        assert_eq!(b.end() - b.manifests_until(), Duration::from_secs(1));
        // A long budget gives the flush nearly all of it.
        let b = StopBudget::starting_at(start, Duration::from_secs(300));
        assert_eq!(b.end() - b.flush_until(), Duration::from_secs(5));
    }
}
