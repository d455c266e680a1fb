//! A file written continuously: uploaded from consistent copies, and a
//! failed attempt leaves no trash copy.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use coltecd::spec::Direction;
use coltecd::sync::PassScope;

use super::{Opts, Remote, side};
use crate::support::s3_test;

async fn hot_file(remote: Remote) {
    let o = Opts {
        direction: Direction::PushOnly,
        ..Opts::default()
    };
    let a = side(&remote, &o);
    let path = a.root.join("hot.log");
    fs::write(&path, vec![b'x'; 256 * 1024]).unwrap();
    a.pass().await;

    // A writer appends every few milliseconds while passes run.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p2, s2) = (path.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&p2).unwrap();
        let mut n = 0u64;
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            writeln!(f, "line {n}").unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut uploads = 1;
    for _ in 0..4 {
        // Passes a second apart: each has its own trash generation.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = a
            .run(PassScope::Paths(vec![path.clone()]), false)
            .await
            .unwrap();
        assert!(
            r.failed.is_empty(),
            "a hot small file must get through: {r:?}"
        );
        assert_eq!(r.uploaded, 1, "{r:?}");
        uploads += r.uploaded;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    uploads += a.pass().await.uploaded;
    assert_eq!(remote.read("hot.log").await, fs::read(&path).unwrap());
    // One trash copy per version actually replaced, none more.
    assert_eq!(
        remote.trash_copies_of("hot.log").await as u64,
        uploads - 1,
        "{:?}",
        remote.keys().await
    );
}

s3_test! {
    #[tokio::test]
    async fn a_hot_file_is_uploaded_whole_and_leaves_no_trash_copies_for_failed_attempts_s3(server) {
        hot_file(Remote::s3(server, "hot")).await;
    }
}

#[tokio::test]
async fn a_hot_file_is_uploaded_whole_and_leaves_no_trash_copies_for_failed_attempts_local() {
    let tmp = tempfile::tempdir().unwrap();
    hot_file(Remote::local(tmp.path())).await;
}

s3_test! {
    /// A file too large for a snapshot is streamed; an attempt that fails
    /// because it changed while being read replaced nothing, and trashed
    /// nothing.
    #[tokio::test]
    async fn a_large_file_changed_while_read_leaves_no_trash_copy_s3(server) {
        let remote = Remote::s3(server, "hot-large");
        let o = Opts {
            direction: Direction::PushOnly,
            bwlimit_up: Some(16 * 1024 * 1024),
            ..Opts::default()
        };
        let a = side(&remote, &o);
        let path = a.root.join("big.bin");
        fs::write(&path, vec![7u8; 17 * 1024 * 1024]).unwrap();
        a.pass().await;
        fs::write(&path, vec![8u8; 17 * 1024 * 1024]).unwrap();
        // Appends for as long as the pass runs: every read of it is torn.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p2, s2) = (path.clone(), stop.clone());
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&p2).unwrap();
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                f.write_all(b"appended while uploading\n").unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let r = a
            .run(PassScope::Full { verify: false }, false)
            .await
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.join().unwrap();
        assert_eq!(r.uploaded, 0, "{r:?}");
        assert!(
            r.failed[0].reason.contains("changed while being read"),
            "{r:?}"
        );
        assert_eq!(r.pending.uploads, 1, "{r:?}");
        assert_eq!(remote.trash_copies_of("big.bin").await, 0);
        let r = a.pass().await;
        assert_eq!((r.uploaded, r.pending.files), (1, 0), "{r:?}");
        assert_eq!(remote.trash_copies_of("big.bin").await, 1);
    }
}
