//! Issue 12: a restore starts downloading while it still lists (the
//! time-to-ready of a new container), and what that early start may not
//! do: keep a file whose path turns out to be held by a symlink object too.

use std::time::{Duration, Instant};

use coltecd::sync::{PassRequest, PassScope};
use futures::{StreamExt, stream};
use tokio_util::sync::CancellationToken;

use super::world::*;
use crate::support::proxy::{Proxy, Seen};
use crate::support::s3::S3Server;
use crate::support::s3_test;

/// More than one 1000-key page of ListObjectsV2.
const FILES: usize = 1003;

fn is_next_page(s: &Seen) -> bool {
    s.is_list() && s.target.contains("continuation-token")
}

fn is_object_get(s: &Seen) -> bool {
    s.method == "GET" && !s.is_list() && !s.target.contains("/.coltec/")
}

/// How a fresh directory gets the remote's files.
#[derive(Clone, Copy)]
enum Fill {
    /// `coltecd restore --to DIR`.
    Restore,
    /// The first pass of a target never synced here, into a root that does
    /// not exist yet (what `coltecd start` waits for on a new container).
    FirstPass,
}

/// While the listing's second page is held back by the proxy, objects of
/// the first page are already being fetched; one that listed everything
/// first would never send a GET until the page is released.
async fn fetches_the_first_page_while_the_next_is_listed(server: S3Server, fill: Fill) {
    let tag = match fill {
        Fill::Restore => "stream-restore",
        Fill::FirstPass => "stream-first-pass",
    };
    let proxy = Proxy::start(server.endpoint());
    let remote = Remote::s3_at(server, tag, &proxy.endpoint);
    let op = remote.operator();
    stream::iter(0..FILES)
        .map(|i| {
            let op = op.clone();
            async move {
                let body = format!("file {i}\n");
                op.write(&format!("d{}/f{i:04}.txt", i % 7), body.into_bytes())
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let b = side(&remote, &Opts::default());
    let dest = match fill {
        Fill::Restore => b.root.join("r"),
        Fill::FirstPass => {
            std::fs::remove_dir_all(&b.root).unwrap();
            b.root.clone()
        }
    };
    proxy.reset();
    proxy.hold_answers_when(is_next_page);
    let cancel = CancellationToken::new();
    let fetch = async {
        match fill {
            Fill::Restore => b.engine.restore("state", Some(&dest), false, &cancel).await,
            Fill::FirstPass => {
                let req = PassRequest {
                    scope: PassScope::Full { verify: false },
                    dry_run: false,
                    allow_mass_delete: false,
                };
                b.engine.pass("state", req, &cancel).await
            }
        }
    };
    let watch = async {
        // A deadline only against a hang: the GET either comes while the
        // page is held or never.
        let deadline = Instant::now() + Duration::from_secs(120);
        let fetched_early = loop {
            if proxy.held() > 0 && proxy.seen().iter().any(is_object_get) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let before_release = proxy.seen();
        proxy.release();
        (fetched_early, before_release)
    };
    let (report, (fetched_early, seen)) = tokio::join!(fetch, watch);
    let report = report.unwrap();
    assert!(
        fetched_early,
        "no object GET while the second LIST page was held: {:?}",
        seen.iter()
            .map(|s| (&s.method, &s.target))
            .collect::<Vec<_>>()
    );
    assert!(
        seen.iter().any(is_next_page),
        "the listing has one page only"
    );
    assert_eq!(report.downloaded, FILES as u64, "{report:?}");
    assert_eq!(report.plan.download.files, FILES as u64, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    for i in [0, 999, 1000, FILES - 1] {
        let rel = format!("d{}/f{i:04}.txt", i % 7);
        assert_eq!(
            std::fs::read_to_string(dest.join(&rel)).unwrap(),
            format!("file {i}\n"),
            "{rel}"
        );
    }
    if let Fill::FirstPass = fill {
        // Every fetched file is the base now: the next pass moves nothing.
        let again = b.pass(true).await;
        assert!(again.plan.is_empty(), "{again:?}");
        assert_eq!((again.uploaded, again.downloaded), (0, 0), "{again:?}");
    }
}

s3_test! {
    #[tokio::test]
    async fn restore_downloads_the_first_page_while_the_next_is_still_listed(server) {
        fetches_the_first_page_while_the_next_is_listed(server, Fill::Restore).await;
    }
}

s3_test! {
    #[tokio::test]
    async fn first_pass_into_a_new_root_downloads_while_it_still_lists(server) {
        fetches_the_first_page_while_the_next_is_listed(server, Fill::FirstPass).await;
    }
}

s3_test! {
    /// `x` is listed (and fetched) before `x.rclonelink` shows the path is
    /// held by both a file and a symlink object: the restore takes the
    /// file back, reports the conflict and leaves nothing at `x`.
    #[tokio::test]
    async fn a_file_fetched_before_its_symlink_object_was_listed_is_taken_back(server) {
        let remote = Remote::s3(server, "restore-undo");
        remote.put("x", b"a file").await;
        remote.put("x.rclonelink", b"elsewhere").await;
        remote.put("y.txt", b"kept").await;
        let b = side(&remote, &Opts::default());
        let dest = b.root.join("r");
        let report = b.restore_to(&dest).await;
        assert!(
            report
                .failed
                .iter()
                .any(|f| f.path == "x" && f.reason.contains("x.rclonelink")),
            "{report:?}"
        );
        assert!(std::fs::symlink_metadata(dest.join("x")).is_err(), "x was left behind");
        assert_eq!(std::fs::read_to_string(dest.join("y.txt")).unwrap(), "kept");
        assert_eq!(report.downloaded, 1, "{report:?}");
    }
}
