//! The lease's timing rules on controlled time: tokio's paused clock, a
//! [`Clock::tokio`] per "machine", and a local store that can be cut off.
//! No wall-clock waits, no timing thresholds: time only moves when the test
//! advances it.
//!
//! What is proven (see the module doc of [`crate::lease`]):
//! - a contender takes a lease over only after it has seen the same version
//!   unchanged for *more* than a full TTL on its own clock, so never before
//!   the holder has been silent that long;
//! - a holder that cannot renew closes its write gate at its last renewal +
//!   TTL - TTL/4, before any contender could take over, and keeps it closed
//!   for good once it learns it was taken over.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AcquireOptions, Clock, LeaseError, LeaseSet, acquire_with_clock};
use crate::spec::{
    BwLimit, DaemonSettings, Direction, Excludes, LeaseSettings, LocalRemote, RemoteKind,
    RemoteSpec, SafetySettings, Spec, Target, WatchMode, Workspace,
};
use crate::state_dir::StateDir;

const TTL: Duration = Duration::from_secs(10);
const RENEW: Duration = Duration::from_millis(2500);
/// How often the contender tries, in controlled time (each try costs real
/// file writes with fsync, so not more often than needed).
const POLL: Duration = Duration::from_millis(250);

fn spec(root: &Path) -> Spec {
    let remote = RemoteSpec {
        name: "disk".into(),
        kind: RemoteKind::Local(LocalRemote {
            root: root.to_path_buf(),
        }),
    };
    let target = Target {
        name: "state".into(),
        local_path: root.join("local-state"),
        remote_name: remote.name.clone(),
        remote: remote.clone(),
        remote_path: "acme/widget/dev/state".into(),
        direction: Direction::Bidirectional,
        interval: Duration::from_secs(60),
        priority: 0,
        excludes: Excludes::default(),
        transfers: 1,
        checkers: 1,
        bwlimit: BwLimit::default(),
    };
    Spec {
        path: root.join("workspace-spec.yaml"),
        name: "timing".into(),
        workspace: Workspace {
            org: "acme".into(),
            project: "widget".into(),
            env: "dev".into(),
        },
        enabled: true,
        remotes: [(remote.name.clone(), remote)].into_iter().collect(),
        targets: vec![target],
        lease: LeaseSettings {
            enabled: true,
            ttl: TTL,
            renew_every: RENEW,
        },
        safety: SafetySettings {
            mass_delete_max_files: 50,
            mass_delete_max_fraction: 0.25,
            trash_retention: Duration::ZERO,
        },
        daemon: DaemonSettings {
            state_dir: None,
            log_dir: root.join("logs"),
            debounce: Duration::from_secs(2),
            flush_deadline: Duration::from_secs(8),
            watch: WatchMode::Poll,
            max_requests_per_second: 100,
        },
        warnings: Vec::new(),
    }
}

impl LeaseSet {
    /// Cut this set's stores off (every call fails) or reconnect them.
    fn set_cut(&self, cut: bool) {
        for p in &self.inner.prefixes {
            p.store.set_cut(cut);
        }
    }

    fn seq(&self) -> Option<u64> {
        self.snapshot()[0].holder.as_ref().map(|h| h.seq)
    }
}

/// Move controlled time on by `d` and let every task that became due run.
async fn step(d: Duration) {
    tokio::time::advance(d).await;
    // Local store calls are blocking tasks: give them a moment of real time.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn takeover_needs_a_full_ttl_of_silence_and_the_silent_holder_is_fenced_first() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(&tmp.path().join("remote"));
    let (a_dir, b_dir) = (
        StateDir::at(tmp.path().join("a")),
        StateDir::at(tmp.path().join("b")),
    );
    let (a_clock, b_clock) = (Clock::tokio(), Clock::tokio());
    let try_b = || acquire_with_clock(&spec, &b_dir, AcquireOptions::default(), b_clock.clone());

    let a = acquire_with_clock(&spec, &a_dir, AcquireOptions::default(), a_clock)
        .await
        .unwrap();
    let gate = a.gate();
    let cancel = CancellationToken::new();
    let keeper = tokio::spawn({
        let (a, cancel) = (a.clone(), cancel.clone());
        async move { a.maintain(cancel).await }
    });

    // A renewing holder is never taken over, however long B keeps trying.
    let start = tokio::time::Instant::now();
    while start.elapsed() < 3 * TTL {
        let e = try_b().await.err().expect("a renewed lease is never stale");
        assert!(e.held_by().is_some(), "{e}");
        assert!(gate.is_open());
        step(Duration::from_secs(1)).await;
    }

    // Cut A off right after one of its renewals landed: from here on its
    // last write is older than `cut_at` and nothing of A's lands any more.
    let before = a.seq();
    while a.seq() == before {
        step(POLL).await;
    }
    a.set_cut(true);
    let cut_at = tokio::time::Instant::now();

    let mut fenced_after = None;
    let taken = loop {
        let silent = cut_at.elapsed();
        if fenced_after.is_none() && !gate.is_open() {
            fenced_after = Some(silent);
        }
        match try_b().await {
            Ok(set) => {
                // (a) Only after more than a full TTL of silence, as seen by B.
                assert!(silent > TTL, "taken over after only {silent:?} of silence");
                // (b) A had closed its gate by then.
                assert!(fenced_after.is_some(), "A still writable when B took over");
                break set;
            }
            Err(e) => {
                assert!(e.held_by().is_some(), "{e}");
                assert!(silent <= TTL + POLL, "B never took over ({silent:?})");
            }
        }
        step(POLL).await;
    };
    // A fenced itself by its last renewal + TTL - TTL/4 (within one poll),
    // a quarter TTL before B could take over.
    let fenced_after = fenced_after.unwrap();
    assert!(fenced_after <= TTL - TTL / 4 + POLL, "{fenced_after:?}");
    assert!(!gate.is_open());

    // Reconnected, A learns of the takeover and stays fenced for good.
    a.set_cut(false);
    let kept = loop {
        if keeper.is_finished() {
            break keeper.await.unwrap();
        }
        step(POLL).await;
    };
    assert!(
        matches!(kept, Err(LeaseError::TakenOver { .. })),
        "{kept:?}"
    );
    assert!(!gate.is_open());
    cancel.cancel();
    taken.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_holder_closes_its_gate_at_three_quarters_of_the_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(&tmp.path().join("remote"));
    let a_dir = StateDir::at(tmp.path().join("a"));
    let a = acquire_with_clock(&spec, &a_dir, AcquireOptions::default(), Clock::tokio())
        .await
        .unwrap();
    let gate = a.gate();
    let cancel = CancellationToken::new();
    let keeper = tokio::spawn({
        let (a, cancel) = (a.clone(), cancel.clone());
        async move { a.maintain(cancel).await }
    });
    let before = a.seq();
    while a.seq() == before {
        step(POLL).await;
    }
    let renewed_at = tokio::time::Instant::now();
    a.set_cut(true);
    let deadline = TTL - TTL / 4;
    while gate.is_open() {
        assert!(
            renewed_at.elapsed() < deadline + POLL,
            "still open {:?} after the last renewal",
            renewed_at.elapsed()
        );
        step(POLL).await;
    }
    // Not closed before the fence deadline either (minus the poll in which
    // the last renewal landed): renewals failing briefly do not fence.
    assert!(
        renewed_at.elapsed() + POLL >= deadline,
        "{:?}",
        renewed_at.elapsed()
    );

    // Reconnected before anyone took over: the gate re-opens.
    a.set_cut(false);
    while !gate.is_open() {
        assert!(renewed_at.elapsed() < TTL + RENEW, "never re-opened");
        step(POLL).await;
    }
    cancel.cancel();
    keeper.await.unwrap().unwrap();
    a.release().await.unwrap();
}
