//! The lease: one writer per remote prefix.
//!
//! A container that writes a remote prefix (push-only and bidirectional
//! targets) must hold the lease on it; pull-only targets need none.
//!
//! # Protocol
//!
//! The lease of prefix `P` is the JSON object `P/.coltec/lease.json`
//! ([`LeaseRecord`]): a random lease id, host, container id, leased, pid,
//! version, workspace, acquired/renewed timestamps (for humans), the TTL,
//! and a per-process session + sequence number.
//!
//! - **Create** with `If-None-Match: *`; **renew / take over** only with
//!   `If-Match: <etag of the version read>`. A 412, a 409
//!   `ConditionalRequestConflict` or a 404 on `If-Match` means "lost the
//!   race": re-read and decide again. After an ambiguous failure (response
//!   lost, request retried) the writer recognises its own write by its
//!   session id.
//! - **Release** (graceful stop, after the final flush) never relies on a
//!   conditional DELETE (R2 documents none): the record is first marked
//!   `released` with `If-Match`, then deleted with a plain DELETE.
//! - **All or nothing**: every leased prefix of a spec is taken, or what was
//!   taken is released again and the start is refused (exit 4).
//!
//! # Expiry without trusting clocks
//!
//! A contender considers another holder's lease stale only after it has
//! observed the *same version (etag)* of the lease object unchanged for
//! longer than the TTL (the larger of the record's and its own) on its own
//! `CLOCK_BOOTTIME`. Sightings are kept in the state dir
//! (`lease-observations.json`), so a refused `start` followed by another
//! `start` after the TTL takes over. The first sighting always counts as
//! fresh: a crashed holder's lease is taken over no sooner than one TTL after
//! this machine first saw it. Timestamps in the record are never compared.
//!
//! # Own restart
//!
//! The lease id lives in the state dir (`lease-id`). A record carrying our
//! lease id *and* our container id is ours: the same container restarting
//! reclaims it at once. A different container with the same host name has
//! another state dir (hence another id) and another container id. Two live
//! daemons sharing one state dir are stopped earlier by the state dir lock.
//!
//! # Fencing
//!
//! The holder renews every `renew_every` through its own operator (never the
//! sync engine's limiters or queues). If renewals keep failing, it closes
//! the write gate ([`WriteGate`](crate::remote::WriteGate)) at `last successful renewal (send time) +
//! TTL - TTL/4` on `CLOCK_BOOTTIME`, i.e. before any contender (whose clock
//! started no earlier than that write) can consider the lease stale. It
//! keeps retrying; a renewal that still matches the last etag proves nobody
//! took over, the nested check is repeated, and the gate re-opens with a new
//! generation so the engine reconciles before pushing. If the object changed
//! under us, the lease was taken over: the gate stays closed for good.
//! Limits: the margin (TTL/4) must cover the engine's in-flight writes
//! (it aborts them on [`WriteGate::closed`](crate::remote::WriteGate::closed)) and the renewal loop's tick;
//! a process frozen for longer than that (SIGSTOP, a paused VM) may still
//! have a request in flight when it wakes. S3 offers no fencing token that
//! could close that window completely.
//!
//! # Nested prefixes
//!
//! `a/b` and `a/b/c` conflict too. After creating its lease, a holder writes
//! a marker `A/.coltec/nested/<rel>@<lease id>.json` under every ancestor
//! `A`, then reads the lease object of every ancestor (bounded by depth),
//! then LISTs its own `.coltec/nested/` and reads the lease of each
//! descendant found there. Of two racing nested acquirers at least one sees
//! the other (each writes before it reads); whoever sees a live holder
//! releases what it took and refuses.
//!
//! # Backends
//!
//! At acquire, a probe under `P/.coltec/` checks that the server enforces
//! `If-None-Match` and `If-Match` (some S3-compatible servers silently
//! ignore them); one that does not is refused unless the spec says
//! `lease: off`. `local` remotes get the same protocol on the filesystem:
//! create by `link(2)` (fails if the name exists), compare-and-rename under an
//! `flock`ed sidecar lock file, the version being a hash of the content.
//!
//! # Layout
//!
//! - `set`: [`LeaseSet`], the prefixes it leases and our hold on each
//!   ([`HoldState`], [`LeaseStatus`] for `status`).
//! - `acquire`: [`acquire`], all or nothing.
//! - `nested`: the nested-prefix markers (name encoding and decoding) and
//!   the nested check.
//! - `keeper`: renewal and fencing ([`LeaseSet::maintain`]), [`while_held`].
//! - `release`: [`LeaseSet::release`].
//! - `inspect`: [`inspect`] and [`LeaseView`] for `lease show`.
//! - `takeover`: [`break_leases`] for `lease break --force`.
//! - `identity`: who we are (lease id, container id, session).
//! - [`record`]: the lease JSON.
//! - [`observe`]: boot-time sightings, the staleness rule, and the
//!   [`Clock`] every reading of time goes through (tests pass a paused one).
//! - [`store`]: conditional create/replace over S3 and local directories.
//! - [`error`]: [`LeaseError`] and the refusal message.
//! - `timing_tests`: the expiry and fencing rules on controlled time.

mod acquire;
pub mod error;
mod identity;
mod inspect;
mod keeper;
mod nested;
pub mod observe;
pub mod record;
mod release;
mod set;
pub mod store;
mod takeover;
#[cfg(test)]
mod timing_tests;

pub use acquire::{acquire, acquire_with_clock};
pub use error::{HeldBy, LeaseError};
pub use inspect::{LeaseView, LeaseViewState, inspect};
pub use keeper::while_held;
pub use observe::Clock;
pub use record::LeaseRecord;
pub use set::{HoldState, LeaseSet, LeaseStatus};
pub use takeover::{Broken, break_leases};

use crate::spec::{Spec, Target};

/// Which targets to lease and how.
#[derive(Debug, Clone, Default)]
pub struct AcquireOptions {
    /// Only these targets (by name); `None` or empty = every target that
    /// writes. An unknown name is a usage error.
    pub only: Option<Vec<String>>,
    /// Take over leases held elsewhere without waiting (`lease break --force`).
    pub force: bool,
}

/// The targets that need a lease, after `--only`. A target the preflight
/// finds unusable is not served, so it is not leased either (for a crypt
/// target without its password, where its lease lives is not even known).
fn select_targets<'a>(
    spec: &'a Spec,
    only: Option<&[String]>,
) -> Result<Vec<&'a Target>, LeaseError> {
    // `None` and an empty list both mean every target, as for `--only`.
    Ok(spec
        .select(only.unwrap_or_default())?
        .into_iter()
        .filter(|t| t.direction.writes_remote())
        .filter(|t| crate::preflight::check_target(t).is_ok())
        .collect())
}
