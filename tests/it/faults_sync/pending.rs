//! Failed downloads stay pending until a later pass delivers them.

use std::fs;

use coltecd::sync::{PassScope, RootSuspect};

use super::{Opts, REMOTE_PATH, Remote, names, side};
use crate::support::proxy::{Proxy, Seen};
use crate::support::s3_test;

/// A GET of one of the target's data objects (not a LIST, not coltecd's
/// own objects).
fn data_get(s: &Seen) -> bool {
    s.method == "GET" && !s.is_list() && s.target.contains(&format!("/{REMOTE_PATH}/d/"))
}

s3_test! {
    #[tokio::test]
    async fn failed_downloads_stay_pending_and_succeed_on_a_later_pass(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "pending-down", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        for n in names(3) {
            a.write(&n, n.as_bytes());
        }
        a.pass().await;

        // A new container pulls while every GET of a file fails with 500.
        proxy.fail_when(data_get);
        let b = side(&remote, &Opts::default()).reopen();
        let r = b
            .run(PassScope::Full { verify: false }, false)
            .await
            .unwrap();
        assert_eq!(r.downloaded, 0, "{r:?}");
        assert_eq!(r.failed.len(), 3, "{r:?}");
        assert_eq!((r.pending.files, r.pending.downloads), (3, 3), "{r:?}");
        assert!(r.pending.oldest_since.is_some());
        assert!(b.files().is_empty());

        // `coltecd sync` again (a new process trusting the manifest): the
        // downloads are planned again, not "up to date".
        let b = b.reopen();
        let r = b
            .run(PassScope::Full { verify: false }, false)
            .await
            .unwrap();
        assert_eq!(r.plan.download.files, 3, "{r:?}");
        assert_eq!(r.failed.len(), 3, "{r:?}");
        assert_eq!(r.pending.files, 3);
        assert!(r.pending.first.iter().all(|p| p.attempts == 2), "{r:?}");

        // The remote heals: the next pass of the same process delivers them.
        proxy.clear_rule();
        let r = b.pass().await;
        assert_eq!(r.downloaded, 3, "{r:?}");
        assert_eq!(r.pending.files, 0, "{r:?}");
        assert_eq!(b.files(), names(3));
        for n in names(3) {
            assert_eq!(fs::read(b.root.join(&n)).unwrap(), n.as_bytes());
        }
        let r = b.pass().await;
        assert!(r.plan.is_empty(), "{r:?}");
        // Deletes still flow once delivered.
        fs::remove_file(b.root.join("d/f0.txt")).unwrap();
        let r = b.pass().await;
        assert_eq!(r.deleted_remote, 1, "{r:?}");
    }
}

s3_test! {
    #[tokio::test]
    async fn a_failed_restore_is_not_taken_for_a_local_delete(server) {
        let proxy = Proxy::start(server.endpoint());
        let remote = Remote::s3_at(server, "undelivered", &proxy.endpoint);
        let a = side(&remote, &Opts::default());
        for n in names(4) {
            a.write(&n, n.as_bytes());
        }
        a.pass().await;
        // The root is emptied; restoring one of its files fails.
        for n in names(4) {
            fs::remove_file(a.root.join(&n)).unwrap();
        }
        proxy.fail_when(|s| data_get(s) && s.target.ends_with("/d/f1.txt"));
        let r = a
            .run(PassScope::Full { verify: false }, false)
            .await
            .unwrap();
        assert_eq!((r.downloaded, r.failed.len()), (3, 1), "{r:?}");
        assert_eq!(r.root_guard.map(|g| g.reason), Some(RootSuspect::Empty));
        proxy.clear_rule();
        // The root is not empty any more, but the file that never arrived was
        // not deleted locally: it is delivered, not deleted remotely.
        let r = a.pass().await;
        assert_eq!((r.deleted_remote, r.downloaded), (0, 1), "{r:?}");
        assert_eq!(a.files(), names(4));
        assert_eq!(remote.user_keys().await, names(4));
    }
}
