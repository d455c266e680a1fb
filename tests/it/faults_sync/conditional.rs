//! Data writes carry the version their writer last saw: a stale view
//! becomes a conflict (412), never a silent overwrite.

use std::collections::BTreeSet;
use std::fs;

use coltecd::spec::Direction;

use super::{Opts, REMOTE_PATH, Remote, side};
use crate::support::proxy::Proxy;
use crate::support::s3_test;

s3_test! {
    #[tokio::test]
    async fn a_stale_view_overwrite_becomes_a_conflict_via_412_s3(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "stale-412", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        a.write("notes.md", b"v1");
        a.pass().await;

        // Another writer replaces the object behind A's back; A, whose view is
        // now stale (no listing between passes), edits its copy.
        remote.put("notes.md", b"the other writer's version").await;
        a.write("notes.md", b"mine, edited locally");
        // And both create the same new file.
        remote.put("new.md", b"theirs").await;
        a.write("new.md", b"ours, also new");
        proxy.reset();
        let r = a.pass().await;

        // Both writes were conditional, and refused.
        let conditional = |key: &str, header: &str| {
            proxy
                .seen()
                .iter()
                .filter(|s| {
                    s.method == "PUT"
                        && s.target.ends_with(&format!("/{REMOTE_PATH}/{key}"))
                        && s.header(header).is_some()
                })
                .count()
        };
        assert!(
            conditional("notes.md", "if-match") >= 2,
            "{:?}",
            proxy.seen()
        );
        assert!(
            conditional("new.md", "if-none-match") >= 1,
            "{:?}",
            proxy.seen()
        );
        // Neither version is lost: each other version is a conflict copy.
        assert_eq!(r.conflicts.len(), 2, "{r:?}");
        assert_eq!(
            fs::read(a.root.join("notes.md")).unwrap(),
            b"mine, edited locally"
        );
        assert_eq!(remote.read("notes.md").await, b"mine, edited locally");
        let copy = r.conflicts.iter().find(|c| c.starts_with("notes")).unwrap();
        assert_eq!(
            fs::read(a.root.join(copy)).unwrap(),
            b"the other writer's version"
        );
        assert_eq!(remote.read(copy).await, b"the other writer's version");
        let copy = r.conflicts.iter().find(|c| c.starts_with("new")).unwrap();
        assert_eq!(remote.read(copy).await, b"theirs");
        assert_eq!(remote.read("new.md").await, b"ours, also new");
        // The trash holds what was replaced (the other version, once): no copy
        // for the refused attempt.
        assert_eq!(remote.trash_copies_of("notes.md").await, 1);
        // The next pass finds nothing left to do.
        let r = a.pass().await;
        assert!(r.plan.is_empty(), "{r:?}");
    }
}

s3_test! {
    #[tokio::test]
    async fn push_only_keeps_the_other_writers_version_as_a_remote_conflict_copy_s3(server) {
        let remote = Remote::s3(server, "stale-push");
        let o = Opts {
            direction: Direction::PushOnly,
            ..Opts::default()
        };
        let a = side(&remote, &o);
        a.write("cfg.json", b"{}");
        a.pass().await;
        remote.put("cfg.json", b"{\"other\": true}").await;
        a.write("cfg.json", b"{\"mine\": true}");
        let r = a.pass().await;
        assert_eq!(r.conflicts.len(), 1, "{r:?}");
        assert_eq!(remote.read("cfg.json").await, b"{\"mine\": true}");
        assert_eq!(remote.read(&r.conflicts[0]).await, b"{\"other\": true}");
        assert_eq!(a.files(), BTreeSet::from(["cfg.json".to_string()]));
    }
}

s3_test! {
    #[tokio::test]
    async fn without_the_lease_no_condition_is_sent_s3(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "no-lease", &proxy.endpoint);
        let o = Opts {
            lease: false,
            ..Opts::default()
        };
        let a = side(&remote, &o);
        a.write("f", b"1");
        a.pass().await;
        a.write("f", b"22");
        a.pass().await;
        let puts: Vec<_> = proxy
            .seen()
            .into_iter()
            .filter(|s| s.method == "PUT" && s.target.ends_with(&format!("/{REMOTE_PATH}/f")))
            .collect();
        assert_eq!(puts.len(), 2, "{puts:?}");
        assert!(
            puts.iter()
                .all(|s| s.header("if-match").is_none() && s.header("if-none-match").is_none()),
            "{puts:?}"
        );
    }
}

s3_test! {
    /// Multipart uploads carry the condition on CompleteMultipartUpload:
    /// moto honours `If-None-Match` there (AWS honours both).
    #[tokio::test]
    async fn a_multipart_upload_of_a_key_believed_new_is_refused_when_it_exists_s3(server) {
        let remote = Remote::s3(server, "stale-multipart");
        let a = side(&remote, &Opts::default());
        a.write("keep.txt", b"so the root is not empty");
        a.pass().await;
        let theirs = vec![1u8; 17 * 1024 * 1024];
        let ours = vec![2u8; 17 * 1024 * 1024];
        remote.put("big.bin", &theirs).await;
        a.write("big.bin", &ours);
        let r = a.pass().await;
        assert_eq!(r.conflicts.len(), 1, "{r:?}");
        assert!(remote.read("big.bin").await == ours);
        assert!(remote.read(&r.conflicts[0]).await == theirs);
        assert!(fs::read(a.root.join(&r.conflicts[0])).unwrap() == theirs);
    }
}
