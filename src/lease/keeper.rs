//! The keeper: renewal and fencing while the leases are held.
//!
//! [`LeaseSet::maintain`] renews every `renew_every` through the lease's own
//! operator. If renewals keep failing it closes the write gate at `last
//! successful renewal (send time) + TTL - TTL/4` ([`fence_margin`]), before
//! any contender could consider the lease stale; a later renewal that still
//! matches our etag proves nobody took over, the nested check is repeated
//! and the gate re-opens with a new generation. A changed object is a
//! takeover: the gate stays closed. [`while_held`] wraps a one-shot command
//! in acquire -> keep -> release.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::LeaseError;
use super::record::LeaseRecord;
use super::set::{HeldVersion, HoldState, LeaseSet, lock, op_timeout};
use super::store::CondError;
use super::{AcquireOptions, acquire};
use crate::remote::WriteGate;
use crate::spec::Spec;
use crate::state_dir::StateDir;

/// Acquire the leases, keep them renewed while `work` runs with the write
/// gate, then release them: the lease half of a one-shot command such as
/// `coltecd sync`, so a manual sync cannot collide with another container's
/// daemon. A takeover during the work closes the gate (the engine sees
/// `Fenced` on its next write) and is returned as the error once the work
/// has finished.
pub async fn while_held<T, Fut>(
    spec: &Spec,
    state_dir: &StateDir,
    opts: AcquireOptions,
    work: impl FnOnce(WriteGate) -> Fut,
) -> Result<T, LeaseError>
where
    Fut: Future<Output = T>,
{
    let set = acquire(spec, state_dir, opts).await?;
    let cancel = CancellationToken::new();
    let keeper = {
        let (set, cancel) = (set.clone(), cancel.clone());
        tokio::spawn(async move { set.maintain(cancel).await })
    };
    let out = work(set.gate()).await;
    cancel.cancel();
    let kept = match keeper.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "lease keeper failed");
            Ok(())
        }
    };
    set.release().await?;
    kept.map(|()| out)
}

/// What one renewal round found.
enum Round {
    /// Every prefix renewed (and re-verified if we had been fenced).
    Renewed,
    /// Some renewal failed for a reason that may pass; try again soon.
    Retry,
    /// Definitively lost.
    Lost(LeaseError),
}

/// The fencing margin: the gate closes this long before a contender could
/// consider the lease stale.
fn fence_margin(ttl: Duration) -> Duration {
    ttl / 4
}

impl LeaseSet {
    /// Renew loop (every `spec.lease.renew_every`) until `cancel`; on failure
    /// keeps retrying, closes the gate (fencing) before the lease could be
    /// considered stale elsewhere, re-acquires when possible and re-opens the
    /// gate (which bumps its generation so the engine reconciles before
    /// pushing). Returns `Ok(())` on cancel; `Err` only when the lease was
    /// definitively taken over by another holder (or a nested holder
    /// appeared while we were fenced). After `Err`, the gate stays closed;
    /// call [`LeaseSet::release`] to free the remaining prefixes.
    pub async fn maintain(&self, cancel: CancellationToken) -> Result<(), LeaseError> {
        if !self.inner.enabled || self.inner.prefixes.is_empty() {
            cancel.cancelled().await;
            return Ok(());
        }
        let renew_every = self.inner.renew_every;
        let tick = (renew_every / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_renew = self.now() + renew_every;
        let mut rounds: tokio::task::JoinSet<Round> = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                Some(done) = rounds.join_next(), if !rounds.is_empty() => {
                    match done {
                        Ok(Round::Renewed) => next_renew = self.now() + renew_every,
                        Ok(Round::Retry) => {
                            next_renew = self.now() + (renew_every / 2).max(Duration::from_millis(50));
                        }
                        Ok(Round::Lost(e)) => {
                            self.inner.gate.close(format!("lease lost: {e}"));
                            return Err(e);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "lease renewal task failed");
                            next_renew = self.now();
                        }
                    }
                }
                _ = ticker.tick() => {}
            }
            self.enforce_fence();
            if lock(&self.inner.holds)
                .iter()
                .all(|st| st.state == HoldState::Released)
            {
                // `release` ran: nothing left to renew.
                return Ok(());
            }
            if rounds.is_empty() && self.now() >= next_renew {
                let this = self.clone();
                rounds.spawn(async move { this.renew_round().await });
            }
        }
    }

    /// Close the gate once any held prefix went unrenewed for TTL - margin.
    fn enforce_fence(&self) {
        let deadline_after = self.inner.ttl.saturating_sub(fence_margin(self.inner.ttl));
        let now = self.now();
        let mut fenced = None;
        {
            let mut holds = lock(&self.inner.holds);
            for (leased, st) in self.inner.prefixes.iter().zip(holds.iter_mut()) {
                let expired = st
                    .last_ok
                    .is_none_or(|t| now.saturating_sub(t) >= deadline_after);
                if st.state == HoldState::Held && expired {
                    st.state = HoldState::Lost;
                    let secs = st.last_ok.map_or(0, |t| now.saturating_sub(t).as_secs());
                    st.detail = Some(format!(
                        "cannot renew for {secs}s; remote writes paused until the lease is re-verified"
                    ));
                    fenced = Some(leased.location.clone());
                }
            }
        }
        if let Some(loc) = fenced {
            tracing::error!(location = %loc, "lease lost: renewals failing; fencing all remote writes");
            self.inner
                .gate
                .close(format!("lease lost on {loc}: renewals failing"));
        }
    }

    async fn renew_round(&self) -> Round {
        let n = self.inner.prefixes.len();
        let results = futures::future::join_all((0..n).map(|i| self.renew_prefix(i))).await;
        let mut retry = false;
        for r in results {
            match r {
                Ok(true) => {}
                Ok(false) => retry = true,
                Err(e) => return Round::Lost(e),
            }
        }
        if retry {
            return Round::Retry;
        }
        if !self.inner.gate.is_open() {
            // We were fenced. The etags still match, so nobody took over our
            // prefixes; a nested holder may have judged us stale meanwhile.
            let t = op_timeout(self.inner.ttl);
            let mut markers = Ok(());
            for i in 0..n {
                markers = markers.and(self.write_markers(i, t).await);
            }
            if markers.is_err() {
                return Round::Retry;
            }
            match self.check_nested_all(t).await {
                Ok(()) => {}
                Err(e @ LeaseError::HeldElsewhere(_)) => {
                    self.save_observations();
                    return Round::Lost(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot re-verify nested prefixes yet");
                    return Round::Retry;
                }
            }
            self.save_observations();
            {
                let mut holds = lock(&self.inner.holds);
                for st in holds.iter_mut().filter(|st| !st.taken_over) {
                    st.state = HoldState::Held;
                    st.detail = None;
                }
            }
            tracing::warn!(
                "lease re-verified after a renewal gap; remote writes resume after reconciling"
            );
            self.inner.gate.open();
        }
        Round::Renewed
    }

    /// Renew prefix `i`. `Ok(true)` renewed, `Ok(false)` failed for now,
    /// `Err` taken over.
    async fn renew_prefix(&self, i: usize) -> Result<bool, LeaseError> {
        let leased = &self.inner.prefixes[i];
        let HeldVersion {
            etag,
            seq,
            acquired_at,
            taken_over,
        } = self.held_version(i);
        let Some(etag) = etag else {
            return Ok(false);
        };
        if taken_over || self.releasing() {
            return Ok(false);
        }
        let timeout = self
            .inner
            .renew_every
            .max(self.inner.ttl / 4)
            .max(Duration::from_millis(200));
        let sent = self.now();
        let rec = self.new_record(i, seq.saturating_add(1), &acquired_at);
        match leased
            .store
            .replace(&leased.key, &etag, rec.to_bytes(), timeout)
            .await
        {
            Ok(new) => {
                let mut holds = lock(&self.inner.holds);
                let st = &mut holds[i];
                st.etag = Some(new);
                st.seq = rec.seq;
                st.last_ok = Some(sent);
                st.holder = Some(rec);
                if st.state == HoldState::Held {
                    st.detail = None;
                }
                Ok(true)
            }
            Err(CondError::Failed(e)) => {
                tracing::warn!(location = %leased.location, error = %e, "lease renewal failed; retrying");
                let mut holds = lock(&self.inner.holds);
                if holds[i].state == HoldState::Lost {
                    holds[i].detail = Some(format!("lease lost: renewals failing: {e}"));
                }
                Ok(false)
            }
            Err(CondError::Lost) => self.renewal_lost_race(i, timeout).await,
        }
    }

    /// A renewal's `If-Match` failed: the object changed. Ours (a concurrent
    /// release, or an earlier ambiguous renewal that landed) means retry;
    /// anything else is a takeover, which closes the gate for good.
    async fn renewal_lost_race(&self, i: usize, timeout: Duration) -> Result<bool, LeaseError> {
        let leased = &self.inner.prefixes[i];
        let current = match leased.store.read(&leased.key, timeout).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(location = %leased.location, error = %e, "lease changed or unreadable; retrying");
                return Ok(false);
            }
        };
        let rec = current.as_ref().and_then(|(_, b)| LeaseRecord::parse(b));
        if rec
            .as_ref()
            .is_some_and(|r| self.identity().wrote(r) && r.released)
        {
            // Our own release (running concurrently) got there first.
            return Ok(false);
        }
        if self.releasing() {
            return Ok(false);
        }
        if let (Some((etag, _)), Some(r)) = (&current, &rec)
            && self.identity().wrote(r)
            && !r.released
        {
            // One of our earlier, ambiguous renewals landed. Adopt
            // it, but only a confirmed write moves the fence.
            let mut holds = lock(&self.inner.holds);
            holds[i].etag = Some(etag.clone());
            holds[i].seq = r.seq;
            return Ok(false);
        }
        let holder = match &rec {
            Some(r) if r.released => "nobody: it was released by another process".to_string(),
            Some(r) => r.describe_holder(),
            None if current.is_none() => "nobody: the lease object was deleted".to_string(),
            None => "unknown".to_string(),
        };
        tracing::error!(location = %leased.location, holder = %holder, "lease taken over");
        self.inner
            .gate
            .close(format!("lease on {} taken over", leased.location));
        let mut holds = lock(&self.inner.holds);
        let st = &mut holds[i];
        st.state = HoldState::Lost;
        st.taken_over = true;
        st.etag = None;
        st.holder = rec;
        st.detail = Some(format!("taken over by {holder}"));
        Err(LeaseError::TakenOver {
            location: leased.location.clone(),
            holder,
        })
    }
}
