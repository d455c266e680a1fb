//! The set of leases one process holds: which prefixes ([`LeasedPrefix`]),
//! our hold on each ([`PrefixHold`], [`HoldState`]), and what `status`
//! shows of them ([`LeaseStatus`]). Every protocol step (acquire, keeper,
//! release, nested markers) is an `impl LeaseSet` in its own file and works
//! on this state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use super::error::LeaseError;
use super::identity::Identity;
use super::observe::{Clock, Observations, Staleness};
use super::record::LeaseRecord;
use super::store::{Prefix, Store};
use crate::remote::{GateController, WriteGate, gate};
use crate::spec::{Spec, Target};
use crate::state_dir::StateDir;

/// What [`LeaseSet::snapshot`] reports per leased prefix.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseStatus {
    /// Target names writing this prefix.
    pub targets: Vec<String>,
    pub location: String,
    pub state: HoldState,
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

/// Our hold on one prefix, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldState {
    Held,
    Lost,
    Released,
    Off,
}

/// One leased prefix and where its lease object lives (fixed for the set's life).
pub(super) struct LeasedPrefix {
    pub(super) targets: Vec<String>,
    pub(super) remote: String,
    pub(super) store: Store,
    pub(super) prefix: Prefix,
    pub(super) location: String,
    pub(super) key: Prefix,
    /// Ancestors shorter than this are never touched (a local remote's
    /// root: nothing is written above it, e.g. into `$HOME` or `/`).
    pub(super) hard_floor: usize,
    /// Ancestors shorter than this may be forbidden to us (an S3 token
    /// scoped to the remote's `path_prefix`): access denied there is
    /// tolerated with a warning instead of failing the acquisition.
    pub(super) soft_floor: usize,
}

impl LeasedPrefix {
    /// The enclosing prefixes this prefix checks and marks, nearest first.
    pub(super) fn ancestors(&self) -> Vec<Prefix> {
        self.prefix
            .ancestors()
            .into_iter()
            .filter(|a| a.0.len() >= self.hard_floor)
            .collect()
    }

    /// Whether a failure at ancestor `a` may be skipped.
    pub(super) fn tolerable(&self, a: &Prefix, e: &LeaseError) -> bool {
        a.0.len() < self.soft_floor && e.is_permission_denied()
    }
}

/// (hard, soft) floors of a target's ancestors, see [`LeasedPrefix`].
fn floors(remote: &crate::spec::RemoteSpec, prefix: &Prefix) -> (usize, usize) {
    use crate::spec::RemoteKind;
    match &remote.kind {
        RemoteKind::Local(l) => {
            let root = Prefix::of(&crate::spec::Location::Local {
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

/// Our hold on one leased prefix (changes with every write).
#[derive(Debug, Clone)]
pub(super) struct PrefixHold {
    pub(super) state: HoldState,
    /// Set once the object changed under us: never renew again.
    pub(super) taken_over: bool,
    pub(super) etag: Option<String>,
    pub(super) seq: u64,
    pub(super) acquired_at: String,
    /// Boot-time send instant of the last confirmed write.
    pub(super) last_ok: Option<Duration>,
    pub(super) holder: Option<LeaseRecord>,
    pub(super) detail: Option<String>,
}

impl PrefixHold {
    /// A prefix not (yet) held, in `state`.
    fn unheld(state: HoldState, detail: Option<String>) -> PrefixHold {
        PrefixHold {
            state,
            taken_over: false,
            etag: None,
            seq: 0,
            acquired_at: String::new(),
            last_ok: None,
            holder: None,
            detail,
        }
    }
}

/// What the next write of a held lease record is conditional on.
pub(super) struct HeldVersion {
    pub(super) etag: Option<String>,
    pub(super) seq: u64,
    pub(super) acquired_at: String,
    pub(super) taken_over: bool,
}

/// The shared state behind a [`LeaseSet`].
pub(super) struct Inner {
    pub(super) enabled: bool,
    pub(super) identity: Option<Identity>,
    pub(super) workspace: String,
    pub(super) ttl: Duration,
    pub(super) renew_every: Duration,
    pub(super) prefixes: Vec<LeasedPrefix>,
    pub(super) holds: Mutex<Vec<PrefixHold>>,
    pub(super) observations: Mutex<Observations>,
    pub(super) gate: GateController,
    /// Every reading of time (renewal instants, fencing, sightings).
    pub(super) clock: Clock,
    /// Set when `release` starts: renewals stop and a vanished object is
    /// our own doing, not a takeover.
    pub(super) releasing: std::sync::atomic::AtomicBool,
    /// The daemon's activity, copied into every record written (fleet view).
    pub(super) activity: Mutex<Option<super::record::ActivitySource>>,
}

/// The leases this process holds; cheap to clone.
#[derive(Clone)]
pub struct LeaseSet {
    pub(super) inner: Arc<Inner>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Timeout of one lease request during acquire/release.
pub(super) fn op_timeout(ttl: Duration) -> Duration {
    (ttl / 2).clamp(Duration::from_secs(5), Duration::from_secs(30))
}

impl LeaseSet {
    /// The version the next record write of prefix `i` builds on.
    pub(super) fn held_version(&self, i: usize) -> HeldVersion {
        let st = &lock(&self.inner.holds)[i];
        HeldVersion {
            etag: st.etag.clone(),
            seq: st.seq,
            acquired_at: st.acquired_at.clone(),
            taken_over: st.taken_over,
        }
    }

    pub(super) fn off(spec: &Spec, targets: &[&Target]) -> LeaseSet {
        let mut by_loc: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in targets {
            by_loc
                .entry(t.location().to_string())
                .or_default()
                .push(t.name.clone());
        }
        let prefixes = by_loc
            .into_iter()
            .map(|(location, targets)| LeasedPrefix {
                targets,
                remote: String::new(),
                store: Store::local(),
                prefix: Prefix(Vec::new()),
                location,
                key: Prefix(Vec::new()),
                hard_floor: 0,
                soft_floor: 0,
            })
            .collect::<Vec<_>>();
        let holds = prefixes
            .iter()
            .map(|_| {
                PrefixHold::unheld(
                    HoldState::Off,
                    Some("leasing is off in the spec (`lease: off`)".into()),
                )
            })
            .collect();
        LeaseSet {
            inner: Arc::new(Inner {
                enabled: false,
                identity: None,
                workspace: spec.workspace.slug(),
                ttl: spec.lease.ttl,
                renew_every: spec.lease.renew_every,
                prefixes,
                holds: Mutex::new(holds),
                observations: Mutex::new(Observations::none()),
                gate: gate().0,
                clock: Clock::boot(),
                releasing: std::sync::atomic::AtomicBool::new(false),
                activity: Mutex::new(None),
            }),
        }
    }

    pub(super) fn prepare(
        spec: &Spec,
        state_dir: &StateDir,
        targets: &[&Target],
        clock: Clock,
    ) -> Result<LeaseSet, LeaseError> {
        state_dir.ensure().map_err(|e| LeaseError::StateDir {
            path: state_dir.path().to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        let identity = Identity::load_or_create(state_dir.path())?;
        let mut prefixes: Vec<LeasedPrefix> = Vec::new();
        for t in targets {
            // A crypt target leases where its ciphertext lives.
            let (remote, location) = crate::remote::crypt::physical(&t.remote, &t.location())?;
            let store = Store::for_location(&remote, &location)?;
            let prefix = Prefix::of(&location);
            let display = store.display(&prefix);
            if let Some(s) = prefixes.iter_mut().find(|s| s.location == display) {
                s.targets.push(t.name.clone());
                continue;
            }
            let (hard_floor, soft_floor) = floors(&remote, &prefix);
            prefixes.push(LeasedPrefix {
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
        let holds = prefixes
            .iter()
            .map(|_| PrefixHold::unheld(HoldState::Released, None))
            .collect();
        Ok(LeaseSet {
            inner: Arc::new(Inner {
                enabled: true,
                identity: Some(identity),
                workspace: spec.workspace.slug(),
                ttl,
                renew_every,
                prefixes,
                holds: Mutex::new(holds),
                observations: Mutex::new(Observations::load(state_dir.path(), clock.clone())),
                gate: gate().0,
                clock,
                releasing: std::sync::atomic::AtomicBool::new(false),
                activity: Mutex::new(None),
            }),
        })
    }

    pub(super) fn identity(&self) -> &Identity {
        // Only `off` sets have no identity, and they never reach the protocol.
        static NOBODY: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        self.inner
            .identity
            .as_ref()
            .unwrap_or_else(|| NOBODY.get_or_init(Identity::nobody))
    }

    /// Now, on the set's clock.
    pub(super) fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    pub(super) fn releasing(&self) -> bool {
        self.inner
            .releasing
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn save_observations(&self) {
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
        let now = self.now();
        let holds = lock(&self.inner.holds);
        self.inner
            .prefixes
            .iter()
            .zip(holds.iter())
            .map(|(leased, st)| LeaseStatus {
                targets: leased.targets.clone(),
                location: leased.location.clone(),
                state: st.state,
                last_renewal_secs_ago: st.last_ok.map(|t| now.saturating_sub(t).as_secs()),
                lease_id: self.inner.identity.as_ref().map(|i| i.lease_id.clone()),
                holder: st.holder.clone(),
                detail: st.detail.clone(),
            })
            .collect()
    }

    /// Record a sighting of version `etag` of the lease at `location` and
    /// judge it, against the larger of the record's TTL and ours (returned).
    pub(super) fn judge(
        &self,
        location: &str,
        etag: &str,
        rec: Option<&LeaseRecord>,
    ) -> (Staleness, Duration) {
        let ttl = rec.map_or(self.inner.ttl, |r| r.ttl().max(self.inner.ttl));
        let verdict = lock(&self.inner.observations).observe(location, etag, ttl);
        (verdict, ttl)
    }

    pub(super) fn new_record(&self, i: usize, seq: u64, acquired_at: &str) -> LeaseRecord {
        let mut rec = self.identity().record(
            &self.inner.workspace,
            &self.inner.prefixes[i].location,
            self.inner.ttl,
            acquired_at,
            seq,
        );
        rec.targets = self.inner.prefixes[i].targets.clone();
        let source = lock(&self.inner.activity).clone();
        rec.activity = source.map(|f| f());
        rec
    }

    /// Where every later renewal reads the daemon's activity from (what
    /// `coltecd fleet` shows); costs no request of its own.
    pub fn set_activity_source(&self, source: super::record::ActivitySource) {
        *lock(&self.inner.activity) = Some(source);
    }

    pub(super) fn set_held(
        &self,
        i: usize,
        etag: String,
        rec: LeaseRecord,
        sent: Option<Duration>,
    ) {
        let mut holds = lock(&self.inner.holds);
        let st = &mut holds[i];
        st.state = HoldState::Held;
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
}
