//! Process-wide budgets shared by every target: bandwidth per direction and
//! a request rate.
//!
//! `bwlimit` in rclone is one budget shared by all transfers; coltecd runs
//! many targets in one process, so the budget is per process: the smallest
//! `up`/`down` limit configured on any target becomes the process budget for
//! that direction (a per-target value can only tighten it, never add to it).
//! The request-rate limit (`daemon.max_requests_per_second`) protects a
//! bucket shared by many workspaces from throttling (local-directory remotes
//! are not rate-limited: there is no bucket to protect). The lease keeper uses
//! its own operator and never waits behind these limiters.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::error::SyncError;
use crate::spec::Spec;

/// Shared limiters of one [`super::Engine`].
pub(crate) struct Limits {
    up: Option<Bucket>,
    down: Option<Bucket>,
    requests: Option<DefaultDirectRateLimiter>,
}

struct Bucket {
    limiter: DefaultDirectRateLimiter,
    /// Largest number of bytes one `until_n_ready` call may ask for.
    burst: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Dir {
    Up,
    Down,
}

impl Bucket {
    fn new(bytes_per_sec: u64) -> Option<Bucket> {
        let rate = u32::try_from(bytes_per_sec).unwrap_or(u32::MAX);
        let rate = NonZeroU32::new(rate)?;
        // A burst of a tenth of a second (at least 64 KiB, at most the rate)
        // keeps a transfer within a few percent of the limit: a full
        // second's burst would let the first second through for free.
        let burst = (rate.get() / 10).max(64 * 1024).min(rate.get());
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(Bucket {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            burst: burst.get(),
        })
    }
}

impl Limits {
    pub(crate) fn from_spec(spec: &Spec) -> Limits {
        let up = spec.targets.iter().filter_map(|t| t.bwlimit.up).min();
        let down = spec.targets.iter().filter_map(|t| t.bwlimit.down).min();
        let requests = NonZeroU32::new(spec.daemon.max_requests_per_second)
            .map(|r| RateLimiter::direct(Quota::per_second(r)));
        Limits {
            up: up.and_then(|b| Bucket::new(b.get())),
            down: down.and_then(|b| Bucket::new(b.get())),
            requests,
        }
    }

    /// Wait for one request slot.
    pub(crate) async fn request(&self, cancel: &CancellationToken) -> Result<(), SyncError> {
        if let Some(l) = &self.requests {
            tokio::select! {
                _ = l.until_ready() => {}
                _ = cancel.cancelled() => return Err(SyncError::Cancelled),
            }
        }
        Ok(())
    }

    /// Wait until `n` bytes may move in direction `dir`.
    pub(crate) async fn bytes(
        &self,
        dir: Dir,
        n: usize,
        cancel: &CancellationToken,
    ) -> Result<(), SyncError> {
        let bucket = match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        };
        let Some(b) = bucket else { return Ok(()) };
        let mut left = u64::try_from(n).unwrap_or(u64::MAX);
        while left > 0 {
            let take = left.min(u64::from(b.burst));
            left -= take;
            let Some(cells) = NonZeroU32::new(u32::try_from(take).unwrap_or(b.burst)) else {
                break;
            };
            tokio::select! {
                // `take` never exceeds the burst, so capacity is always sufficient.
                _ = b.limiter.until_n_ready(cells) => {}
                _ = cancel.cancelled() => return Err(SyncError::Cancelled),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelled_waits_return_promptly() {
        let up = Bucket::new(1).unwrap();
        let limits = Limits {
            up: Some(up),
            down: None,
            requests: None,
        };
        let cancel = CancellationToken::new();
        // The first byte uses the burst; the next would wait a second.
        limits.bytes(Dir::Up, 1, &cancel).await.unwrap();
        cancel.cancel();
        assert!(matches!(
            limits.bytes(Dir::Up, 1, &cancel).await,
            Err(SyncError::Cancelled)
        ));
        // No budget in the other direction: never waits.
        limits.bytes(Dir::Down, 1 << 30, &cancel).await.unwrap();
    }
}
