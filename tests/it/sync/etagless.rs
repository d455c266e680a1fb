//! Issue 12: on a server whose listings carry no ETag (s3s-fs), nothing is
//! invented from the missing field. On moto (ETags listed) the same tests
//! hold; on s3s-fs each first proves the listing really lacks them.

use std::fs;

use coltecd::spec::Direction;
use coltecd::sync::{PassScope, SyncError};

use super::world::*;
use crate::support::proxy::Proxy;
use crate::support::s3::S3Server;
use crate::support::s3_test;

/// Whether `server` lists `bucket`'s objects without ETags.
fn listing_lacks_etags(server: S3Server, bucket: &str) -> bool {
    let r = server.request("GET", &format!("/{bucket}?list-type=2"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<Key>"), "nothing listed: {}", r.text());
    !r.text().contains("<ETag>")
}

s3_test! {
    /// A full reconcile of an unchanged tree (what the daemon's interval
    /// pass does) uploads nothing, copies nothing into the trash and
    /// rewrites nothing: no PUT, POST or server-side copy at all.
    #[tokio::test]
    async fn no_op_pass_on_a_listing_without_etags_uploads_and_trashes_nothing(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "noop-etagless", &proxy.endpoint);
        let a = side(
            &remote,
            &Opts {
                direction: Direction::PushOnly,
                ..Opts::default()
            },
        );
        for i in 0..12 {
            a.write(&format!("d{}/f{i}.txt", i % 3), format!("file {i}").as_bytes());
        }
        std::os::unix::fs::symlink("d0/f0.txt", a.root.join("link")).unwrap();
        assert_eq!(a.pass(false).await.uploaded, 13);
        assert_eq!(listing_lacks_etags(server, remote.bucket()), server == S3Server::S3s);

        for round in 0..2 {
            proxy.reset();
            let r = a.pass(true).await;
            assert!(r.remote_listed, "{r:?}");
            assert!(r.plan.is_empty(), "round {round}: {r:?}");
            assert_eq!((r.uploaded, r.downloaded, r.trashed), (0, 0, 0), "round {round}: {r:?}");
            let writes: Vec<_> = proxy.seen().into_iter().filter(|s| s.is_write()).collect();
            assert!(writes.is_empty(), "round {round}: {writes:?}");
        }
        assert!(
            !remote.keys().iter().any(|k| k.starts_with(".coltec/trash/")),
            "{:?}",
            remote.keys()
        );
    }
}

s3_test! {
    /// One touched file after that is exactly one upload.
    #[tokio::test]
    async fn one_change_on_a_listing_without_etags_is_one_upload(server) {
        let remote = Remote::s3(server, "one-etagless");
        let a = side(&remote, &Opts::default());
        for i in 0..8 {
            a.write(&format!("f{i}.txt"), format!("file {i}").as_bytes());
        }
        a.pass(false).await;
        a.write("f3.txt", b"changed");
        let r = a.pass(true).await;
        assert_eq!((r.uploaded, r.downloaded, r.conflicts.len()), (1, 0, 0), "{r:?}");
        // A second container converges on it without re-fetching the rest.
        let b = side(&remote, &Opts::default());
        for i in 0..8 {
            let body = if i == 3 { "changed".to_string() } else { format!("file {i}") };
            b.write(&format!("f{i}.txt"), body.as_bytes());
        }
        let r = b.pass(false).await;
        assert_eq!((r.uploaded, r.downloaded), (0, 0), "{r:?}");
        assert_eq!(r.plan.adopt.files, 8, "{r:?}");
        assert!(fs::read_dir(&b.root).unwrap().count() >= 8);
    }
}

s3_test! {
    /// Restoring what rclone wrote (no manifest, mtimes and modes in user
    /// metadata) into an empty directory sends no HEAD: each file's mtime
    /// and mode come from its GET's response headers; trash keys in the
    /// listing are never taken for files.
    #[tokio::test]
    async fn restore_takes_mtime_and_mode_from_the_get_not_a_head(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "restore-get-meta", &proxy.endpoint);
        let bucket = remote.bucket().to_string();
        let files: [(&str, &[u8], u64, &str); 3] = [
            ("config.toml", b"a = 1\n", 1_650_000_000_250_000_000, "100600"),
            ("deep/dir/run.sh", b"#!/bin/sh\n", 1_650_000_001_000_000_000, "100755"),
            ("plain", b"no metadata at all", 0, ""),
        ];
        for (rel, body, mtime, mode) in files {
            let m = format!("{}.{:09}", mtime / 1_000_000_000, mtime % 1_000_000_000);
            let mut headers = vec![];
            if mtime != 0 {
                headers.push(("x-amz-meta-mtime", m.as_str()));
                headers.push(("x-amz-meta-mode", mode));
            }
            let r = server.request("PUT", &format!("/{bucket}/{REMOTE_PATH}/{rel}"), &headers, body);
            assert_eq!(r.status, 200, "{}", r.text());
        }
        // Old versions in the trash that a listing must not page through.
        for i in 0..5 {
            let key = format!("/{bucket}/{REMOTE_PATH}/.coltec/trash/20260101T000000Z/old{i}");
            assert_eq!(server.request("PUT", &key, &[], b"old").status, 200);
        }
        let b = side(&remote, &Opts::default());
        let dest = b.root.join("r");
        proxy.reset();
        let r = b.restore_to(&dest).await;
        assert_eq!(r.downloaded, 3, "{r:?}");
        let seen = proxy.seen();
        assert!(!seen.iter().any(|s| s.is_head()), "{seen:?}");
        assert_eq!(seen.iter().filter(|s| s.is_list()).count(), 1, "{seen:?}");
        assert!(!seen.iter().any(|s| s.target.contains("/.coltec/trash/")), "{seen:?}");
        let got = snapshot(&dest);
        for (rel, body, mtime, mode) in files {
            let Node::File { data, mode: m, mtime: t } = &got[rel] else {
                panic!("{rel} is not a file: {got:?}");
            };
            assert_eq!(data.as_slice(), body, "{rel}");
            if mtime != 0 {
                let want = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(mtime);
                assert_eq!(*t, want, "{rel}");
                assert_eq!(format!("{:o}", 0o100000 | m), mode, "{rel}");
            } else {
                // The server's Last-Modified (from the GET): not "now" at the
                // epoch, not missing.
                assert!(*t > std::time::UNIX_EPOCH, "{rel}");
            }
        }
    }
}

s3_test! {
    /// A push-only pass that would overwrite most remote files although
    /// their local copies did not change since the last sync (here another
    /// tool rewrote them) stops like the mass-delete guard, writes nothing,
    /// and proceeds with `--allow-mass-delete`; the pass reports the old
    /// versions it kept in the trash.
    #[tokio::test]
    async fn mass_overwrite_of_unchanged_local_files_is_stopped(server) {
        let remote = Remote::s3(server, "mass-overwrite");
        let bucket = remote.bucket().to_string();
        let opts = Opts {
            direction: Direction::PushOnly,
            max_files: 5,
            ..Opts::default()
        };
        let a = side(&remote, &opts);
        for i in 0..10 {
            a.write(&format!("f{i}.txt"), format!("file {i}").as_bytes());
        }
        assert_eq!(a.pass(false).await.uploaded, 10);
        for i in 0..8 {
            let r = server.request(
                "PUT",
                &format!("/{bucket}/{REMOTE_PATH}/f{i}.txt"),
                &[],
                format!("other {i}").as_bytes(),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let err = a
            .try_pass(PassScope::Full { verify: true }, false)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SyncError::MassOverwrite { .. }), "{msg}");
        assert!(msg.contains("8 of 10") && msg.contains("--allow-mass-delete"), "{msg}");
        assert_eq!(remote.read("f0.txt").await, b"other 0");
        assert!(!remote.keys().iter().any(|k| k.starts_with(".coltec/trash/")));

        let r = a
            .try_pass(PassScope::Full { verify: true }, true)
            .await
            .unwrap();
        assert_eq!((r.uploaded, r.trashed), (8, 8), "{r:?}");
        assert_eq!(remote.read("f0.txt").await, b"file 0");
        let trash = remote.keys().into_iter().filter(|k| k.starts_with(".coltec/trash/")).count();
        assert_eq!(trash, 8);
    }
}
