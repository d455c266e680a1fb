//! An emptied, missing or replaced root restores instead of deleting.

use std::fs;

use coltecd::spec::Direction;
use coltecd::sync::{PassScope, RootSuspect};

use super::{Opts, Remote, names, side};
use crate::support::s3_test;

async fn an_emptied_root(remote: Remote) {
    let a = side(&remote, &Opts::default());
    for n in names(10) {
        a.write(&n, n.as_bytes());
    }
    a.pass().await;
    assert_eq!(remote.user_keys().await, names(10));

    // The daemon stops; the directory comes back empty (another volume).
    fs::remove_dir_all(&a.root).unwrap();
    fs::create_dir_all(&a.root).unwrap();
    let a = a.reopen();
    let r = a.pass().await;
    assert_eq!(r.deleted_remote, 0, "{r:?}");
    assert_eq!(
        remote.user_keys().await,
        names(10),
        "the remote was emptied"
    );
    assert_eq!(a.files(), names(10), "the local side was not restored");
    let guard = r.root_guard.expect("the pass must say it restored");
    assert_eq!(guard.reason, RootSuspect::Replaced);
    assert_eq!(guard.base_files, 10);
    assert!(
        guard.describe().contains("10 file(s)"),
        "{}",
        guard.describe()
    );

    // The same directory emptied while the daemon runs (an event-driven
    // pass), below the mass-delete thresholds: restored too.
    for n in names(10) {
        fs::remove_file(a.root.join(&n)).unwrap();
    }
    let r = a
        .run(PassScope::Paths(vec![a.root.join("d")]), false)
        .await
        .unwrap();
    assert_eq!(r.deleted_remote, 0, "{r:?}");
    assert_eq!(r.root_guard.map(|g| g.reason), Some(RootSuspect::Empty));
    assert_eq!(remote.user_keys().await, names(10));
    assert_eq!(a.files(), names(10));
    let r = a.pass().await;
    assert!(r.plan.is_empty() && r.root_guard.is_none(), "{r:?}");

    // Deleting every file is still possible when the caller says so.
    for n in names(10) {
        fs::remove_file(a.root.join(&n)).unwrap();
    }
    let r = a
        .run(PassScope::Full { verify: false }, true)
        .await
        .unwrap();
    assert_eq!(r.deleted_remote, 10, "{r:?}");
    assert!(remote.user_keys().await.is_empty());
}

s3_test! {
    #[tokio::test]
    async fn empty_root_at_start_restores_instead_of_deleting_s3(server) {
        an_emptied_root(Remote::s3(server, "empty-root")).await;
    }
}

#[tokio::test]
async fn empty_root_at_start_restores_instead_of_deleting_local() {
    let tmp = tempfile::tempdir().unwrap();
    an_emptied_root(Remote::local(tmp.path())).await;
}

async fn push_only_emptied_root(remote: Remote) {
    let o = Opts {
        direction: Direction::PushOnly,
        ..Opts::default()
    };
    let a = side(&remote, &o);
    for n in names(5) {
        a.write(&n, n.as_bytes());
    }
    a.pass().await;
    for n in names(5) {
        fs::remove_file(a.root.join(&n)).unwrap();
    }
    let r = a.pass().await;
    assert_eq!(r.deleted_remote, 0, "{r:?}");
    assert_eq!(r.root_guard.map(|g| g.reason), Some(RootSuspect::Empty));
    // Replaced by another directory at start: nothing deleted either, and
    // the files found there are pushed.
    fs::remove_dir_all(&a.root).unwrap();
    fs::create_dir_all(&a.root).unwrap();
    a.write("new.txt", b"new");
    let a = a.reopen();
    let r = a.pass().await;
    assert_eq!(r.deleted_remote, 0, "{r:?}");
    assert_eq!(r.root_guard.map(|g| g.reason), Some(RootSuspect::Replaced));
    let mut want = names(5);
    want.insert("new.txt".into());
    assert_eq!(remote.user_keys().await, want);
    // From then on this directory is the target's: no more warnings, and
    // what was stored from the old one is never deleted.
    let r = a.pass().await;
    assert!(r.root_guard.is_none() && r.plan.is_empty(), "{r:?}");
    assert_eq!(remote.user_keys().await, want);
}

s3_test! {
    #[tokio::test]
    async fn push_only_deletes_nothing_for_an_emptied_or_replaced_root_s3(server) {
        push_only_emptied_root(Remote::s3(server, "push-empty")).await;
    }
}

#[tokio::test]
async fn push_only_deletes_nothing_for_an_emptied_or_replaced_root_local() {
    let tmp = tempfile::tempdir().unwrap();
    push_only_emptied_root(Remote::local(tmp.path())).await;
}
