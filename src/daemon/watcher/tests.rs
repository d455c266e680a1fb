//! The watch worker against real inotify: roots that appear later, new
//! files and directories, and the stop-time drain.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::*;

fn io(
    out: mpsc::Sender<WatchMsg>,
    barrier_dir: Option<PathBuf>,
) -> (WatchIo, mpsc::Sender<DrainRequest>) {
    let (tx, rx) = mpsc::channel(1);
    (
        WatchIo {
            out,
            drain: rx,
            barrier_dir,
        },
        tx,
    )
}

/// The stop-time drain: an edit made right before the drain request is
/// reported before the drain is answered, every time (the barrier makes
/// it deterministic: no sleep between the writes and the request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_hands_over_every_event_queued_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let (io, drain) = io(tx, Some(tmp.path().join("state").join(BARRIER_DIR)));
    let task = tokio::spawn(run(
        vec![WatchTarget {
            index: 0,
            name: "t".into(),
            root: root.clone(),
            excludes: Excludes::default(),
        }],
        io,
        cancel.clone(),
    ));
    // Wait until the watch is placed: a first drain answers once set up.
    let mut k = 0;
    loop {
        let probe = root.join(format!("probe-{k}"));
        k += 1;
        std::fs::write(&probe, b"p").unwrap();
        let (reply, done) = oneshot::channel();
        drain.send(reply).await.unwrap();
        done.await.unwrap();
        let mut seen = false;
        while let Ok(msg) = rx.try_recv() {
            if let WatchMsg::Changed { paths, .. } = msg {
                seen |= paths.iter().any(|(p, _)| *p == probe);
            }
        }
        if seen {
            break;
        }
        assert!(k < 600, "the watch was never placed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..3 {
        std::fs::write(root.join(format!("probe-{i}")), b"p").unwrap();
    }
    let (reply, done) = oneshot::channel();
    drain.send(reply).await.unwrap();
    done.await.unwrap();
    while rx.try_recv().is_ok() {}
    for round in 0..20 {
        let edited = root.join(format!("probe-{}", round % 3));
        let created = root.join(format!("new-{round}"));
        let deleted = root.join(format!("probe-{}", (round + 1) % 3));
        std::fs::write(&edited, format!("{round}")).unwrap();
        std::fs::write(&created, b"n").unwrap();
        let _ = std::fs::remove_file(&deleted);
        let (reply, done) = oneshot::channel();
        drain.send(reply).await.unwrap();
        done.await.unwrap();
        let mut seen = BTreeMap::new();
        while let Ok(msg) = rx.try_recv() {
            if let WatchMsg::Changed { paths, .. } = msg {
                seen.extend(paths);
            }
        }
        for p in [&edited, &created, &deleted] {
            assert!(
                seen.contains_key(p),
                "round {round}: {p:?} not drained: {seen:?}"
            );
        }
        let _ = std::fs::write(&deleted, b"back");
    }
    // A burst: hundreds of files written right before the request are all
    // handed over (or, if the queue overflowed, a rescan says so).
    for round in 0..3 {
        let burst: Vec<PathBuf> = (0..400)
            .map(|i| root.join(format!("burst-{round}-{i}")))
            .collect();
        for p in &burst {
            std::fs::write(p, b"b").unwrap();
        }
        let (reply, done) = oneshot::channel();
        drain.send(reply).await.unwrap();
        done.await.unwrap();
        let mut seen = BTreeMap::new();
        let mut rescan = false;
        while let Ok(msg) = rx.try_recv() {
            match msg {
                WatchMsg::Changed { paths, .. } => seen.extend(paths),
                WatchMsg::Rescan { .. } => rescan = true,
                _ => {}
            }
        }
        let missing: Vec<_> = burst.iter().filter(|p| !seen.contains_key(*p)).collect();
        assert!(
            rescan || missing.is_empty(),
            "burst {round}: {} of {} not drained, e.g. {:?}",
            missing.len(),
            burst.len(),
            missing.first()
        );
    }
    // The barrier file never shows up as a change, and is cleaned up.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("state").join(BARRIER_DIR))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_that_appears_later_or_comes_back_is_watched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("later");
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let (io, _drain) = io(tx, None);
    let task = tokio::spawn(run(
        vec![WatchTarget {
            index: 0,
            name: "t".into(),
            root: root.clone(),
            excludes: Excludes::default(),
        }],
        io,
        cancel.clone(),
    ));
    for round in 0..2 {
        std::fs::create_dir_all(&root).unwrap();
        // Keep writing new files until one is reported: the watch is
        // placed asynchronously once the directory exists.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut seen = false;
        let mut k = 0;
        while !seen {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: never watched"
            );
            let file = root.join(format!("f{round}-{k}"));
            k += 1;
            std::fs::write(&file, b"x").unwrap();
            let until = tokio::time::Instant::now() + Duration::from_millis(1500);
            while let Ok(Some(msg)) = tokio::time::timeout_at(until, rx.recv()).await {
                if let WatchMsg::Changed { paths, .. } = msg
                    && paths.iter().any(|(p, _)| *p == file)
                {
                    seen = true;
                    break;
                }
            }
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_new_files_and_files_in_new_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let (io, _drain) = io(tx, None);
    let task = tokio::spawn(run(
        vec![WatchTarget {
            index: 0,
            name: "t".into(),
            root: root.clone(),
            excludes: Excludes::default(),
        }],
        io,
        cancel.clone(),
    ));
    // Give the initial watches a moment to be placed, then write.
    let mut seen: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let wanted = [root.join("sub/a.txt"), root.join("new/deep/b.txt")];
    let mut wrote = false;
    while tokio::time::Instant::now() < deadline && !wanted.iter().all(|w| seen.contains_key(w)) {
        if !wrote {
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::fs::write(root.join("sub/a.txt"), b"hello").unwrap();
            std::fs::create_dir_all(root.join("new/deep")).unwrap();
            std::fs::write(root.join("new/deep/b.txt"), b"hi").unwrap();
            wrote = true;
        }
        if let Ok(Some(WatchMsg::Changed { paths, .. })) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        {
            seen.extend(paths);
        }
    }
    assert_eq!(seen.get(&root.join("sub/a.txt")), Some(&5), "{seen:?}");
    assert!(seen.contains_key(&root.join("new/deep/b.txt")), "{seen:?}");
    cancel.cancel();
    task.await.unwrap();
}
