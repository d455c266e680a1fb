//! The sync engine against both real S3 servers (moto and s3s-fs, see
//! `support::s3`) and the local backend.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::sync::Arc;
use std::time::Duration;

use coltecd::spec::{BwLimit, Direction};
use coltecd::sync::{EngineOptions, PassRequest, PassScope, SyncError};
use tokio_util::sync::CancellationToken;

use crate::support::proxy::{Proxy, Seen};
use crate::support::s3::S3Server;
use crate::support::s3_test;

mod etagless;
mod restore_stream;
mod world;

use world::*;

/// The tree of the round-trip test.
fn build_tree(s: &Side) {
    s.write("a/b/c/deep.txt", b"deep file");
    s.write("empty.txt", b"");
    s.write("big.bin", &pseudo_random(20 * 1024 * 1024 + 123, 7));
    s.write("secret", b"token");
    fs::set_permissions(s.root.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    s.write("bin/run.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(s.root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    s.write("ünï cødé/with space.txt", "ünïcødé".as_bytes());
    fs::create_dir_all(s.root.join("links")).unwrap();
    symlink("../a/b/c/deep.txt", s.root.join("links/rel")).unwrap();
    symlink("nowhere/missing", s.root.join("links/dangling")).unwrap();
    set_mtime(&s.root.join("a/b/c/deep.txt"), 1_600_000_000_123_456_789);
}

async fn round_trip(remote: Remote) {
    let a = side(
        &remote,
        &Opts {
            direction: Direction::PushOnly,
            ..Opts::default()
        },
    );
    build_tree(&a);
    let r = a.pass(false).await;
    assert_eq!(r.uploaded, 8, "{r:?}");
    assert!(r.remote_listed);
    let keys = remote.user_keys();
    assert!(
        keys.contains(&"links/rel.rclonelink".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"ünï cødé/with space.txt".to_string()),
        "{keys:?}"
    );
    assert_eq!(
        remote.read("links/dangling.rclonelink").await,
        b"nowhere/missing"
    );
    if remote.is_s3() {
        // rclone-readable metadata on the objects themselves.
        let m = remote.operator().stat("a/b/c/deep.txt").await.unwrap();
        let um = m.user_metadata().unwrap();
        assert_eq!(um.get("mtime"), Some("1600000000.123456789"));
        assert_eq!(um.get("mode"), Some("100644"));
        let m = remote.operator().stat("secret").await.unwrap();
        assert_eq!(m.user_metadata().unwrap().get("mode"), Some("100600"));
    }

    // A fresh container restores the same tree.
    let b = side(&remote, &Opts::default());
    let dest = b.root.join("restored");
    let r = b.restore_to(&dest).await;
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(r.downloaded, 8);
    assert_eq!(snapshot(&a.root), snapshot(&dest));

    // And a bidirectional container starting empty restores in place.
    let c = side(&remote, &Opts::default());
    fs::remove_dir_all(&c.root).unwrap();
    let r = c.pass(false).await;
    assert_eq!((r.downloaded, r.uploaded), (8, 0), "{r:?}");
    assert_eq!(snapshot(&a.root), snapshot(&c.root));
    // Nothing to do afterwards.
    let r = c.pass(true).await;
    assert!(r.plan.is_empty(), "{:?}", r.plan);
}

s3_test! {
    #[tokio::test]
    async fn round_trip_s3(server) {
        round_trip(Remote::s3(server, "round-trip")).await;
    }
}

#[tokio::test]
async fn round_trip_local() {
    let tmp = tempfile::tempdir().unwrap();
    round_trip(Remote::local(tmp.path())).await;
}

async fn directions(remote: Remote) {
    let pusher = side(
        &remote,
        &Opts {
            direction: Direction::PushOnly,
            ..Opts::default()
        },
    );
    let puller = side(
        &remote,
        &Opts {
            direction: Direction::PullOnly,
            ..Opts::default()
        },
    );
    pusher.write("keep.txt", b"v1");
    pusher.write("gone.txt", b"bye");
    pusher.pass(false).await;
    puller.write("local-only.txt", b"mine");
    let r = puller.pass(false).await;
    assert_eq!(r.downloaded, 2);
    assert_eq!(r.uploaded, 0);
    assert_eq!(puller.read("keep.txt"), b"v1");

    // push-only: modify + delete propagate; the puller follows on verify.
    pusher.write("keep.txt", b"v2 longer");
    fs::remove_file(pusher.root.join("gone.txt")).unwrap();
    let r = pusher.pass(false).await;
    assert_eq!((r.uploaded, r.deleted_remote), (1, 1), "{r:?}");
    assert_eq!(remote.user_keys(), vec!["keep.txt".to_string()]);
    let r = puller.pass(true).await;
    assert_eq!((r.downloaded, r.deleted_local), (1, 1), "{r:?}");
    assert_eq!(puller.read("keep.txt"), b"v2 longer");
    assert!(!puller.root.join("gone.txt").exists());
    // pull-only never uploads.
    assert!(puller.root.join("local-only.txt").exists());
    assert!(!remote.user_keys().contains(&"local-only.txt".to_string()));

    // bidirectional: two containers converge both ways.
    let a = side(&remote, &Opts::default());
    let b = side(&remote, &Opts::default());
    a.pass(false).await;
    b.pass(false).await;
    a.write("from-a.txt", b"a");
    a.pass(false).await;
    let r = b.pass(true).await;
    assert_eq!(r.downloaded, 1);
    assert_eq!(b.read("from-a.txt"), b"a");
    b.write("from-a.txt", b"changed by b");
    b.write("sub/from-b.txt", b"b");
    let r = b.pass(false).await;
    assert_eq!(r.uploaded, 2);
    let r = a.pass(true).await;
    assert_eq!(r.downloaded, 2, "{r:?}");
    assert_eq!(a.read("from-a.txt"), b"changed by b");
    fs::remove_file(b.root.join("sub/from-b.txt")).unwrap();
    let r = b.pass(false).await;
    assert_eq!(r.deleted_remote, 1);
    let r = a.pass(true).await;
    assert_eq!(r.deleted_local, 1);
    assert!(!a.root.join("sub/from-b.txt").exists());
}

s3_test! {
    #[tokio::test]
    async fn directions_s3(server) {
        directions(Remote::s3(server, "directions")).await;
    }
}

#[tokio::test]
async fn directions_local() {
    let tmp = tempfile::tempdir().unwrap();
    directions(Remote::local(tmp.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn idle_pass_makes_no_requests_and_changes_cost_no_listing(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "idle", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        for i in 0..20 {
            a.write(
                &format!("d{}/f{i}.txt", i % 3),
                format!("file {i}").as_bytes(),
            );
        }
        let r = a.pass(false).await;
        assert_eq!(r.uploaded, 20);
        assert!(proxy.seen().iter().any(|s| s.is_list()));

        proxy.reset();
        let r = a.pass(false).await;
        assert!(!r.remote_listed);
        assert!(r.plan.is_empty());
        assert!(proxy.seen().is_empty(), "idle pass sent {:?}", proxy.seen());
        let r = a
            .try_pass(PassScope::Paths(vec![a.root.join("d0/f0.txt")]), false)
            .await
            .unwrap();
        assert!(r.plan.is_empty());
        assert!(
            proxy.seen().is_empty(),
            "idle path pass sent {:?}",
            proxy.seen()
        );

        // One change: no LIST; the only HEAD is the server-side copy of the
        // overwritten object into the trash (opendal's copier sizes its source).
        a.write("d1/f1.txt", b"changed");
        let r = a
            .try_pass(PassScope::Paths(vec![a.root.join("d1/f1.txt")]), false)
            .await
            .unwrap();
        assert_eq!(r.uploaded, 1);
        let seen = proxy.seen();
        assert!(!seen.iter().any(|s| s.is_list()), "{seen:?}");
        assert!(
            seen.iter()
                .filter(|s| s.is_head())
                .all(|s| s.target.ends_with("/org/proj/env/d1/f1.txt")),
            "{seen:?}"
        );
        assert!(
            seen.iter().filter(|s| s.method == "PUT").count() == 4,
            "dirty marker + trash copy + upload + manifest: {seen:?}"
        );
        let deletes: Vec<_> = seen.iter().filter(|s| s.method == "DELETE").collect();
        assert!(
            deletes.len() == 1 && deletes[0].target.ends_with("/.coltec/manifest.dirty"),
            "the marker goes once the manifest is written: {seen:?}"
        );
        assert!(
            !remote
                .keys()
                .contains(&".coltec/manifest.dirty".to_string())
        );

        // verify forces a full reconcile, which needs no HEAD for known objects.
        proxy.reset();
        let r = a.pass(true).await;
        assert!(r.remote_listed && r.plan.is_empty());
        let seen = proxy.seen();
        assert!(seen.iter().any(|s| s.is_list()));
        assert!(!seen.iter().any(|s| s.is_head()), "{seen:?}");
    }
}

#[tokio::test]
async fn idle_pass_on_local_remote_does_not_list() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = Remote::local(tmp.path());
    let a = side(&remote, &Opts::default());
    a.write("x.txt", b"x");
    assert!(a.pass(false).await.remote_listed);
    let r = a.pass(false).await;
    assert!(!r.remote_listed && r.plan.is_empty());
}

async fn conflict(remote: Remote) {
    let a = side(&remote, &Opts::default());
    let b = side(&remote, &Opts::default());
    a.write("notes.md", b"base");
    a.pass(false).await;
    b.pass(false).await;
    a.write("notes.md", b"edited by a");
    a.pass(false).await;
    b.write("notes.md", b"edited by b!");
    let r = b.pass(true).await;
    assert_eq!(r.conflicts.len(), 1, "{r:?}");
    let copy = &r.conflicts[0];
    assert!(
        copy.starts_with("notes.conflict-") && copy.ends_with(".md"),
        "{copy}"
    );
    // The local version stays; the other is beside it.
    assert_eq!(b.read("notes.md"), b"edited by b!");
    assert_eq!(b.read(copy), b"edited by a");
    // Both reach the remote, and a sees both after its next reconcile.
    assert_eq!(remote.read("notes.md").await, b"edited by b!");
    assert_eq!(remote.read(copy).await, b"edited by a");
    a.pass(true).await;
    assert_eq!(a.read("notes.md"), b"edited by b!");
    assert_eq!(a.read(copy), b"edited by a");
}

s3_test! {
    #[tokio::test]
    async fn conflict_copy_s3(server) {
        conflict(Remote::s3(server, "conflict")).await;
    }
}

#[tokio::test]
async fn conflict_copy_local() {
    let tmp = tempfile::tempdir().unwrap();
    conflict(Remote::local(tmp.path())).await;
}

async fn mass_delete(remote: Remote) {
    let a = side(
        &remote,
        &Opts {
            direction: Direction::PushOnly,
            ..Opts::default()
        },
    );
    for i in 0..60 {
        a.write(&format!("f{i}"), b"x");
    }
    a.pass(false).await;
    for i in 0..60 {
        fs::remove_file(a.root.join(format!("f{i}"))).unwrap();
    }
    let err = a
        .try_pass(PassScope::Full { verify: false }, false)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SyncError::MassDelete { .. }), "{msg}");
    assert!(
        msg.contains("60 of 60") && msg.contains("--allow-mass-delete"),
        "{msg}"
    );
    assert_eq!(remote.user_keys().len(), 60);
    let r = a
        .try_pass(PassScope::Full { verify: false }, true)
        .await
        .unwrap();
    assert_eq!(r.deleted_remote, 60);
    assert!(remote.user_keys().is_empty());
    // Still recoverable from the trash.
    let trashed = remote
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(".coltec/trash/"))
        .count();
    assert_eq!(trashed, 60);
}

s3_test! {
    #[tokio::test]
    async fn mass_delete_guard_s3(server) {
        mass_delete(Remote::s3(server, "massdel")).await;
    }
}

#[tokio::test]
async fn mass_delete_guard_local() {
    let tmp = tempfile::tempdir().unwrap();
    mass_delete(Remote::local(tmp.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn push_only_with_missing_root_deletes_nothing(server) {
        let remote = Remote::s3(server, "missing-root");
        let a = side(
            &remote,
            &Opts {
                direction: Direction::PushOnly,
                max_files: 1_000_000,
                ..Opts::default()
            },
        );
        a.write("a", b"1");
        a.write("b", b"2");
        a.pass(false).await;
        fs::remove_dir_all(&a.root).unwrap();
        let r = a.pass(true).await;
        assert_eq!(r.deleted_remote, 0);
        assert_eq!(remote.user_keys().len(), 2);
        assert!(!a.root.exists(), "push-only must not create the root");
    }
}

async fn trash(remote: Remote) {
    let a = side(
        &remote,
        &Opts {
            trash: Duration::from_secs(86400),
            ..Opts::default()
        },
    );
    a.write("f.txt", b"version 1");
    a.pass(false).await;
    a.write("f.txt", b"version 2 is longer");
    a.pass(false).await;
    let trashed: Vec<String> = remote
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(".coltec/trash/") && k.ends_with("/f.txt"))
        .collect();
    assert_eq!(trashed.len(), 1, "{:?}", remote.keys());
    assert_eq!(remote.read(&trashed[0]).await, b"version 1");

    // An expired generation is pruned at the next full reconcile; a recent one stays.
    remote
        .put(".coltec/trash/20000101T000000Z/old.txt", b"old")
        .await;
    a.pass(true).await;
    let keys = remote.keys();
    assert!(
        !keys.iter().any(|k| k.contains("20000101T000000Z")),
        "{keys:?}"
    );
    assert!(keys.contains(&trashed[0]), "{keys:?}");

    // retention 0 disables the trash.
    let tmp = tempfile::tempdir().unwrap();
    let remote2 = if let Some((server, _)) = &remote.s3 {
        Remote::s3(*server, "trash-off")
    } else {
        Remote::local(tmp.path())
    };
    let b = side(
        &remote2,
        &Opts {
            trash: Duration::ZERO,
            ..Opts::default()
        },
    );
    b.write("f.txt", b"1");
    // Not the only file: an emptied root restores instead of deleting.
    b.write("keep.txt", b"2");
    b.pass(false).await;
    fs::remove_file(b.root.join("f.txt")).unwrap();
    let r = b.pass(false).await;
    assert_eq!(r.deleted_remote, 1);
    assert!(
        remote2
            .keys()
            .iter()
            .all(|k| !k.starts_with(".coltec/trash/"))
    );
}

s3_test! {
    #[tokio::test]
    async fn trash_retention_and_pruning_s3(server) {
        trash(Remote::s3(server, "trash")).await;
    }
}

#[tokio::test]
async fn trash_retention_and_pruning_local() {
    let tmp = tempfile::tempdir().unwrap();
    trash(Remote::local(tmp.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn rclone_layout_is_adopted_without_upload_s3(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "rclone", &proxy.endpoint);
        let bucket = remote.bucket().to_string();
        // What `rclone sync --links` wrote: objects with X-Amz-Meta-Mtime.
        let files: [(&str, &[u8], u64); 3] = [
            ("config.toml", b"a = 1\n", 1_650_000_000_250_000_000),
            ("deep/dir/state.json", b"{}", 1_650_000_001_000_000_000),
            ("empty", b"", 1_650_000_002_999_999_999),
        ];
        let a = side(&remote, &Opts::default());
        for (rel, body, mtime) in files {
            let m = format!("{}.{:09}", mtime / 1_000_000_000, mtime % 1_000_000_000);
            let r = server.request(
                "PUT",
                &format!("/{bucket}/{REMOTE_PATH}/{rel}"),
                &[("x-amz-meta-mtime", &m)],
                body,
            );
            assert_eq!(r.status, 200, "{}", r.text());
            a.write(rel, body);
            set_mtime(&a.root.join(rel), mtime);
        }
        let r = server.request(
            "PUT",
            &format!("/{bucket}/{REMOTE_PATH}/link.rclonelink"),
            &[("x-amz-meta-mtime", "1650000000.000000000")],
            b"config.toml",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        symlink("config.toml", a.root.join("link")).unwrap();

        proxy.reset();
        let r = a.pass(false).await;
        assert_eq!(r.uploaded, 0, "{r:?}");
        assert_eq!(r.downloaded, 0, "{r:?}");
        assert_eq!(r.plan.adopt.files, 4);
        let writes: Vec<_> = proxy
            .seen()
            .into_iter()
            .filter(|s| s.is_write())
            .map(|s| s.target)
            .collect();
        assert_eq!(
            writes.len(),
            1,
            "only the manifest may be written: {writes:?}"
        );
        assert!(writes[0].contains(".coltec/manifest.json"), "{writes:?}");
        // The next reconcile knows everything from the manifest: no HEADs.
        proxy.reset();
        a.pass(true).await;
        assert!(!proxy.seen().iter().any(|s| s.is_head()));
    }
}

#[tokio::test]
async fn rclone_layout_is_adopted_without_upload_local() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = Remote::local(tmp.path());
    let rdir = remote.dir.clone().unwrap().join(REMOTE_PATH);
    let a = side(&remote, &Opts::default());
    // rclone's local backend keeps mtimes on the files themselves.
    for (rel, mtime) in [
        ("x.txt", 1_650_000_000_000_000_000u64),
        ("d/y.txt", 1_650_000_005_000_000_000),
    ] {
        let p = rdir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, rel.as_bytes()).unwrap();
        set_mtime(&p, mtime);
        a.write(rel, rel.as_bytes());
        set_mtime(&a.root.join(rel), mtime);
    }
    let before = fs::metadata(rdir.join("x.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let r = a.pass(false).await;
    assert_eq!(
        (r.uploaded, r.downloaded, r.plan.adopt.files),
        (0, 0, 2),
        "{r:?}"
    );
    assert_eq!(
        fs::metadata(rdir.join("x.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

s3_test! {
    #[tokio::test]
    async fn hostile_remote_keys_write_nothing_outside_the_root(server) {
        let remote = Remote::s3(server, "hostile");
        let bucket = remote.bucket().to_string();
        let outside = tempfile::tempdir().unwrap();
        // A symlink object pointing out of the root, then a file "through" it.
        remote
            .put("a.rclonelink", outside.path().to_str().unwrap().as_bytes())
            .await;
        remote.put("a/passwd", b"pwned").await;
        // Keys that are not plain relative paths (`/abs.txt` and
        // `x/../../../escape.txt` below the target).
        for key in [
            format!("/{bucket}/{REMOTE_PATH}//abs.txt"),
            format!("/{bucket}/{REMOTE_PATH}/x/%2E%2E/%2E%2E/%2E%2E/escape.txt"),
        ] {
            let r = server.request("PUT", &key, &[], b"evil");
            assert_eq!(r.status, 200, "{key}: {}", r.text());
        }
        // s3s-fs stores keys as file paths, so it normalises both away (they
        // land elsewhere in the bucket, outside the target); moto keeps them
        // verbatim, and a key the server keeps must be refused below.
        let keys = remote.keys();
        let abs_kept = keys.iter().any(|k| k == "/abs.txt");
        let escape_kept = keys.iter().any(|k| k.contains("escape.txt"));
        if server == S3Server::Moto {
            assert!(abs_kept && escape_kept, "moto keeps hostile keys: {keys:?}");
        }
        remote.put("ok.txt", b"fine").await;
        let b = side(
            &remote,
            &Opts {
                direction: Direction::PullOnly,
                ..Opts::default()
            },
        );
        let r = b
            .try_pass(PassScope::Full { verify: true }, false)
            .await
            .unwrap();
        assert_eq!(b.read("ok.txt"), b"fine");
        assert!(
            fs::read_dir(outside.path()).unwrap().next().is_none(),
            "wrote outside the root"
        );
        let failed: Vec<&str> = r.failed.iter().map(|f| f.path.as_str()).collect();
        // Whichever of the two lands first, the other is refused.
        assert!(
            failed.iter().any(|p| *p == "a" || p.contains("passwd")),
            "{failed:?}"
        );
        assert_eq!(failed.contains(&"/abs.txt"), abs_kept, "{failed:?}");
        assert_eq!(
            failed.iter().any(|p| p.contains("escape.txt")),
            escape_kept,
            "{failed:?}"
        );
        assert_eq!(
            r.failed
                .iter()
                .any(|f| f.reason.contains("refused remote key")),
            abs_kept || escape_kept,
            "{:?}",
            r.failed
        );
        let parent = b.root.parent().unwrap();
        assert!(!parent.join("escape.txt").exists());
        assert!(!b.root.join("escape.txt").exists());
    }
}

async fn torn(remote: Remote) {
    let a = side(
        &remote,
        &Opts {
            direction: Direction::PushOnly,
            // Slow enough that the writer below lands mid-upload.
            bwlimit: BwLimit {
                up: std::num::NonZeroU64::new(8 * 1024 * 1024),
                down: None,
            },
            ..Opts::default()
        },
    );
    let path = a.root.join("growing.log");
    // Larger than the snapshot limit (16 MiB): streamed, so the torn-read
    // check is what keeps it whole (smaller files are uploaded from a
    // consistent copy; see faults_sync).
    fs::write(&path, pseudo_random(17 * 1024 * 1024, 3)).unwrap();
    let p2 = path.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&p2).unwrap();
        f.write_all(b"appended while uploading").unwrap();
    });
    let r = a
        .try_pass(PassScope::Full { verify: false }, false)
        .await
        .unwrap();
    writer.join().unwrap();
    assert_eq!(r.uploaded, 0, "{r:?}");
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(
        r.failed[0].reason.contains("changed while being read"),
        "{r:?}"
    );
    assert!(remote.user_keys().is_empty(), "{:?}", remote.keys());
    // Next pass stores the settled file.
    let r = a.pass(false).await;
    assert_eq!(r.uploaded, 1);
    assert_eq!(remote.read("growing.log").await, fs::read(&path).unwrap());
}

s3_test! {
    #[tokio::test]
    async fn file_modified_during_upload_is_not_stored_torn_s3(server) {
        torn(Remote::s3(server, "torn")).await;
    }
}

#[tokio::test]
async fn file_modified_during_upload_is_not_stored_torn_local() {
    let tmp = tempfile::tempdir().unwrap();
    torn(Remote::local(tmp.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn transient_server_errors_are_retried(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "retry", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        a.write("one.txt", b"1");
        a.write("two/three.txt", b"3");
        proxy.fail_next(3);
        let r = a.pass(false).await;
        assert_eq!(r.uploaded, 2);
        assert_eq!(proxy.seen().iter().filter(|s| s.faulted).count(), 3);
        assert_eq!(remote.read("two/three.txt").await, b"3");
    }
}

/// A download's temp file left by a `kill -9` is never synced, and once it
/// is clearly abandoned (untouched for an hour) a pass deletes it; one that
/// may still be written is left alone, and a dry run deletes nothing.
#[tokio::test]
async fn abandoned_download_temp_files_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = Remote::local(tmp.path());
    let a = side(&remote, &Opts::default());
    a.write("d/keep.txt", b"k");
    a.write("d/.keep.txt.coltec-tmp-0123456789abcdef", b"partial");
    a.write(".top.txt.coltec-tmp-fedcba9876543210", b"in flight");
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    fs::File::options()
        .write(true)
        .open(a.root.join("d/.keep.txt.coltec-tmp-0123456789abcdef"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let dry = a
        .engine
        .pass(
            "state",
            PassRequest {
                scope: PassScope::Full { verify: false },
                dry_run: true,
                allow_mass_delete: false,
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(dry.plan.upload.files, 1, "{dry:?}");
    assert!(
        a.root
            .join("d/.keep.txt.coltec-tmp-0123456789abcdef")
            .exists()
    );

    let r = a.pass(false).await;
    assert_eq!(r.uploaded, 1);
    assert_eq!(remote.user_keys(), ["d/keep.txt"]);
    assert!(
        !a.root
            .join("d/.keep.txt.coltec-tmp-0123456789abcdef")
            .exists()
    );
    assert!(a.root.join(".top.txt.coltec-tmp-fedcba9876543210").exists());

    // An event on a temp file itself never makes it user data.
    let r = a
        .try_pass(
            PassScope::Paths(vec![a.root.join(".top.txt.coltec-tmp-fedcba9876543210")]),
            false,
        )
        .await
        .unwrap();
    assert!(r.plan.is_empty(), "{r:?}");
}

s3_test! {
    #[tokio::test]
    async fn dry_run_changes_nothing(server) {
        let remote = Remote::s3(server, "dry");
        let a = side(&remote, &Opts::default());
        a.write("a.txt", b"aaa");
        let r = a
            .engine
            .pass(
                "state",
                PassRequest {
                    scope: PassScope::Full { verify: false },
                    dry_run: true,
                    allow_mass_delete: false,
                },
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.plan.upload.files, 1);
        assert_eq!(r.plan.upload.bytes, 3);
        assert_eq!(r.plan.upload.first, vec!["a.txt".to_string()]);
        assert_eq!(r.uploaded, 0);
        assert!(remote.keys().is_empty());
    }
}

async fn excludes(remote: Remote) {
    let o = Opts {
        direction: Direction::PushOnly,
        excludes: vec!["node_modules/**", "*.tmp", "/build/**"],
        ..Opts::default()
    };
    let a = side(&remote, &o);
    a.write("src/main.rs", b"fn main() {}");
    a.write("node_modules/pkg/index.js", b"x");
    a.write("web/node_modules/pkg/index.js", b"x");
    a.write("scratch.tmp", b"x");
    a.write("deep/er/scratch.tmp", b"x");
    a.write("build/out.o", b"x");
    a.write("src/build/keep.txt", b"kept: /build is anchored");
    // A name the walker would report as unsyncable if it ever read the
    // excluded directory: proves the directory is pruned, not filtered.
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
    fs::write(a.root.join("node_modules").join(bad), b"x").unwrap();
    let r = a.pass(false).await;
    assert_eq!(r.uploaded, 2, "{r:?}");
    assert_eq!(
        remote.user_keys(),
        vec!["src/build/keep.txt".to_string(), "src/main.rs".to_string()]
    );

    // Objects that were stored before a path became excluded are left alone.
    let remote_keys_before = remote.user_keys();
    let b = side(
        &remote,
        &Opts {
            direction: Direction::PushOnly,
            excludes: vec!["src/build/**"],
            ..Opts::default()
        },
    );
    b.write("src/main.rs", b"fn main() {}");
    let r = b.pass(true).await;
    assert_eq!(r.deleted_remote, 0, "{r:?}");
    assert_eq!(remote.user_keys(), remote_keys_before);
}

s3_test! {
    #[tokio::test]
    async fn excludes_prune_and_never_delete_s3(server) {
        excludes(Remote::s3(server, "excludes")).await;
    }
}

#[tokio::test]
async fn excludes_prune_and_never_delete_local() {
    let tmp = tempfile::tempdir().unwrap();
    excludes(Remote::local(tmp.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn restore_of_a_coltecd_tree_needs_no_head_requests(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "restore-cheap", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        a.write("x/y.txt", b"hello");
        a.write("z.bin", &pseudo_random(100_000, 9));
        symlink("z.bin", a.root.join("link")).unwrap();
        a.pass(false).await;
        proxy.reset();
        let b = side(&remote, &Opts::default());
        let dest = b.root.join("r");
        let r = b.restore_to(&dest).await;
        assert_eq!(r.downloaded, 3);
        assert_eq!(snapshot(&a.root), snapshot(&dest));
        let seen = proxy.seen();
        assert!(!seen.iter().any(|s| s.is_head()), "{seen:?}");
        // One LIST, the manifest and one GET per file (the link target is in the manifest).
        assert_eq!(seen.iter().filter(|s| s.is_list()).count(), 1, "{seen:?}");
        assert_eq!(
            seen.iter()
                .filter(|s| s.method == "GET" && !s.is_list())
                .count(),
            3,
            "{seen:?}"
        );
    }
}

s3_test! {
    #[tokio::test]
    async fn one_shot_pass_trusts_an_unchanged_manifest(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "trust", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        a.write("f.txt", b"1");
        a.pass(false).await;
        let trust = EngineOptions {
            trust_manifest_on_open: true,
            manifest_min_interval: None,
        };

        // A new process, nothing changed: one HEAD of the manifest (its ETag
        // compared, as servers that ignore If-None-Match on GET need) and
        // one HEAD for its dirty marker (sent side by side); no LIST.
        let a = a.reopen(trust.clone());
        proxy.reset();
        let r = a.pass(false).await;
        assert!(!r.remote_listed && r.plan.is_empty(), "{r:?}");
        let seen = proxy.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen.iter().all(|s| s.is_head()), "{seen:?}");
        let mut heads: Vec<&str> = seen
            .iter()
            .filter_map(|s| s.target.rsplit_once("/.coltec/").map(|(_, k)| k))
            .collect();
        heads.sort_unstable();
        assert_eq!(heads, ["manifest.dirty", "manifest.json"], "{seen:?}");

        // Another container wrote: the manifest changed, so the pass reconciles.
        let b = side(&remote, &Opts::default());
        b.pass(false).await;
        b.write("from-b.txt", b"b");
        b.pass(false).await;
        let a = a.reopen(trust.clone());
        let r = a.pass(false).await;
        assert!(r.remote_listed, "{r:?}");
        assert_eq!(r.downloaded, 1);
        assert_eq!(a.read("from-b.txt"), b"b");

        // verify always lists.
        let a = a.reopen(trust);
        let r = a.pass(true).await;
        assert!(r.remote_listed);
    }
}

#[tokio::test]
async fn one_shot_pass_trusts_an_unchanged_manifest_local() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = Remote::local(tmp.path());
    let a = side(&remote, &Opts::default());
    a.write("f.txt", b"1");
    a.pass(false).await;
    let trust = EngineOptions {
        trust_manifest_on_open: true,
        manifest_min_interval: None,
    };
    let a = a.reopen(trust.clone());
    let r = a.pass(false).await;
    assert!(!r.remote_listed, "{r:?}");
    let b = side(&remote, &Opts::default());
    b.write("g.txt", b"g");
    b.pass(false).await;
    let a = a.reopen(trust);
    let r = a.pass(false).await;
    assert!(r.remote_listed);
    assert_eq!(a.read("g.txt"), b"g");
}

impl Remote {
    /// The paths the target's manifest lists.
    async fn manifest_paths(&self) -> Vec<String> {
        let m: serde_json::Value =
            serde_json::from_slice(&self.read(".coltec/manifest.json").await).unwrap();
        m["files"].as_object().unwrap().keys().cloned().collect()
    }

    fn has_dirty_marker(&self) -> bool {
        self.keys().contains(&".coltec/manifest.dirty".to_string())
    }
}

/// What the daemon does: manifest rewrites deferred. Meanwhile the dirty
/// marker stops another host from trusting the stale manifest (even after a
/// crash that never rewrote it), and stopping writes it and drops the marker.
async fn deferred_manifest(remote: Remote) {
    let deferred = EngineOptions {
        trust_manifest_on_open: false,
        manifest_min_interval: Some(Duration::from_secs(3600)),
    };
    let trust = EngineOptions {
        trust_manifest_on_open: true,
        manifest_min_interval: None,
    };
    let a = side(&remote, &Opts::default());
    a.write("f.txt", b"1");
    a.pass(false).await;
    let b = side(&remote, &Opts::default());
    b.pass(false).await;
    assert!(!remote.has_dirty_marker());

    let a = a.reopen(deferred.clone());
    a.pass(false).await;
    for name in ["g.txt", "h.txt"] {
        a.write(name, name.as_bytes());
        let r = a
            .try_pass(PassScope::Paths(vec![a.root.join(name)]), false)
            .await
            .unwrap();
        assert_eq!(r.uploaded, 1);
        assert!(remote.has_dirty_marker());
        assert_eq!(remote.manifest_paths().await, ["f.txt"], "rewrite deferred");
    }

    // A crashes (no flush). B's manifest identity still matches, but the
    // marker makes it list, so it sees A's files.
    drop(a);
    let b = b.reopen(trust.clone());
    let r = b.pass(false).await;
    assert!(r.remote_listed, "a dirty manifest must not be trusted");
    assert_eq!(r.downloaded, 2);
    assert_eq!(b.read("h.txt"), b"h.txt");
    // B rewrote the stale manifest, so the marker is gone.
    assert!(!remote.has_dirty_marker());
    assert_eq!(remote.manifest_paths().await, ["f.txt", "g.txt", "h.txt"]);

    // A new daemon on B: a change, then a clean stop.
    let b = b.reopen(deferred);
    b.pass(false).await;
    b.write("i.txt", b"i");
    b.try_pass(PassScope::Paths(vec![b.root.join("i.txt")]), false)
        .await
        .unwrap();
    assert!(remote.has_dirty_marker());
    b.engine
        .flush_manifests(&CancellationToken::new())
        .await
        .unwrap();
    assert!(!remote.has_dirty_marker());
    assert_eq!(
        remote.manifest_paths().await,
        ["f.txt", "g.txt", "h.txt", "i.txt"]
    );
    // ...after which the manifest is trusted again: no listing.
    let b = b.reopen(trust);
    assert!(!b.pass(false).await.remote_listed);
}

s3_test! {
    #[tokio::test]
    async fn deferred_manifest_is_never_trusted_while_dirty_s3(server) {
        deferred_manifest(Remote::s3(server, "deferred")).await;
    }
}

#[tokio::test]
async fn deferred_manifest_is_never_trusted_while_dirty_local() {
    let tmp = tempfile::tempdir().unwrap();
    deferred_manifest(Remote::local(tmp.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn fenced_gate_stops_writes_and_reopening_forces_a_reconcile(server) {
        let remote = Remote::s3(server, "fenced");
        let (ctl, gate) = coltecd::remote::gate();
        let a = side_with_gate(&remote, &Opts::default(), gate);
        a.write("a.txt", b"a");
        a.pass(false).await;

        ctl.close("lease lost: renewals failing");
        a.write("b.txt", b"b");
        let err = a
            .try_pass(PassScope::Full { verify: false }, false)
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::Fenced { .. }), "{err}");
        assert!(err.to_string().contains("renewals failing"), "{err}");
        assert_eq!(remote.user_keys(), vec!["a.txt".to_string()]);

        ctl.open();
        let r = a.pass(false).await;
        assert!(
            r.remote_listed,
            "a new gate generation must reconcile first"
        );
        assert_eq!(r.uploaded, 1);
        assert_eq!(remote.read("b.txt").await, b"b");
    }
}

s3_test! {
    #[tokio::test]
    async fn closing_the_gate_aborts_an_upload_in_flight(server) {
        let proxy = Arc::new(Proxy::start(server.endpoint()));
        let remote = Remote::s3_at(server, "fence-inflight", &proxy.endpoint);
        let (ctl, gate) = coltecd::remote::gate();
        let a = side_with_gate(
            &remote,
            &Opts {
                bwlimit: BwLimit {
                    up: std::num::NonZeroU64::new(16 * 1024 * 1024),
                    down: None,
                },
                ..Opts::default()
            },
            gate,
        );
        // Two large files: one streaming, past its first part, when
        // the gate closes (large files stream one at a time, within the
        // upload memory budget), the other queued: the one in flight must
        // abort its multipart upload and the queued one must never start.
        a.write("big.bin", &pseudo_random(24 * 1024 * 1024, 5));
        a.write("big2.bin", &pseudo_random(24 * 1024 * 1024, 6));
        // Part answers are held (the parts are stored upstream): the writer
        // is then certainly mid-stream, its next write waiting for a slot,
        // when the gate closes, however slow the machine is; the answers
        // are delivered once it had time to see the gate.
        proxy.hold_answers_when(|s| s.method == "PUT" && s.target.contains("partNumber="));
        let watch = proxy.clone();
        let closer = tokio::spawn(async move {
            let started = std::time::Instant::now();
            while watch.held() < 1 {
                assert!(started.elapsed() < Duration::from_secs(120), "uploads never started");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ctl.close("taken over by another container");
            tokio::time::sleep(Duration::from_millis(300)).await;
            watch.release();
            ctl
        });
        let err = a
            .try_pass(PassScope::Full { verify: false }, false)
            .await
            .unwrap_err();
        let _ctl = closer.await.unwrap();
        assert!(matches!(err, SyncError::Fenced { .. }), "{err}");
        assert!(remote.user_keys().is_empty(), "{:?}", remote.keys());
        // No multipart upload left behind either: each one created was
        // aborted, and the server holds no part of it (ListParts; s3s-fs has
        // no ListMultipartUploads).
        let seen = proxy.seen();
        let created = uploads_created(&seen);
        assert!(!created.is_empty(), "a file went multipart: {seen:?}");
        for (path, id) in created {
            assert!(
                seen.iter()
                    .any(|s| s.method == "DELETE" && upload_id(&s.target).as_deref() == Some(&id)),
                "upload {id} of {path} was never aborted: {seen:?}"
            );
            let query = crate::support::sigv4::encode(&id);
            let r = server.request("GET", &format!("{path}?uploadId={query}"), &[], b"");
            assert!(
                r.status == 404 || (r.status == 200 && !r.text().contains("<Part>")),
                "upload {id} of {path} left parts behind: {} {}",
                r.status,
                r.text()
            );
        }
    }
}

/// Multipart uploads the proxy saw created: (object path, upload id).
fn uploads_created(seen: &[Seen]) -> Vec<(String, String)> {
    seen.iter()
        .filter(|s| {
            s.method == "POST" && s.target.contains("?uploads") && !s.target.contains("uploadId")
        })
        .filter_map(|s| {
            let id = s
                .reply
                .split_once("<UploadId>")
                .and_then(|(_, r)| r.split_once("</UploadId>"))?
                .0;
            let path = s
                .target
                .split_once('?')
                .map_or(s.target.as_str(), |(p, _)| p);
            Some((path.to_string(), id.to_string()))
        })
        .collect()
}

/// The upload id a request's target names.
fn upload_id(target: &str) -> Option<String> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .find_map(|p| p.strip_prefix("uploadId="))
        .map(crate::support::sigv4::decode)
}

async fn fresh_checkout(remote: Remote) {
    let a = side(&remote, &Opts::default());
    a.write("repo/README.md", b"same bytes");
    a.write("repo/changed.txt", b"remote version");
    a.pass(false).await;
    // A new container: the same files re-created (new mtimes), one differs.
    let b = side(&remote, &Opts::default());
    b.write("repo/README.md", b"same bytes");
    b.write("repo/changed.txt", b"local version!");
    set_mtime(&b.root.join("repo/README.md"), 1_900_000_000_000_000_000);
    set_mtime(&b.root.join("repo/changed.txt"), 1_900_000_000_000_000_000);
    let r = b.pass(false).await;
    assert_eq!(r.plan.adopt.files, 1, "{r:?}");
    assert_eq!(r.conflicts.len(), 1, "only the differing file: {r:?}");
    assert!(
        r.conflicts[0].starts_with("repo/changed.conflict-"),
        "{r:?}"
    );
}

s3_test! {
    #[tokio::test]
    async fn identical_content_is_adopted_not_a_conflict_s3(server) {
        fresh_checkout(Remote::s3(server, "checkout")).await;
    }
}

#[tokio::test]
async fn identical_content_is_adopted_not_a_conflict_local() {
    let tmp = tempfile::tempdir().unwrap();
    fresh_checkout(Remote::local(tmp.path())).await;
}

s3_test! {
    #[tokio::test]
    async fn cancelling_a_pass_stops_transfers_and_stores_nothing_torn(server) {
        let remote = Remote::s3(server, "cancel");
        let a = side(
            &remote,
            &Opts {
                bwlimit: BwLimit {
                    up: std::num::NonZeroU64::new(1024 * 1024),
                    down: None,
                },
                ..Opts::default()
            },
        );
        a.write("big.bin", &pseudo_random(12 * 1024 * 1024, 11));
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.cancel();
        });
        let err = a
            .engine
            .pass(
                "state",
                PassRequest {
                    scope: PassScope::Full { verify: false },
                    dry_run: false,
                    allow_mass_delete: false,
                },
                &cancel,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SyncError::Cancelled), "{err}");
        assert!(remote.user_keys().is_empty(), "{:?}", remote.keys());
    }
}

s3_test! {
    #[tokio::test]
    async fn large_files_upload_as_multipart(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "multipart", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        let data = pseudo_random(20 * 1024 * 1024 + 5, 13);
        a.write("big.bin", &data);
        a.write("small.txt", b"small");
        a.pass(false).await;
        let seen = proxy.seen();
        let parts: Vec<_> = seen
            .iter()
            .filter(|s| s.method == "PUT" && s.target.contains("partNumber="))
            .collect();
        // 5 MiB parts (S3's minimum, so a stream holds little memory):
        // four full ones and the 5-byte rest.
        // (Two parts are in flight at once: sorted, not in arrival order.)
        let mut sizes: Vec<u64> = parts
            .iter()
            .map(|p| p.header("content-length").unwrap().parse().unwrap())
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(sizes, [5 << 20, 5 << 20, 5 << 20, 5 << 20, 5], "{seen:?}");
        // The small file is one plain PUT.
        assert!(
            seen.iter().any(|s| s.method == "PUT"
                && s.target.ends_with("/small.txt")
                && !s.target.contains('?'))
        );
        assert_eq!(remote.read("big.bin").await, data);
    }
}

s3_test! {
    #[tokio::test]
    async fn a_wiped_remote_does_not_wipe_the_local_tree(server) {
        let remote = Remote::s3(server, "wiped");
        let a = side(&remote, &Opts::default());
        for i in 0..60 {
            a.write(&format!("d/f{i}"), b"x");
        }
        a.pass(false).await;
        // Someone deletes the prefix behind coltecd's back.
        let op = remote.operator();
        for k in remote.keys() {
            op.delete(&k).await.unwrap();
        }
        let err = a
            .try_pass(PassScope::Full { verify: true }, false)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SyncError::MassDelete { side: "local", .. }),
            "{err}"
        );
        assert_eq!(fs::read_dir(a.root.join("d")).unwrap().count(), 60);
    }
}

#[tokio::test]
async fn path_scoped_passes_handle_deleted_and_new_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = Remote::local(tmp.path());
    let a = side(&remote, &Opts::default());
    a.write("keep.txt", b"k");
    a.write("dir/a.txt", b"a");
    a.write("dir/sub/b.txt", b"b");
    a.pass(false).await;
    fs::remove_dir_all(a.root.join("dir")).unwrap();
    a.write("new/x/y.txt", b"y");
    // An unrelated change that is not in the event list stays unseen.
    a.write("keep.txt", b"changed but not reported");
    let r = a
        .try_pass(
            PassScope::Paths(vec![a.root.join("dir"), a.root.join("new")]),
            false,
        )
        .await
        .unwrap();
    assert_eq!((r.deleted_remote, r.uploaded), (2, 1), "{r:?}");
    assert!(!r.remote_listed);
    assert_eq!(
        remote.user_keys(),
        vec!["keep.txt".to_string(), "new/x/y.txt".to_string()]
    );
    assert_eq!(remote.read("keep.txt").await, b"k");
    // The interval's full local scan catches it.
    let r = a.pass(false).await;
    assert_eq!(r.uploaded, 1);
}
