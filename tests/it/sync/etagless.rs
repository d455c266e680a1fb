//! Issue 12: on a server whose listings carry no ETag (s3s-fs), nothing is
//! invented from the missing field. On moto (ETags listed) the same tests
//! hold; on s3s-fs each first proves the listing really lacks them.

use std::fs;

use coltecd::spec::Direction;

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
            assert_eq!((r.uploaded, r.downloaded), (0, 0), "round {round}: {r:?}");
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
