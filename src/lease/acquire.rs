//! Acquire: take every leased prefix of a spec, all or nothing.
//!
//! Per prefix: read the lease object, then create it (`If-None-Match`) or
//! replace it (`If-Match` on the version read) when it is free, released,
//! our own (a restart), stale as observed here, or `--force`d. A lost race
//! re-reads. After all prefixes are taken, the nested markers are written
//! and the nested check runs; any failure releases what was taken.

use std::time::Duration;

use super::error::{HeldBy, LeaseError};
use super::observe::{Clock, Staleness};
use super::record::{LeaseRecord, RECORD_FORMAT};
use super::set::{LeaseSet, lock, op_timeout};
use super::store::CondError;
use super::{AcquireOptions, select_targets};
use crate::spec::Spec;
use crate::state_dir::StateDir;

/// Leases the prefix of every target whose direction writes the remote
/// (push-only, bidirectional), all-or-nothing. With `spec.lease.enabled ==
/// false`: returns a `LeaseSet` holding nothing, logs a loud warning, and its
/// snapshot says leasing is off. The caller holds the state dir lock.
pub async fn acquire(
    spec: &Spec,
    state_dir: &StateDir,
    opts: AcquireOptions,
) -> Result<LeaseSet, LeaseError> {
    acquire_with_clock(spec, state_dir, opts, Clock::boot()).await
}

/// [`acquire`] with every reading of time (staleness of others' leases,
/// renewal instants, fencing) taken from `clock`: tests pass
/// [`Clock::tokio`] and run on paused time.
pub async fn acquire_with_clock(
    spec: &Spec,
    state_dir: &StateDir,
    opts: AcquireOptions,
    clock: Clock,
) -> Result<LeaseSet, LeaseError> {
    let targets = select_targets(spec, opts.only.as_deref())?;
    if !spec.lease.enabled {
        tracing::warn!(
            "LEASING IS OFF (`lease: off` in the spec): nothing stops another container from writing the same remote prefixes and overwriting this one's state"
        );
        return Ok(LeaseSet::off(spec, &targets));
    }
    let set = LeaseSet::prepare(spec, state_dir, &targets, clock)?;
    set.probe_backends().await?;
    let mut taken = Vec::new();
    let t = op_timeout(set.inner.ttl);
    for i in 0..set.inner.prefixes.len() {
        match set.acquire_prefix(i, opts.force).await {
            Ok(_) => taken.push(i),
            Err(e) => {
                set.release_prefixes(&taken).await;
                set.save_observations();
                return Err(e);
            }
        }
    }
    for &i in &taken {
        if let Err(e) = set.write_markers(i, t).await {
            set.release_prefixes(&taken).await;
            return Err(e);
        }
    }
    if let Err(e) = set.check_nested_all(t).await {
        set.release_prefixes(&taken).await;
        set.save_observations();
        return Err(e);
    }
    set.save_observations();
    for s in &set.inner.prefixes {
        tracing::info!(location = %s.location, targets = ?s.targets, "lease acquired");
    }
    Ok(set)
}

/// What to do with the lease record found at a prefix we want.
enum Found {
    /// Our own write whose response was lost: we hold it already.
    OwnWrite,
    /// Free to replace.
    Replace,
}

impl LeaseSet {
    /// Refuse a backend that does not enforce conditional writes (one probe
    /// per S3 remote).
    async fn probe_backends(&self) -> Result<(), LeaseError> {
        let mut seen: Vec<String> = Vec::new();
        for leased in &self.inner.prefixes {
            if leased.store.is_local() || seen.contains(&leased.remote) {
                continue;
            }
            seen.push(leased.remote.clone());
            leased
                .store
                .probe(&leased.remote, &leased.prefix, op_timeout(self.inner.ttl))
                .await?;
        }
        Ok(())
    }

    /// Take prefix `i`: create it, reclaim our own, take over a released or
    /// stale one, or (with `force`) any. Returns the previous record.
    pub(super) async fn acquire_prefix(
        &self,
        i: usize,
        force: bool,
    ) -> Result<Option<LeaseRecord>, LeaseError> {
        let leased = &self.inner.prefixes[i];
        let t = op_timeout(self.inner.ttl);
        // Any write of ours found later landed after this instant.
        let first_sent = self.now();
        for _ in 0..8 {
            let sent = self.now();
            let acquired_at = crate::clock::rfc3339_now();
            let current = leased.store.read(&leased.key, t).await?;
            let (result, previous) = match current {
                None => {
                    let rec = self.new_record(i, 0, &acquired_at);
                    let created = leased.store.create(&leased.key, rec.to_bytes(), t).await;
                    (created.map(|e| (e, rec)), None)
                }
                Some((etag, bytes)) => {
                    let prev = LeaseRecord::parse(&bytes);
                    if let (Found::OwnWrite, Some(r)) =
                        (self.judge_found(i, &etag, prev.as_ref(), force)?, &prev)
                    {
                        // Our own write whose response we lost.
                        self.set_held(i, etag, r.clone(), Some(first_sent));
                        return Ok(None);
                    }
                    let seq = prev.as_ref().map_or(0, |r| r.seq.saturating_add(1));
                    let rec = self.new_record(i, seq, &acquired_at);
                    let replaced = leased
                        .store
                        .replace(&leased.key, &etag, rec.to_bytes(), t)
                        .await;
                    (replaced.map(|e| (e, rec)), prev)
                }
            };
            match result {
                Ok((etag, rec)) => {
                    self.set_held(i, etag, rec, Some(sent));
                    lock(&self.inner.observations).forget(&leased.location);
                    return Ok(previous);
                }
                Err(CondError::Lost) => continue,
                Err(CondError::Failed(e)) => {
                    self.undo_ambiguous_write(i).await;
                    return Err(e);
                }
            }
        }
        Err(LeaseError::Contended {
            location: leased.location.clone(),
        })
    }

    /// Whether the record found at prefix `i` may be replaced: released,
    /// this container's own (a restart), stale as observed here, or `force`.
    /// A live holder is refused with [`LeaseError::HeldElsewhere`].
    fn judge_found(
        &self,
        i: usize,
        etag: &str,
        prev: Option<&LeaseRecord>,
        force: bool,
    ) -> Result<Found, LeaseError> {
        let leased = &self.inner.prefixes[i];
        if let Some(r) = prev {
            crate::version::check_format(
                format!("the lease at {}", leased.location),
                r.format,
                RECORD_FORMAT,
            )?;
        }
        match prev {
            Some(r) if self.identity().wrote(r) && !r.released => return Ok(Found::OwnWrite),
            Some(r) if r.released => {}
            Some(r) if self.identity().owns(r) => {
                tracing::info!(location = %leased.location, "reclaiming this container's own lease after a restart");
            }
            _ if force => {}
            _ => match self.judge(&leased.location, etag, prev) {
                (Staleness::Stale { unchanged_for }, _) => {
                    tracing::warn!(
                        location = %leased.location,
                        holder = %prev.map_or_else(|| "unknown".to_string(), LeaseRecord::describe_holder),
                        unchanged_secs = unchanged_for.as_secs(),
                        "taking over a stale lease"
                    );
                }
                (
                    Staleness::Live {
                        unchanged_for,
                        stale_in,
                    },
                    ttl,
                ) => {
                    return Err(LeaseError::HeldElsewhere(Box::new(HeldBy {
                        wanted: leased.location.clone(),
                        held: leased.location.clone(),
                        record: prev.cloned(),
                        unchanged_for,
                        stale_in,
                        ttl,
                    })));
                }
            },
        }
        Ok(Found::Replace)
    }

    /// After a failed create/replace whose request may still have landed:
    /// if the object turns out to be ours, release it rather than leave it
    /// to go stale (best effort; the remote is likely unreachable).
    pub(super) async fn undo_ambiguous_write(&self, i: usize) {
        let leased = &self.inner.prefixes[i];
        let t = op_timeout(self.inner.ttl).min(Duration::from_secs(5));
        if let Ok(Some((etag, bytes))) = leased.store.read(&leased.key, t).await
            && let Some(r) = LeaseRecord::parse(&bytes).filter(|r| self.identity().wrote(r))
        {
            self.set_held(i, etag, r, None);
            self.release_prefixes(&[i]).await;
        }
    }
}
