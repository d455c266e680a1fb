//! The lease: one writer per remote prefix.
//!
//! A container that writes a remote prefix (push-only and bidirectional
//! targets) must hold the lease on it; pull-only targets need none.
//!
//! # Protocol
//!
//! The lease of prefix `P` is the JSON object `P/.coltec/lease.json`
//! ([`LeaseRecord`]): a random lease id, host, container id, slot, pid,
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
//! the write gate ([`WriteGate`]) at `last successful renewal (send time) +
//! TTL - TTL/4` on `CLOCK_BOOTTIME`, i.e. before any contender (whose clock
//! started no earlier than that write) can consider the lease stale. It
//! keeps retrying; a renewal that still matches the last etag proves nobody
//! took over, the nested check is repeated, and the gate re-opens with a new
//! generation so the engine reconciles before pushing. If the object changed
//! under us, the lease was taken over: the gate stays closed for good.
//! Limits: the margin (TTL/4) must cover the engine's in-flight writes
//! (it aborts them on [`WriteGate::closed`]) and the renewal loop's tick;
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
//! - [`record`]: the lease JSON, nested markers, our identity.
//! - [`observe`]: boot-time sightings and the staleness rule.
//! - [`store`]: conditional create/replace over S3 and local directories.
//! - [`error`]: [`LeaseError`] and the refusal message.

pub mod error;
pub mod observe;
pub mod record;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use error::{HeldBy, LeaseError};
use observe::{Observations, Staleness, boottime};
pub use record::LeaseRecord;
use record::{Identity, NestedMarker, RECORD_FORMAT, now_rfc3339};
use store::{CondError, Prefix, Store};

use crate::remote::{GateController, WriteGate, gate};
use crate::spec::{Spec, Target};
use crate::state_dir::StateDir;

/// Which targets to lease and how.
#[derive(Debug, Clone, Default)]
pub struct AcquireOptions {
    /// Only these targets (by name); `None` or empty = every target that
    /// writes. An unknown name is a usage error.
    pub only: Option<Vec<String>>,
    /// Take over leases held elsewhere without waiting (`lease break --force`).
    pub force: bool,
}

/// What [`LeaseSet::snapshot`] reports per leased prefix.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseStatus {
    /// Target names writing this prefix.
    pub targets: Vec<String>,
    pub location: String,
    pub state: LeaseState,
    /// Seconds since the last successful renewal was sent.
    pub last_renewal_secs_ago: Option<u64>,
    /// Our lease id (not a secret).
    pub lease_id: Option<String>,
    /// The current holder as last read (ours, or whoever took it over).
    pub holder: Option<LeaseRecord>,
    /// Why the lease is lost, or other context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Held,
    Lost,
    Released,
    Off,
}

/// One leased prefix.
struct Slot {
    targets: Vec<String>,
    remote: String,
    store: Store,
    prefix: Prefix,
    location: String,
    key: Prefix,
    /// Ancestors shorter than this are never touched (a local remote's
    /// root: nothing is written above it, e.g. into `$HOME` or `/`).
    hard_floor: usize,
    /// Ancestors shorter than this may be forbidden to us (an S3 token
    /// scoped to the remote's `path_prefix`): access denied there is
    /// tolerated with a warning instead of failing the acquisition.
    soft_floor: usize,
}

impl Slot {
    /// The enclosing prefixes this slot checks and marks, nearest first.
    fn ancestors(&self) -> Vec<Prefix> {
        self.prefix
            .ancestors()
            .into_iter()
            .filter(|a| a.0.len() >= self.hard_floor)
            .collect()
    }

    /// Whether a failure at ancestor `a` may be skipped.
    fn tolerable(&self, a: &Prefix, e: &LeaseError) -> bool {
        a.0.len() < self.soft_floor && e.is_permission_denied()
    }
}

/// (hard, soft) floors of a target's ancestors, see [`Slot`].
fn floors(remote: &crate::spec::RemoteSpec, prefix: &Prefix) -> (usize, usize) {
    use crate::spec::RemoteKind;
    match &remote.kind {
        RemoteKind::Local(l) => {
            let root = Store::prefix_of(&crate::spec::Location::Local {
                dir: l.root.clone(),
            });
            let hard = if prefix.0.starts_with(&root.0) {
                root.0.len()
            } else {
                // An absolute remote_path outside the remote's root: only
                // its parent directory is shared ground.
                prefix.0.len().saturating_sub(1)
            };
            (hard, hard)
        }
        RemoteKind::S3(s3) => (
            0,
            s3.path_prefix.split('/').filter(|s| !s.is_empty()).count(),
        ),
        RemoteKind::Crypt(_) => (0, 0),
    }
}

#[derive(Debug, Clone)]
struct SlotState {
    state: LeaseState,
    /// Set once the object changed under us: never renew again.
    taken_over: bool,
    etag: Option<String>,
    seq: u64,
    acquired_at: String,
    /// Boot-time send instant of the last confirmed write.
    last_ok: Option<Duration>,
    holder: Option<LeaseRecord>,
    detail: Option<String>,
}

struct Inner {
    enabled: bool,
    identity: Option<Identity>,
    workspace: String,
    ttl: Duration,
    renew_every: Duration,
    slots: Vec<Slot>,
    states: Mutex<Vec<SlotState>>,
    observations: Mutex<Observations>,
    gate: GateController,
    /// Set when `release` starts: renewals stop and a vanished object is
    /// our own doing, not a takeover.
    releasing: std::sync::atomic::AtomicBool,
}

/// The leases this process holds; cheap to clone.
#[derive(Clone)]
pub struct LeaseSet {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Timeout of one lease request during acquire/release.
fn op_timeout(ttl: Duration) -> Duration {
    (ttl / 2).clamp(Duration::from_secs(5), Duration::from_secs(30))
}

/// The fencing margin: the gate closes this long before a contender could
/// consider the lease stale.
fn fence_margin(ttl: Duration) -> Duration {
    ttl / 4
}

/// Leases the prefix of every target whose direction writes the remote
/// (push-only, bidirectional), all-or-nothing. With `spec.lease.enabled ==
/// false`: returns a `LeaseSet` holding nothing, logs a loud warning, and its
/// snapshot says leasing is off. The caller holds the state dir lock.
pub async fn acquire(
    spec: &Spec,
    state_dir: &StateDir,
    opts: AcquireOptions,
) -> Result<LeaseSet, LeaseError> {
    let targets = select_targets(spec, opts.only.as_deref())?;
    if !spec.lease.enabled {
        tracing::warn!(
            "LEASING IS OFF (`lease: off` in the spec): nothing stops another container from writing the same remote prefixes and overwriting this one's state"
        );
        return Ok(LeaseSet::off(spec, &targets));
    }
    let set = LeaseSet::prepare(spec, state_dir, &targets)?;
    set.probe_backends().await?;
    let mut taken = Vec::new();
    let t = op_timeout(set.inner.ttl);
    for i in 0..set.inner.slots.len() {
        match set.acquire_slot(i, opts.force).await {
            Ok(_) => taken.push(i),
            Err(e) => {
                set.release_slots(&taken).await;
                set.save_observations();
                return Err(e);
            }
        }
    }
    for &i in &taken {
        if let Err(e) = set.write_markers(i, t).await {
            set.release_slots(&taken).await;
            return Err(e);
        }
    }
    if let Err(e) = set.check_nested_all(t).await {
        set.release_slots(&taken).await;
        set.save_observations();
        return Err(e);
    }
    set.save_observations();
    for s in &set.inner.slots {
        tracing::info!(location = %s.location, targets = ?s.targets, "lease acquired");
    }
    Ok(set)
}

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

/// A lease taken over by `lease break --force`.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    pub location: String,
    /// Who held it (`None`: nobody held it, or the object was unreadable).
    pub previous: Option<LeaseRecord>,
}

/// Take over the leases of the selected targets whoever holds them, then
/// release them so the next `start` acquires at once. The previous holder's
/// next renewal fails and fences it for good.
pub async fn break_leases(
    spec: &Spec,
    state_dir: &StateDir,
    only: Option<&[String]>,
) -> Result<Vec<Broken>, LeaseError> {
    let targets = select_targets(spec, only)?;
    let set = LeaseSet::prepare(spec, state_dir, &targets)?;
    let mut out = Vec::new();
    for i in 0..set.inner.slots.len() {
        let previous = set.acquire_slot(i, true).await?;
        set.release_slots(&[i]).await;
        let previous = previous.filter(|p| !p.released);
        if let Some(p) = &previous {
            tracing::warn!(location = %set.inner.slots[i].location, holder = %p.describe_holder(), "lease broken");
        }
        out.push(Broken {
            location: set.inner.slots[i].location.clone(),
            previous,
        });
    }
    set.save_observations();
    Ok(out)
}

/// What `lease show` prints per prefix.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub targets: Vec<String>,
    pub location: String,
    /// `free`, `mine` (held by this container's state dir), `held`, `stale`,
    /// `released` or `off`.
    pub state: &'static str,
    pub holder: Option<LeaseRecord>,
    /// How long this machine has seen the current version unchanged.
    pub unchanged_for_secs: Option<u64>,
    /// When it would be considered stale here if not renewed.
    pub stale_in_secs: Option<u64>,
}

/// Read the leases of the selected targets (no writes except the local
/// sightings file, which makes repeated `lease show` a staleness clock).
pub async fn inspect(
    spec: &Spec,
    state_dir: &StateDir,
    only: Option<&[String]>,
) -> Result<Vec<LeaseView>, LeaseError> {
    let targets = select_targets(spec, only)?;
    if !spec.lease.enabled {
        return Ok(LeaseSet::off(spec, &targets)
            .inner
            .slots
            .iter()
            .map(|s| LeaseView {
                targets: s.targets.clone(),
                location: s.location.clone(),
                state: "off",
                holder: None,
                unchanged_for_secs: None,
                stale_in_secs: None,
            })
            .collect());
    }
    let set = LeaseSet::prepare(spec, state_dir, &targets)?;
    let t = op_timeout(set.inner.ttl);
    let mut out = Vec::new();
    for slot in &set.inner.slots {
        let cur = slot.store.read(&slot.key, t).await?;
        let mut view = LeaseView {
            targets: slot.targets.clone(),
            location: slot.location.clone(),
            state: "free",
            holder: None,
            unchanged_for_secs: None,
            stale_in_secs: None,
        };
        if let Some((etag, bytes)) = cur {
            let rec = LeaseRecord::parse(&bytes);
            let ttl = rec
                .as_ref()
                .map_or(set.inner.ttl, |r| r.ttl().max(set.inner.ttl));
            let verdict = lock(&set.inner.observations).observe(&slot.location, &etag, ttl);
            view.state = match &rec {
                Some(r) if r.released => "released",
                Some(r) if set.identity().owns(r) => "mine",
                _ => match verdict {
                    Staleness::Live { .. } => "held",
                    Staleness::Stale { .. } => "stale",
                },
            };
            match verdict {
                Staleness::Live {
                    unchanged_for,
                    stale_in,
                } => {
                    view.unchanged_for_secs = Some(unchanged_for.as_secs());
                    view.stale_in_secs = Some(stale_in.as_secs());
                }
                Staleness::Stale { unchanged_for } => {
                    view.unchanged_for_secs = Some(unchanged_for.as_secs());
                    view.stale_in_secs = Some(0);
                }
            }
            view.holder = rec;
        }
        out.push(view);
    }
    set.save_observations();
    Ok(out)
}

/// The targets that need a lease, after `--only`.
fn select_targets<'a>(
    spec: &'a Spec,
    only: Option<&[String]>,
) -> Result<Vec<&'a Target>, LeaseError> {
    // `None` and an empty list both mean every target, as for `--only`.
    Ok(spec
        .select(only.unwrap_or_default())?
        .into_iter()
        .filter(|t| t.direction.writes_remote())
        .collect())
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

impl LeaseSet {
    fn off(spec: &Spec, targets: &[&Target]) -> LeaseSet {
        let mut by_loc: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in targets {
            by_loc
                .entry(t.location().to_string())
                .or_default()
                .push(t.name.clone());
        }
        let slots = by_loc
            .into_iter()
            .map(|(location, targets)| Slot {
                targets,
                remote: String::new(),
                store: Store::Local,
                prefix: Prefix(Vec::new()),
                location,
                key: Prefix(Vec::new()),
                hard_floor: 0,
                soft_floor: 0,
            })
            .collect::<Vec<_>>();
        let states = slots
            .iter()
            .map(|_| SlotState {
                state: LeaseState::Off,
                taken_over: false,
                etag: None,
                seq: 0,
                acquired_at: String::new(),
                last_ok: None,
                holder: None,
                detail: Some("leasing is off in the spec (`lease: off`)".into()),
            })
            .collect();
        LeaseSet {
            inner: Arc::new(Inner {
                enabled: false,
                identity: None,
                workspace: spec.workspace.slug(),
                ttl: spec.lease.ttl,
                renew_every: spec.lease.renew_every,
                slots,
                states: Mutex::new(states),
                observations: Mutex::new(Observations::none()),
                gate: gate().0,
                releasing: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn prepare(
        spec: &Spec,
        state_dir: &StateDir,
        targets: &[&Target],
    ) -> Result<LeaseSet, LeaseError> {
        state_dir.ensure().map_err(|e| LeaseError::StateDir {
            path: state_dir.path().to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        let identity = Identity::load_or_create(state_dir.path())?;
        let mut slots: Vec<Slot> = Vec::new();
        for t in targets {
            // A crypt target leases where its ciphertext lives.
            let (remote, location) = crate::remote::crypt::physical(&t.remote, &t.location())?;
            let store = Store::for_location(&remote, &location)?;
            let prefix = Store::prefix_of(&location);
            let display = store.display(&prefix);
            if let Some(s) = slots.iter_mut().find(|s| s.location == display) {
                s.targets.push(t.name.clone());
                continue;
            }
            let (hard_floor, soft_floor) = floors(&remote, &prefix);
            slots.push(Slot {
                targets: vec![t.name.clone()],
                remote: t.remote_name.clone(),
                key: prefix.child(&[".coltec", "lease.json"]),
                store,
                prefix,
                location: display,
                hard_floor,
                soft_floor,
            });
        }
        let ttl = spec.lease.ttl.max(Duration::from_millis(100));
        let renew_every = spec
            .lease
            .renew_every
            .clamp(Duration::from_millis(10), ttl / 3);
        let states = slots
            .iter()
            .map(|_| SlotState {
                state: LeaseState::Released,
                taken_over: false,
                etag: None,
                seq: 0,
                acquired_at: String::new(),
                last_ok: None,
                holder: None,
                detail: None,
            })
            .collect();
        Ok(LeaseSet {
            inner: Arc::new(Inner {
                enabled: true,
                identity: Some(identity),
                workspace: spec.workspace.slug(),
                ttl,
                renew_every,
                slots,
                states: Mutex::new(states),
                observations: Mutex::new(Observations::load(state_dir.path())),
                gate: gate().0,
                releasing: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    fn identity(&self) -> &Identity {
        // Only `off` sets have no identity, and they never reach the protocol.
        static NOBODY: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        self.inner.identity.as_ref().unwrap_or_else(|| {
            NOBODY.get_or_init(|| Identity {
                lease_id: String::new(),
                host: String::new(),
                container_id: String::new(),
                devcontainer_id: None,
                slot: None,
                pid: 0,
                session: String::new(),
            })
        })
    }

    fn releasing(&self) -> bool {
        self.inner
            .releasing
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn save_observations(&self) {
        lock(&self.inner.observations).save();
    }

    /// The write gate for the sync engine: closed while the lease cannot be proven.
    pub fn gate(&self) -> WriteGate {
        self.inner.gate.subscribe()
    }

    /// Whether leasing is on for this set.
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Per-prefix state, for `status`.
    pub fn snapshot(&self) -> Vec<LeaseStatus> {
        let now = boottime();
        let states = lock(&self.inner.states);
        self.inner
            .slots
            .iter()
            .zip(states.iter())
            .map(|(slot, st)| LeaseStatus {
                targets: slot.targets.clone(),
                location: slot.location.clone(),
                state: st.state,
                last_renewal_secs_ago: st.last_ok.map(|t| now.saturating_sub(t).as_secs()),
                lease_id: self.inner.identity.as_ref().map(|i| i.lease_id.clone()),
                holder: st.holder.clone(),
                detail: st.detail.clone(),
            })
            .collect()
    }

    async fn probe_backends(&self) -> Result<(), LeaseError> {
        let mut seen: Vec<String> = Vec::new();
        for slot in &self.inner.slots {
            if slot.store.is_local() || seen.contains(&slot.remote) {
                continue;
            }
            seen.push(slot.remote.clone());
            slot.store
                .probe(&slot.remote, &slot.prefix, op_timeout(self.inner.ttl))
                .await?;
        }
        Ok(())
    }

    fn new_record(&self, i: usize, seq: u64, acquired_at: &str) -> LeaseRecord {
        self.identity().record(
            &self.inner.workspace,
            &self.inner.slots[i].location,
            self.inner.ttl,
            acquired_at,
            seq,
        )
    }

    /// Take slot `i`: create it, reclaim our own, take over a released or
    /// stale one, or (with `force`) any. Returns the previous record.
    async fn acquire_slot(&self, i: usize, force: bool) -> Result<Option<LeaseRecord>, LeaseError> {
        let slot = &self.inner.slots[i];
        let t = op_timeout(self.inner.ttl);
        // Any write of ours found later landed after this instant.
        let first_sent = boottime();
        for _ in 0..8 {
            let sent = boottime();
            let acquired_at = now_rfc3339();
            let current = slot.store.read(&slot.key, t).await?;
            let (result, previous) = match current {
                None => {
                    let rec = self.new_record(i, 0, &acquired_at);
                    (
                        slot.store
                            .create(&slot.key, rec.to_bytes(), t)
                            .await
                            .map(|e| (e, rec)),
                        None,
                    )
                }
                Some((etag, bytes)) => {
                    let prev = LeaseRecord::parse(&bytes);
                    let seq = prev.as_ref().map_or(0, |r| r.seq.saturating_add(1));
                    match &prev {
                        // Our own write whose response we lost.
                        Some(r) if self.identity().wrote(r) && !r.released => {
                            self.set_held(i, etag, r.clone(), Some(first_sent));
                            return Ok(None);
                        }
                        Some(r) if r.released => {}
                        Some(r) if self.identity().owns(r) => {
                            tracing::info!(location = %slot.location, "reclaiming this container's own lease after a restart");
                        }
                        _ if force => {}
                        _ => {
                            let ttl = prev
                                .as_ref()
                                .map_or(self.inner.ttl, |r| r.ttl().max(self.inner.ttl));
                            match lock(&self.inner.observations).observe(&slot.location, &etag, ttl)
                            {
                                Staleness::Stale { unchanged_for } => {
                                    tracing::warn!(
                                        location = %slot.location,
                                        holder = %prev.as_ref().map_or_else(|| "unknown".to_string(), LeaseRecord::describe_holder),
                                        unchanged_secs = unchanged_for.as_secs(),
                                        "taking over a stale lease"
                                    );
                                }
                                Staleness::Live {
                                    unchanged_for,
                                    stale_in,
                                } => {
                                    return Err(LeaseError::HeldElsewhere(Box::new(HeldBy {
                                        wanted: slot.location.clone(),
                                        held: slot.location.clone(),
                                        record: prev,
                                        unchanged_for,
                                        stale_in,
                                        ttl,
                                    })));
                                }
                            }
                        }
                    }
                    let rec = self.new_record(i, seq, &acquired_at);
                    (
                        slot.store
                            .replace(&slot.key, &etag, rec.to_bytes(), t)
                            .await
                            .map(|e| (e, rec)),
                        prev,
                    )
                }
            };
            match result {
                Ok((etag, rec)) => {
                    self.set_held(i, etag, rec, Some(sent));
                    lock(&self.inner.observations).forget(&slot.location);
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
            location: slot.location.clone(),
        })
    }

    /// After a failed create/replace whose request may still have landed:
    /// if the object turns out to be ours, release it rather than leave it
    /// to go stale (best effort; the remote is likely unreachable).
    async fn undo_ambiguous_write(&self, i: usize) {
        let slot = &self.inner.slots[i];
        let t = op_timeout(self.inner.ttl).min(Duration::from_secs(5));
        if let Ok(Some((etag, bytes))) = slot.store.read(&slot.key, t).await
            && let Some(r) = LeaseRecord::parse(&bytes).filter(|r| self.identity().wrote(r))
        {
            self.set_held(i, etag, r, None);
            self.release_slots(&[i]).await;
        }
    }

    fn set_held(&self, i: usize, etag: String, rec: LeaseRecord, sent: Option<Duration>) {
        let mut states = lock(&self.inner.states);
        let st = &mut states[i];
        st.state = LeaseState::Held;
        st.taken_over = false;
        st.etag = Some(etag);
        st.seq = rec.seq;
        st.acquired_at = rec.acquired_at.clone();
        if sent.is_some() {
            st.last_ok = sent;
        }
        st.holder = Some(rec);
        st.detail = None;
    }

    /// Markers under every ancestor's `.coltec/nested/`.
    async fn write_markers(&self, i: usize, t: Duration) -> Result<(), LeaseError> {
        let slot = &self.inner.slots[i];
        let id = &self.identity().lease_id;
        for anc in slot.ancestors() {
            let name = format!(
                "{}@{id}.json",
                slot.prefix.marker_name(&anc).trim_end_matches(".json")
            );
            let marker = NestedMarker {
                format: RECORD_FORMAT,
                segments: slot.prefix.0.clone(),
                location: slot.location.clone(),
                lease_id: id.clone(),
            };
            let body = serde_json::to_vec_pretty(&marker).unwrap_or_default();
            match slot
                .store
                .put(&anc.child(&[".coltec", "nested", &name]), body, t)
                .await
            {
                Err(e) if slot.tolerable(&anc, &e) => {
                    tracing::warn!(location = %slot.store.display(&anc), error = %e, "cannot mark this enclosing prefix (outside the remote's path_prefix); a holder there will not see this lease");
                }
                other => other?,
            }
        }
        Ok(())
    }

    async fn delete_markers(&self, i: usize, t: Duration) {
        let slot = &self.inner.slots[i];
        let id = &self.identity().lease_id;
        for anc in slot.ancestors() {
            let name = format!(
                "{}@{id}.json",
                slot.prefix.marker_name(&anc).trim_end_matches(".json")
            );
            if let Err(e) = slot
                .store
                .delete(&anc.child(&[".coltec", "nested", &name]), t)
                .await
            {
                tracing::debug!(error = %e, "cannot delete a nested-prefix marker");
            }
        }
    }

    /// The nested check for every slot: any live holder of an enclosing or
    /// nested prefix is a conflict.
    async fn check_nested_all(&self, t: Duration) -> Result<(), LeaseError> {
        for i in 0..self.inner.slots.len() {
            self.check_nested(i, t).await?;
        }
        Ok(())
    }

    async fn check_nested(&self, i: usize, t: Duration) -> Result<(), LeaseError> {
        let slot = &self.inner.slots[i];
        let ours: Vec<&Prefix> = self.inner.slots.iter().map(|s| &s.prefix).collect();
        // Enclosing prefixes: one read each, bounded by depth.
        for anc in slot.ancestors() {
            if ours.contains(&&anc) {
                continue;
            }
            match self.check_foreign(slot, &anc, t).await {
                Err(e) if slot.tolerable(&anc, &e) => {
                    tracing::warn!(location = %slot.store.display(&anc), error = %e, "cannot check for a lease on this enclosing prefix (outside the remote's path_prefix)");
                }
                other => other?,
            }
        }
        // Nested prefixes: one LIST of our own marker folder.
        let names = slot
            .store
            .list(&slot.prefix.child(&[".coltec", "nested"]), t)
            .await?;
        let mut descendants: Vec<Prefix> = Vec::new();
        for name in names {
            let Some(rel) = decode_marker(&name) else {
                continue;
            };
            let mut segs = slot.prefix.0.clone();
            segs.extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_string));
            let d = Prefix(segs);
            if d.is_strictly_inside(&slot.prefix)
                && !ours.contains(&&d)
                && !descendants.contains(&d)
            {
                descendants.push(d);
            }
        }
        for d in descendants {
            self.check_foreign(slot, &d, t).await?;
        }
        Ok(())
    }

    /// Fail if `other` (an ancestor or descendant of `slot`) is held live by
    /// someone else.
    async fn check_foreign(
        &self,
        slot: &Slot,
        other: &Prefix,
        t: Duration,
    ) -> Result<(), LeaseError> {
        let key = other.child(&[".coltec", "lease.json"]);
        let Some((etag, bytes)) = slot.store.read(&key, t).await? else {
            return Ok(());
        };
        let rec = LeaseRecord::parse(&bytes);
        if let Some(r) = &rec
            && (r.released || self.identity().owns(r))
        {
            return Ok(());
        }
        let held = slot.store.display(other);
        let ttl = rec
            .as_ref()
            .map_or(self.inner.ttl, |r| r.ttl().max(self.inner.ttl));
        match lock(&self.inner.observations).observe(&held, &etag, ttl) {
            Staleness::Stale { unchanged_for } => {
                tracing::warn!(location = %held, unchanged_secs = unchanged_for.as_secs(), "ignoring a stale lease on an overlapping prefix");
                Ok(())
            }
            Staleness::Live {
                unchanged_for,
                stale_in,
            } => Err(LeaseError::HeldElsewhere(Box::new(HeldBy {
                wanted: slot.location.clone(),
                held,
                record: rec,
                unchanged_for,
                stale_in,
                ttl,
            }))),
        }
    }

    /// Release slots we hold: mark released with `If-Match`, then plain
    /// delete, then remove our markers. Best effort: a failure only means
    /// the lease goes stale after its TTL.
    async fn release_slots(&self, which: &[usize]) {
        let t = op_timeout(self.inner.ttl);
        for &i in which {
            let slot = &self.inner.slots[i];
            let (etag, seq, acquired_at, taken_over) = {
                let st = &lock(&self.inner.states)[i];
                (
                    st.etag.clone(),
                    st.seq,
                    st.acquired_at.clone(),
                    st.taken_over,
                )
            };
            if let (Some(etag), false) = (etag, taken_over) {
                let (mut etag, mut seq) = (etag, seq);
                for _ in 0..4 {
                    let mut rec = self.new_record(i, seq.saturating_add(1), &acquired_at);
                    rec.released = true;
                    match slot
                        .store
                        .replace(&slot.key, &etag, rec.to_bytes(), t)
                        .await
                    {
                        Ok(_) => {
                            if let Err(e) = slot.store.delete_lease(&slot.key, t).await {
                                tracing::warn!(error = %e, "lease marked released but not deleted");
                            }
                            tracing::info!(location = %slot.location, "lease released");
                            break;
                        }
                        Err(CondError::Lost) => {
                            // A renewal of ours (still running, or whose
                            // answer was lost) moved the etag: retry on it.
                            let current = slot.store.read(&slot.key, t).await.ok().flatten();
                            let ours = current.and_then(|(v, b)| {
                                LeaseRecord::parse(&b)
                                    .filter(|r| self.identity().wrote(r) && !r.released)
                                    .map(|r| (v, r.seq))
                            });
                            match ours {
                                Some((v, s)) => (etag, seq) = (v, s),
                                None => {
                                    tracing::warn!(location = %slot.location, "lease changed under us before release; leaving it to its current holder");
                                    break;
                                }
                            }
                        }
                        Err(CondError::Failed(e)) => {
                            tracing::warn!(location = %slot.location, error = %e, "cannot release lease; it becomes stale after its TTL");
                            break;
                        }
                    }
                }
            }
            self.delete_markers(i, t).await;
            let mut states = lock(&self.inner.states);
            let st = &mut states[i];
            if !st.taken_over {
                st.state = LeaseState::Released;
                st.detail = None;
            }
            st.etag = None;
        }
    }

    /// Graceful stop, after the final flush: close the gate and release
    /// every lease.
    pub async fn release(&self) -> Result<(), LeaseError> {
        if !self.inner.enabled {
            return Ok(());
        }
        self.inner.gate.close("lease released");
        self.inner
            .releasing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let all: Vec<usize> = (0..self.inner.slots.len()).collect();
        self.release_slots(&all).await;
        self.save_observations();
        Ok(())
    }

    /// Renew loop (every `spec.lease.renew_every`) until `cancel`; on failure
    /// keeps retrying, closes the gate (fencing) before the lease could be
    /// considered stale elsewhere, re-acquires when possible and re-opens the
    /// gate (which bumps its generation so the engine reconciles before
    /// pushing). Returns `Ok(())` on cancel; `Err` only when the lease was
    /// definitively taken over by another holder (or a nested holder
    /// appeared while we were fenced). After `Err`, the gate stays closed;
    /// call [`LeaseSet::release`] to free the remaining prefixes.
    pub async fn maintain(&self, cancel: CancellationToken) -> Result<(), LeaseError> {
        if !self.inner.enabled || self.inner.slots.is_empty() {
            cancel.cancelled().await;
            return Ok(());
        }
        let renew_every = self.inner.renew_every;
        let tick = (renew_every / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_renew = boottime() + renew_every;
        let mut rounds: tokio::task::JoinSet<Round> = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                Some(done) = rounds.join_next(), if !rounds.is_empty() => {
                    match done {
                        Ok(Round::Renewed) => next_renew = boottime() + renew_every,
                        Ok(Round::Retry) => {
                            next_renew = boottime() + (renew_every / 2).max(Duration::from_millis(50));
                        }
                        Ok(Round::Lost(e)) => {
                            self.inner.gate.close(format!("lease lost: {e}"));
                            return Err(e);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "lease renewal task failed");
                            next_renew = boottime();
                        }
                    }
                }
                _ = ticker.tick() => {}
            }
            self.enforce_fence();
            if lock(&self.inner.states)
                .iter()
                .all(|st| st.state == LeaseState::Released)
            {
                // `release` ran: nothing left to renew.
                return Ok(());
            }
            if rounds.is_empty() && boottime() >= next_renew {
                let this = self.clone();
                rounds.spawn(async move { this.renew_round().await });
            }
        }
    }

    /// Close the gate once any held prefix went unrenewed for TTL - margin.
    fn enforce_fence(&self) {
        let deadline_after = self.inner.ttl.saturating_sub(fence_margin(self.inner.ttl));
        let now = boottime();
        let mut fenced = None;
        {
            let mut states = lock(&self.inner.states);
            for (slot, st) in self.inner.slots.iter().zip(states.iter_mut()) {
                let expired = st
                    .last_ok
                    .is_none_or(|t| now.saturating_sub(t) >= deadline_after);
                if st.state == LeaseState::Held && expired {
                    st.state = LeaseState::Lost;
                    let secs = st.last_ok.map_or(0, |t| now.saturating_sub(t).as_secs());
                    st.detail = Some(format!(
                        "cannot renew for {secs}s; remote writes paused until the lease is re-verified"
                    ));
                    fenced = Some(slot.location.clone());
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
        let n = self.inner.slots.len();
        let results = futures::future::join_all((0..n).map(|i| self.renew_slot(i))).await;
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
                let mut states = lock(&self.inner.states);
                for st in states.iter_mut().filter(|st| !st.taken_over) {
                    st.state = LeaseState::Held;
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

    /// Renew one slot. `Ok(true)` renewed, `Ok(false)` failed for now,
    /// `Err` taken over.
    async fn renew_slot(&self, i: usize) -> Result<bool, LeaseError> {
        let slot = &self.inner.slots[i];
        let (etag, seq, acquired_at, taken_over) = {
            let st = &lock(&self.inner.states)[i];
            (
                st.etag.clone(),
                st.seq,
                st.acquired_at.clone(),
                st.taken_over,
            )
        };
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
        let sent = boottime();
        let rec = self.new_record(i, seq.saturating_add(1), &acquired_at);
        match slot
            .store
            .replace(&slot.key, &etag, rec.to_bytes(), timeout)
            .await
        {
            Ok(new) => {
                let mut states = lock(&self.inner.states);
                let st = &mut states[i];
                st.etag = Some(new);
                st.seq = rec.seq;
                st.last_ok = Some(sent);
                st.holder = Some(rec);
                if st.state == LeaseState::Held {
                    st.detail = None;
                }
                Ok(true)
            }
            Err(CondError::Failed(e)) => {
                tracing::warn!(location = %slot.location, error = %e, "lease renewal failed; retrying");
                let mut states = lock(&self.inner.states);
                if states[i].state == LeaseState::Lost {
                    states[i].detail = Some(format!("lease lost: renewals failing: {e}"));
                }
                Ok(false)
            }
            Err(CondError::Lost) => {
                let current = match slot.store.read(&slot.key, timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(location = %slot.location, error = %e, "lease changed or unreadable; retrying");
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
                    let mut states = lock(&self.inner.states);
                    states[i].etag = Some(etag.clone());
                    states[i].seq = r.seq;
                    return Ok(false);
                }
                let holder = match &rec {
                    Some(r) if r.released => {
                        "nobody: it was released by another process".to_string()
                    }
                    Some(r) => r.describe_holder(),
                    None if current.is_none() => "nobody: the lease object was deleted".to_string(),
                    None => "unknown".to_string(),
                };
                tracing::error!(location = %slot.location, holder = %holder, "lease taken over");
                self.inner
                    .gate
                    .close(format!("lease on {} taken over", slot.location));
                let mut states = lock(&self.inner.states);
                let st = &mut states[i];
                st.state = LeaseState::Lost;
                st.taken_over = true;
                st.etag = None;
                st.holder = rec;
                st.detail = Some(format!("taken over by {holder}"));
                Err(LeaseError::TakenOver {
                    location: slot.location.clone(),
                    holder,
                })
            }
        }
    }
}

/// `<rel with %2F>@<lease id>.json` -> `rel`.
fn decode_marker(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".json")?;
    let (enc, _id) = stem.rsplit_once('@')?;
    let rel = enc.replace("%2F", "/").replace("%25", "%");
    if rel.is_empty() || rel.split('/').any(|s| s == "..") {
        return None;
    }
    Some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_round_trip() {
        let p = Prefix(vec!["a".into(), "b".into(), "c%x@y".into()]);
        let anc = Prefix(vec!["a".into()]);
        let name = format!(
            "{}@{}.json",
            p.marker_name(&anc).trim_end_matches(".json"),
            "abc"
        );
        assert_eq!(decode_marker(&name).as_deref(), Some("b/c%x@y"));
        assert_eq!(decode_marker("junk"), None);
    }
}
