//! Issue 5, the lease: library-level tests against both real S3 servers
//! (`support::s3`, optionally through `support::lease_proxy`) and the local
//! backend.
//!
//! TTLs are short (2 s); "not before the TTL" is always shown by an attempt
//! that must fail first, never by timing thresholds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coltecd::error::{ExitStatus, HasExitStatus};
use coltecd::lease::{self, AcquireOptions, HoldState, LeaseError, LeaseSet, LeaseViewState};
use coltecd::spec::{
    BwLimit, DaemonSettings, Direction, Excludes, LeaseSettings, LocalRemote, RemoteKind,
    RemoteSpec, SafetySettings, Spec, Target, WatchMode, Workspace,
};
use coltecd::state_dir::StateDir;
use tokio_util::sync::CancellationToken;

use crate::support::lease_proxy::{LeaseProxy, Mode};
use crate::support::s3;
use crate::support::s3_test;

const TTL: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(400);

fn local_remote(root: &Path) -> RemoteSpec {
    RemoteSpec {
        name: "disk".into(),
        kind: RemoteKind::Local(LocalRemote {
            root: root.to_path_buf(),
        }),
    }
}

/// A spec with one target per `(name, remote_path, direction)`.
fn spec(remote: RemoteSpec, targets: &[(&str, &str, Direction)], enabled: bool) -> Spec {
    let local = std::env::temp_dir();
    let targets = targets
        .iter()
        .map(|(name, path, direction)| Target {
            name: (*name).into(),
            local_path: local.join(name),
            remote_name: remote.name.clone(),
            remote: remote.clone(),
            remote_path: (*path).into(),
            direction: *direction,
            interval: Duration::from_secs(60),
            priority: 0,
            excludes: Excludes::default(),
            transfers: 4,
            checkers: 8,
            bwlimit: BwLimit::default(),
        })
        .collect();
    let mut remotes = BTreeMap::new();
    remotes.insert(remote.name.clone(), remote);
    Spec {
        path: PathBuf::from("/nonexistent/workspace-spec.yaml"),
        name: "lease-test".into(),
        workspace: Workspace {
            org: "acme".into(),
            project: "widget".into(),
            env: "dev".into(),
        },
        enabled: true,
        remotes,
        targets,
        lease: LeaseSettings {
            enabled,
            ttl: TTL,
            renew_every: RENEW,
        },
        safety: SafetySettings {
            mass_delete_max_files: 50,
            mass_delete_max_fraction: 0.25,
            trash_retention: Duration::from_secs(7 * 86400),
        },
        daemon: DaemonSettings {
            state_dir: None,
            log_dir: std::env::temp_dir(),
            debounce: Duration::from_secs(2),
            flush_deadline: Duration::from_secs(8),
            watch: WatchMode::Auto,
            max_requests_per_second: 100,
        },
        warnings: Vec::new(),
    }
}

fn one(remote: RemoteSpec, path: &str) -> Spec {
    spec(remote, &[("state", path, Direction::Bidirectional)], true)
}

/// A fresh "container": its own state dir.
struct Container {
    _tmp: tempfile::TempDir,
    dir: StateDir,
}

fn container() -> Container {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::at(tmp.path().join("state"));
    Container { _tmp: tmp, dir }
}

async fn take(spec: &Spec, c: &Container) -> Result<LeaseSet, LeaseError> {
    lease::acquire(spec, &c.dir, AcquireOptions::default()).await
}

fn held_by(e: &LeaseError) -> &lease::HeldBy {
    e.held_by()
        .unwrap_or_else(|| panic!("expected HeldElsewhere, got: {e}"))
}

fn lease_id(set: &LeaseSet) -> String {
    set.snapshot()[0].lease_id.clone().unwrap()
}

/// Retry `acquire` until it succeeds (bounded); the first attempt must fail.
async fn take_after_ttl(spec: &Spec, c: &Container) -> (LeaseError, LeaseSet) {
    let first = take(spec, c)
        .await
        .err()
        .expect("first attempt must be refused");
    held_by(&first);
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match take(spec, c).await {
            Ok(set) => return (first, set),
            Err(e) => {
                held_by(&e);
            }
        }
    }
    panic!("lease never became stale");
}

async fn race(spec: &Spec, n: usize) -> (LeaseSet, Vec<LeaseError>) {
    let containers: Vec<Container> = (0..n).map(|_| container()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in containers {
        let spec = spec.clone();
        tasks.spawn(async move {
            let r = take(&spec, &c).await;
            (r, c)
        });
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    let mut keep = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let (r, c) = res.unwrap();
        keep.push(c);
        match r {
            Ok(set) => winners.push(set),
            Err(e) => losers.push(e),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner; losers: {losers:?}");
    let winner = winners.pop().unwrap();
    let id = lease_id(&winner);
    for e in &losers {
        let h = held_by(e);
        assert_eq!(e.exit_status(), ExitStatus::LeaseHeld);
        let rec = h.record.as_ref().expect("holder named");
        assert_eq!(rec.lease_id, id, "loser names the winner");
        let msg = e.to_string();
        assert!(
            msg.contains(&rec.host) && msg.contains("lease break --force"),
            "{msg}"
        );
    }
    (winner, losers)
}

/// The race tests' TTL: far above any scheduling stall of a busy machine,
/// so no contender could ever legitimately judge the winner's fresh lease
/// stale (a loser refuses at its first sighting anyway).
const RACE_TTL: Duration = Duration::from_secs(600);

fn race_spec(remote: RemoteSpec, path: &str) -> Spec {
    let mut spec = one(remote, path);
    spec.lease.ttl = RACE_TTL;
    spec.lease.renew_every = RACE_TTL / 4;
    spec
}

s3_test! {
    /// Eight containers race for each of 20 fresh prefixes: exactly one wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn race_of_eight_has_exactly_one_winner_s3(server) {
        let bucket = server.bucket("lease-race");
        // Conditional writes one at a time: moto's are not atomic (see
        // `support::lease_proxy`), real S3's are.
        let proxy = LeaseProxy::start(server.endpoint(), Mode::Pass);
        let remote = server.remote_at(&bucket, &proxy.endpoint());
        for round in 0..20 {
            let spec = race_spec(remote.clone(), &format!("acme/widget/race-{round}"));
            let (winner, losers) = race(&spec, 8).await;
            assert_eq!(losers.len(), 7);
            winner.release().await.unwrap();
        }
        // Nothing is left behind but probe-free control objects of released leases.
        let keys = server.list_keys(&bucket, "");
        assert!(
            keys.iter()
                .all(|k| !k.ends_with("lease.json") && !k.contains("probe-")),
            "{keys:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_of_eight_has_exactly_one_winner_local() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("remote");
    let remote = local_remote(&root);
    for round in 0..20 {
        let spec = one(remote.clone(), &format!("acme/widget/race-{round}"));
        let (winner, _) = race(&spec, 8).await;
        winner.release().await.unwrap();
        assert!(
            !root
                .join(format!("acme/widget/race-{round}/.coltec/lease.json"))
                .exists()
        );
    }
    // Nothing is written above the remote's root (no markers in its parent,
    // let alone $HOME or /), and released markers are gone.
    assert!(!tmp.path().join(".coltec").exists());
    let nested: Vec<_> = std::fs::read_dir(root.join(".coltec/nested"))
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(nested.is_empty(), "{nested:?}");
}

async fn dead_holder_is_taken_over_after_ttl(remote: RemoteSpec) {
    let spec = one(remote, "acme/widget/dev-a");
    let a = container();
    let holder = take(&spec, &a).await.unwrap();
    let holder_id = lease_id(&holder);
    // Crash: no release, no renewals.
    drop(holder);

    // The same container restarting reclaims at once.
    let again = take(&spec, &a).await.expect("own restart reclaims at once");
    assert_eq!(lease_id(&again), holder_id);
    drop(again);

    // Another container must be refused first, then wins after the TTL.
    let b = container();
    let (first, set) = take_after_ttl(&spec, &b).await;
    let h = held_by(&first);
    assert_eq!(h.record.as_ref().unwrap().lease_id, holder_id);
    assert!(h.stale_in <= TTL);
    let msg = first.to_string();
    assert!(msg.contains("would be considered stale in"), "{msg}");
    assert_ne!(lease_id(&set), holder_id);

    // Now the old container is the foreigner: refused.
    let err = take(&spec, &a).await.err().expect("old holder refused");
    assert_eq!(
        held_by(&err).record.as_ref().unwrap().lease_id,
        lease_id(&set)
    );
    set.release().await.unwrap();
    // Released: anyone takes it at once.
    take(&spec, &a)
        .await
        .expect("released lease is free")
        .release()
        .await
        .unwrap();
}

s3_test! {
    #[tokio::test]
    async fn dead_holder_is_taken_over_after_ttl_s3(server) {
        let bucket = server.bucket("lease-dead");
        dead_holder_is_taken_over_after_ttl(server.remote(&bucket)).await;
    }
}

#[tokio::test]
async fn dead_holder_is_taken_over_after_ttl_local() {
    let root = tempfile::tempdir().unwrap();
    dead_holder_is_taken_over_after_ttl(local_remote(root.path())).await;
}

async fn nested_prefixes_conflict(remote: RemoteSpec) {
    let parent = one(remote.clone(), "ws/acme/widget/dev-a");
    let child = one(remote.clone(), "ws/acme/widget/dev-a/workspace");

    // Enclosing holder blocks the nested one.
    let p = take(&parent, &container()).await.unwrap();
    let e = take(&child, &container())
        .await
        .err()
        .expect("child refused");
    let h = held_by(&e);
    assert!(h.held.ends_with("ws/acme/widget/dev-a"), "{}", h.held);
    assert!(e.to_string().contains("encloses"), "{e}");
    p.release().await.unwrap();

    // Nested holder blocks the enclosing one.
    let c = take(&child, &container()).await.unwrap();
    let e = take(&parent, &container())
        .await
        .err()
        .expect("parent refused");
    let h = held_by(&e);
    assert!(
        h.held.ends_with("ws/acme/widget/dev-a/workspace"),
        "{}",
        h.held
    );
    assert!(e.to_string().contains("nested inside"), "{e}");
    // The refused parent left nothing held: the sibling prefix is free.
    let sibling = one(remote.clone(), "ws/acme/widget/dev-b");
    take(&sibling, &container())
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    c.release().await.unwrap();

    // Released: the parent may now be taken.
    take(&parent, &container())
        .await
        .unwrap()
        .release()
        .await
        .unwrap();

    // Racing parent and child: never both.
    for round in 0..5 {
        let parent = one(remote.clone(), &format!("race/{round}"));
        let child = one(remote.clone(), &format!("race/{round}/deeper/still"));
        let (cp, cc) = (container(), container());
        let (a, b) = tokio::join!(take(&parent, &cp), take(&child, &cc));
        assert!(
            !(a.is_ok() && b.is_ok()),
            "round {round}: both nested acquirers won"
        );
        for r in [a, b] {
            match r {
                Ok(set) => set.release().await.unwrap(),
                Err(e) => {
                    held_by(&e);
                }
            }
        }
    }
}

s3_test! {
    #[tokio::test]
    async fn nested_prefixes_conflict_both_ways_s3(server) {
        let bucket = server.bucket("lease-nested");
        nested_prefixes_conflict(server.remote(&bucket)).await;
    }
}

#[tokio::test]
async fn nested_prefixes_conflict_both_ways_local() {
    let root = tempfile::tempdir().unwrap();
    nested_prefixes_conflict(local_remote(root.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn acquisition_is_all_or_nothing(server) {
        let bucket = server.bucket("lease-all");
        let remote = server.remote(&bucket);
        let other = take(&one(remote.clone(), "acme/widget/b"), &container())
            .await
            .unwrap();
        let both = spec(
            remote.clone(),
            &[
                ("a", "acme/widget/a", Direction::Bidirectional),
                ("b", "acme/widget/b", Direction::PushOnly),
                ("c", "acme/widget/c", Direction::PullOnly),
            ],
            true,
        );
        let e = take(&both, &container()).await.err().expect("refused");
        assert!(held_by(&e).held.ends_with("acme/widget/b"));
        // `a` was released again.
        take(&one(remote.clone(), "acme/widget/a"), &container())
            .await
            .unwrap();
        other.release().await.unwrap();
        // Pull-only targets take no lease; --only picks targets.
        let set = lease::acquire(
            &both,
            &container().dir,
            AcquireOptions {
                only: Some(vec!["c".into()]),
                force: false,
            },
        )
        .await
        .unwrap();
        assert!(set.snapshot().is_empty());
        let e = lease::acquire(
            &both,
            &container().dir,
            AcquireOptions {
                only: Some(vec!["nope".into()]),
                force: false,
            },
        )
        .await
        .err()
        .unwrap();
        assert_eq!(e.exit_status(), ExitStatus::Usage);
    }
}

s3_test! {
    #[tokio::test]
    async fn backend_ignoring_conditional_writes_is_refused(server) {
        let bucket = server.bucket("lease-strip");
        let proxy = LeaseProxy::start(server.endpoint(), Mode::StripConditional);
        let spec = one(server.remote_at(&bucket, &proxy.endpoint()), "acme/widget/dev-a");
        let e = take(&spec, &container()).await.err().expect("refused");
        assert!(matches!(e, LeaseError::NoConditionalWrites { .. }), "{e}");
        assert_eq!(e.exit_status(), ExitStatus::Remote);
        let msg = e.to_string();
        assert!(
            msg.contains("lease: off") && msg.contains("overwrite"),
            "{msg}"
        );
        assert!(!msg.contains(s3::SECRET_KEY));
        // No lease object and no probe left behind.
        assert!(
            server.list_keys(&bucket, "").is_empty(),
            "{:?}",
            server.list_keys(&bucket, "")
        );
        // The same server through a faithful proxy is fine.
        proxy.set_mode(Mode::Pass);
        take(&spec, &container())
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}

s3_test! {
    #[tokio::test]
    async fn lease_off_holds_nothing_and_says_so(server) {
        let bucket = server.bucket("lease-off");
        let spec = spec(
            server.remote(&bucket),
            &[("state", "acme/widget/dev-a", Direction::Bidirectional)],
            false,
        );
        let set = take(&spec, &container()).await.unwrap();
        let snap = set.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].state, HoldState::Off);
        assert!(set.gate().is_open());
        assert!(server.list_keys(&bucket, "").is_empty());
        // Another container is not stopped either.
        take(&spec, &container()).await.unwrap();
    }
}

s3_test! {
    #[tokio::test]
    async fn break_force_takes_over_and_reports_previous_holder(server) {
        let bucket = server.bucket("lease-break");
        let spec = one(server.remote(&bucket), "acme/widget/dev-a");
        let a = container();
        let holder = take(&spec, &a).await.unwrap();
        let gate = holder.gate();
        let cancel = CancellationToken::new();
        let h2 = holder.clone();
        let c2 = cancel.clone();
        let maintain = tokio::spawn(async move { h2.maintain(c2).await });

        let b = container();
        let broken = lease::break_leases(&spec, &b.dir, None).await.unwrap();
        assert_eq!(broken.len(), 1);
        let prev = broken[0]
            .previous
            .as_ref()
            .expect("previous holder reported");
        assert_eq!(prev.lease_id, lease_id(&holder));

        // The old holder finds out at its next renewal and stays fenced.
        let res = tokio::time::timeout(Duration::from_secs(30), maintain)
            .await
            .expect("maintain ends")
            .unwrap();
        assert!(matches!(res, Err(LeaseError::TakenOver { .. })), "{res:?}");
        assert!(!gate.is_open());
        assert_eq!(holder.snapshot()[0].state, HoldState::Lost);
        // The broken lease is free for the breaker's next start.
        let mine = take(&spec, &b).await.unwrap();
        // Releasing the taken-over set must not touch the new holder's lease.
        holder.release().await.unwrap();
        let e = take(&spec, &container())
            .await
            .err()
            .expect("still held by b");
        assert_eq!(
            held_by(&e).record.as_ref().unwrap().lease_id,
            lease_id(&mine)
        );
        cancel.cancel();
    }
}

s3_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fencing_when_cut_off_and_never_writes_after_takeover(server) {
        let bucket = server.bucket("lease-fence");
        let proxy = LeaseProxy::start(server.endpoint(), Mode::Pass);
        let path = "acme/widget/dev-a";
        // The holder's lease traffic goes through the proxy; its "engine" writes
        // data directly, so only the lease path is cut.
        let via_proxy = one(server.remote_at(&bucket, &proxy.endpoint()), path);
        let direct = one(server.remote(&bucket), path);
        let data_op = coltecd::remote::target_operator(&direct.targets[0]).unwrap();

        let a = container();
        let holder = take(&via_proxy, &a).await.unwrap();
        let gate = holder.gate();
        let cancel = CancellationToken::new();
        let (h2, c2) = (holder.clone(), cancel.clone());
        let maintain = tokio::spawn(async move { h2.maintain(c2).await });

        let writes = Arc::new(AtomicU64::new(0));
        let engine_stop = CancellationToken::new();
        let engine = {
            let (gate, writes, stop, op) = (
                gate.clone(),
                writes.clone(),
                engine_stop.clone(),
                data_op.clone(),
            );
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    if gate.check().is_ok() {
                        let n = writes.fetch_add(1, Ordering::SeqCst);
                        op.write("data.txt", format!("old holder {n}"))
                            .await
                            .unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        // Renewals go through while the network is up.
        for _ in 0..300 {
            if holder.snapshot()[0].holder.as_ref().unwrap().seq >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(holder.snapshot()[0].holder.as_ref().unwrap().seq >= 2);

        proxy.set_mode(Mode::Down);
        tokio::time::timeout(Duration::from_secs(30), gate.closed())
            .await
            .expect("gate closes when renewals fail");
        let snap = holder.snapshot();
        assert_eq!(snap[0].state, HoldState::Lost, "{snap:?}");

        // A competitor waits out the TTL (refused first), then takes over.
        let b = container();
        let (_, winner) = take_after_ttl(&direct, &b).await;
        assert!(
            !gate.is_open(),
            "fenced before the competitor could take over"
        );
        let writes_at_takeover = writes.load(Ordering::SeqCst);
        data_op.write("data.txt", "new holder").await.unwrap();

        // Connectivity returns: the old holder learns it was taken over.
        proxy.set_mode(Mode::Pass);
        let res = tokio::time::timeout(Duration::from_secs(60), maintain)
            .await
            .expect("maintain ends")
            .unwrap();
        assert!(matches!(res, Err(LeaseError::TakenOver { .. })), "{res:?}");
        engine_stop.cancel();
        engine.await.unwrap();
        assert!(!gate.is_open());
        assert_eq!(writes.load(Ordering::SeqCst), writes_at_takeover);
        let data = data_op.read("data.txt").await.unwrap().to_vec();
        assert_eq!(data, b"new holder");
        // The competitor's lease is intact.
        let e = take(&direct, &container())
            .await
            .err()
            .expect("held by winner");
        assert_eq!(
            held_by(&e).record.as_ref().unwrap().lease_id,
            lease_id(&winner)
        );
        cancel.cancel();
    }
}

s3_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_outage_fences_then_resumes_with_new_generation(server) {
        let bucket = server.bucket("lease-outage");
        let proxy = LeaseProxy::start(server.endpoint(), Mode::Pass);
        let spec = one(server.remote_at(&bucket, &proxy.endpoint()), "acme/widget/dev-a");
        let holder = take(&spec, &container()).await.unwrap();
        let gate = holder.gate();
        let cancel = CancellationToken::new();
        let (h2, c2) = (holder.clone(), cancel.clone());
        let maintain = tokio::spawn(async move { h2.maintain(c2).await });

        proxy.set_mode(Mode::Down);
        tokio::time::timeout(Duration::from_secs(30), gate.closed())
            .await
            .expect("fenced");
        let generation = gate.generation();
        proxy.set_mode(Mode::Pass);
        // Nobody took over: the lease is re-verified and writes resume.
        for _ in 0..200 {
            if gate.is_open() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gate.is_open(), "{:?}", holder.snapshot());
        assert!(gate.generation() > generation);
        assert_eq!(holder.snapshot()[0].state, HoldState::Held);
        cancel.cancel();
        maintain.await.unwrap().unwrap();
        holder.release().await.unwrap();
        assert!(!gate.is_open());
        assert_eq!(holder.snapshot()[0].state, HoldState::Released);
    }
}

s3_test! {
    #[tokio::test]
    async fn inspect_reports_holder_and_staleness(server) {
        let bucket = server.bucket("lease-show");
        let spec = one(server.remote(&bucket), "acme/widget/dev-a");
        let a = container();
        let b = container();
        let views = lease::inspect(&spec, &b.dir, None).await.unwrap();
        assert_eq!(views[0].state, LeaseViewState::Free);
        let holder = take(&spec, &a).await.unwrap();
        let views = lease::inspect(&spec, &b.dir, None).await.unwrap();
        assert_eq!(views[0].state, LeaseViewState::Held);
        assert_eq!(
            views[0].holder.as_ref().unwrap().lease_id,
            lease_id(&holder)
        );
        assert!(views[0].stale_in_secs.is_some());
        let views = lease::inspect(&spec, &a.dir, None).await.unwrap();
        assert_eq!(views[0].state, LeaseViewState::Mine);
        holder.release().await.unwrap();
    }
}

s3_test! {
    #[tokio::test]
    async fn release_while_renewing_frees_the_prefix_and_ends_maintain(server) {
        let bucket = server.bucket("lease-release");
        let spec = one(server.remote(&bucket), "acme/widget/dev-a");
        let holder = take(&spec, &container()).await.unwrap();
        let cancel = CancellationToken::new();
        let (h2, c2) = (holder.clone(), cancel.clone());
        let maintain = tokio::spawn(async move { h2.maintain(c2).await });
        tokio::time::sleep(RENEW * 2).await;
        holder.release().await.unwrap();
        let res = tokio::time::timeout(Duration::from_secs(30), maintain)
            .await
            .expect("maintain ends after release")
            .unwrap();
        assert!(res.is_ok(), "{res:?}");
        assert!(
            !server.list_keys(&bucket, "")
                .iter()
                .any(|k| k.ends_with("lease.json") || k.contains("/nested/")),
            "{:?}",
            server.list_keys(&bucket, "")
        );
        take(&spec, &container())
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}

s3_test! {
    #[tokio::test]
    async fn while_held_leases_for_the_work_then_releases(server) {
        let bucket = server.bucket("lease-while");
        let spec = one(server.remote(&bucket), "acme/widget/dev-a");
        let c = container();
        let other = spec.clone();
        let seen = lease::while_held(
            &spec,
            &c.dir,
            AcquireOptions::default(),
            |gate| async move {
                assert!(gate.is_open());
                // Held while the work runs: another container is refused.
                let e = take(&other, &container())
                    .await
                    .err()
                    .expect("held during work");
                held_by(&e);
                42
            },
        )
        .await
        .unwrap();
        assert_eq!(seen, 42);
        // Released afterwards.
        take(&spec, &container())
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
}

s3_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nested_holder_that_came_in_while_fenced_keeps_the_old_holder_fenced(server) {
        let bucket = server.bucket("lease-fence-nested");
        let proxy = LeaseProxy::start(server.endpoint(), Mode::Pass);
        let parent = one(
            server.remote_at(&bucket, &proxy.endpoint()),
            "ws/acme/widget/dev-a",
        );
        let child = one(
            server.remote(&bucket),
            "ws/acme/widget/dev-a/workspace",
        );

        let holder = take(&parent, &container()).await.unwrap();
        let gate = holder.gate();
        let cancel = CancellationToken::new();
        let (h2, c2) = (holder.clone(), cancel.clone());
        let maintain = tokio::spawn(async move { h2.maintain(c2).await });

        proxy.set_mode(Mode::Down);
        tokio::time::timeout(Duration::from_secs(30), gate.closed())
            .await
            .expect("fenced");
        // The enclosing lease goes unrenewed: a nested acquirer is refused
        // first, then treats it as stale and proceeds.
        let (_, nested) = take_after_ttl(&child, &container()).await;

        // The old holder's etag still matches, but re-verification finds the
        // nested holder: it must not resume.
        proxy.set_mode(Mode::Pass);
        let res = tokio::time::timeout(Duration::from_secs(60), maintain)
            .await
            .expect("maintain ends")
            .unwrap();
        let e = res.expect_err("a nested holder appeared while fenced");
        assert!(
            held_by(&e).held.ends_with("ws/acme/widget/dev-a/workspace"),
            "{e}"
        );
        assert!(!gate.is_open());
        holder.release().await.unwrap();
        // The nested holder keeps its lease.
        let again = take(&child, &container()).await.err().expect("still held");
        assert_eq!(
            held_by(&again).record.as_ref().unwrap().lease_id,
            lease_id(&nested)
        );
        cancel.cancel();
    }
}
