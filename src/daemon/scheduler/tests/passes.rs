//! What runs when: debounce, interval, priority, flush, `sync --now`,
//! file-event fallbacks.

use super::*;

#[tokio::test(start_paused = true)]
async fn first_passes_are_full_by_priority_then_ready() {
    let mut h = harness(vec![info("low", 5), info("high", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    assert_eq!(
        h.rec.calls(),
        vec![
            ("high".into(), Scope::Full { verify: false }),
            ("low".into(), Scope::Full { verify: false })
        ]
    );
    let exit = h.stop().await;
    assert!(exit.unflushed.is_empty());
    assert!(exit.fatal.is_none());
}

#[tokio::test(start_paused = true)]
async fn changes_become_paths_passes_and_interval_brings_full_passes() {
    let mut short = info("t", 1);
    short.interval = Duration::from_secs(2);
    let mut h = harness(vec![short], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Changed {
            target: 0,
            paths: vec![("/x/a".into(), 3), ("/x/b".into(), 3)],
        })
        .await
        .unwrap();
    let rec = h.rec.clone();
    eventually(|| {
        rec.calls()
            .iter()
            .any(|(_, s)| *s == Scope::Paths(vec!["/x/a".into(), "/x/b".into()]))
    })
    .await;
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].pending_files == 0).await;
    // The interval brings another full pass.
    eventually(|| rec.full_calls() >= 2).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pending_changes_show_in_status_with_sizes_and_age_until_their_pass() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Changed {
            target: 0,
            paths: vec![("/x/a".into(), 3), ("/x/b".into(), 4)],
        })
        .await
        .unwrap();
    // The scheduler took the change in; the clock has not moved, so the
    // debounce has not run out and no pass has started for it.
    settle().await;
    assert_eq!(h.rec.count(), 1, "only the first full pass ran");
    let t = &h.board.snapshot().targets[0];
    assert_eq!((t.pending_files, t.pending_bytes), (2, 7));
    assert!(t.oldest_pending_at.is_some());
    assert!(!t.pass_running);
    // Once the debounce ran out they went out and are no longer pending.
    tokio::time::sleep(h.tunables.debounce).await;
    settle().await;
    assert_eq!(
        h.rec.calls()[1],
        ("t".into(), Scope::Paths(vec!["/x/a".into(), "/x/b".into()]))
    );
    let t = &h.board.snapshot().targets[0];
    assert_eq!((t.pending_files, t.pending_bytes), (0, 0));
    assert_eq!(t.oldest_pending_at, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_continuously_written_file_still_goes_out_within_the_debounce() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    // The harness debounce is 200 ms: changes every 20 ms never leave a
    // quiet gap of 50 ms, yet a pass must happen.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    while h.rec.count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no pass while changes kept coming"
        );
        h.change("/x/log", n).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.rec.calls()[1],
        ("t".into(), Scope::Paths(vec!["/x/log".into()]))
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_pending_without_waiting_for_debounce() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.change("/x/late", 1).await;
    settle().await;
    let rec = h.rec.clone();
    let exit = h.stop().await;
    assert!(exit.unflushed.is_empty(), "{:?}", exit.unflushed);
    assert_eq!(
        rec.calls().last().unwrap(),
        &("t".into(), Scope::Paths(vec!["/x/late".into()]))
    );
}

#[tokio::test(start_paused = true)]
async fn sync_now_waits_for_a_fresh_full_pass_and_stop_cancels() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    let (tx, rx) = oneshot::channel();
    h.cmd_tx
        .send(SchedulerCommand::SyncNow { reply: tx })
        .await
        .unwrap();
    let outcomes = rx.await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].error, None);
    assert_eq!(h.rec.calls()[1], ("t".into(), Scope::Full { verify: true }));
    let (tx, rx) = oneshot::channel();
    h.cmd_tx
        .send(SchedulerCommand::Stop { reply: tx })
        .await
        .unwrap();
    assert_eq!(rx.await.unwrap(), std::process::id());
    assert!(h.shutdown.is_cancelled());
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn fallback_marks_polling_and_rescans() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Fallback {
            target: 0,
            reason: "inotify watch limit reached".into(),
        })
        .await
        .unwrap();
    let rec = h.rec.clone();
    eventually(|| rec.count() >= 2).await;
    let st = h.board.snapshot();
    assert_eq!(st.targets[0].watch.mode, WatchModeState::Polling);
    assert_eq!(h.rec.calls()[1].1, Scope::Full { verify: false });
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn interval_scans_finding_unreported_changes_switch_to_polling() {
    let mut t = info("t", 1);
    t.interval = Duration::from_millis(200);
    let mut h = harness(vec![t], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    // Every routine scan now finds a change no event reported.
    *h.rec.full_uploads.lock().unwrap() = 1;
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].watch.mode == WatchModeState::Polling).await;
    let reason = board.snapshot().targets[0].watch.reason.clone().unwrap();
    assert!(reason.contains("no file event"), "{reason}");
    // The first scan after the first sync is strike one, the next one
    // is strike two.
    assert!(h.rec.full_calls() >= 3);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn interval_scans_with_events_in_between_keep_events() {
    let mut t = info("t", 1);
    t.interval = Duration::from_millis(500);
    let mut h = harness(vec![t], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    *h.rec.full_uploads.lock().unwrap() = 1;
    // Events keep arriving (far more often than the interval), so no two
    // routine scans ever follow each other without one between.
    while h.rec.full_calls() < 5 {
        h.change("/x/a", 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = h.board.snapshot();
    assert_eq!(st.targets[0].watch.mode, WatchModeState::Events);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn partial_event_filesystems_keep_events_and_say_so() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Partial {
            target: 0,
            reason: "on nfs: ...".into(),
        })
        .await
        .unwrap();
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].watch.reason.is_some()).await;
    let st = board.snapshot();
    assert_eq!(st.targets[0].watch.mode, WatchModeState::Events);
    let text = st.render_text(crate::clock::unix_now());
    assert!(text.contains("events (on nfs: ...)"), "{text}");
    h.stop().await;
}
