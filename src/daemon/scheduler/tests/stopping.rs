//! The stop inside its budget: the events of before the stop are collected
//! and flushed, a lost or unprovable event stream means full scans, files
//! that fail are retried then named, and a pass that will not stop is
//! abandoned so the stop still ends within `flush_deadline`.

use super::*;

/// Stop and return the exit with the virtual time the stop took.
async fn stop_timed(h: Harness) -> (SchedulerExit, Duration) {
    let t0 = Instant::now();
    let exit = h.stop().await;
    (exit, t0.elapsed())
}

#[tokio::test(start_paused = true)]
async fn events_still_queued_when_the_stop_comes_are_flushed() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    // Written just before SIGTERM: still in the kernel / the watcher.
    h.queue_at_stop(WatchMsg::Changed {
        target: 0,
        paths: vec![("/x/late".into(), 5), ("/x/gone".into(), 0)],
    });
    let rec = h.rec.clone();
    let drains = h.drains.clone();
    let (exit, _) = stop_timed(h).await;
    assert_eq!(*drains.lock().unwrap(), 1);
    assert!(exit.unflushed.is_empty(), "{:?}", exit.unflushed);
    assert_eq!(
        rec.calls().last().unwrap().1,
        Scope::Paths(vec!["/x/gone".into(), "/x/late".into()])
    );
}

#[tokio::test(start_paused = true)]
async fn events_lost_just_before_the_stop_make_the_flush_scan_the_target_whole() {
    let mut h = harness(vec![info("t", 1), info("other", 2)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.queue_at_stop(WatchMsg::Rescan {
        target: 0,
        reason: "inotify queue overflow".into(),
    });
    let rec = h.rec.clone();
    let before = rec.full_calls();
    let (exit, _) = stop_timed(h).await;
    assert!(exit.unflushed.is_empty(), "{:?}", exit.unflushed);
    let calls = rec.calls();
    assert_eq!(rec.full_calls(), before + 1, "{calls:?}");
    assert_eq!(calls.last().unwrap().0, "t");
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_never_answers_means_full_scans_still_inside_the_budget() {
    let mut h = harness(vec![info("a", 1), info("b", 2)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    *h.drain_stuck.lock().unwrap() = true;
    let budget = h.tunables.flush_deadline;
    let rec = h.rec.clone();
    let before = rec.full_calls();
    let (exit, took) = stop_timed(h).await;
    assert!(exit.unflushed.is_empty(), "{:?}", exit.unflushed);
    // Both watched targets were scanned whole, by priority.
    let calls = rec.calls();
    assert_eq!(rec.full_calls(), before + 2, "{calls:?}");
    let last: Vec<&str> = calls[calls.len() - 2..]
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(last, vec!["a", "b"]);
    assert!(took <= budget, "the stop took {took:?} of {budget:?}");
}

#[tokio::test(start_paused = true)]
async fn files_that_fail_during_the_flush_are_retried_and_named_when_they_never_make_it() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    // Fails once, then goes: flushed.
    h.queue_at_stop(WatchMsg::Changed {
        target: 0,
        paths: vec![("/x/hot".into(), 1)],
    });
    h.rec.fail_files_next(&["hot"]);
    let rec = h.rec.clone();
    let (exit, _) = stop_timed(h).await;
    assert!(exit.unflushed.is_empty(), "{:?}", exit.unflushed);
    assert_eq!(
        rec.calls().last().unwrap().1,
        Scope::Paths(vec!["/x/hot".into()])
    );

    // Fails every time: a few rounds, then reported by path.
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.queue_at_stop(WatchMsg::Changed {
        target: 0,
        paths: vec![("/x/hot".into(), 1)],
    });
    for _ in 0..10 {
        h.rec.fail_files_next(&["hot"]);
    }
    let rec = h.rec.clone();
    let before = rec.count();
    let (exit, _) = stop_timed(h).await;
    assert_eq!(rec.count() - before, 3, "{:?}", rec.calls());
    assert_eq!(
        exit.unflushed,
        vec![("t".to_string(), vec!["/x/hot".into()])]
    );
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_hangs_is_cancelled_and_the_stop_ends_within_the_budget() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.hang.lock().unwrap().push("t".into());
    h.queue_at_stop(WatchMsg::Changed {
        target: 0,
        paths: vec![("/x/a".into(), 1)],
    });
    let budget = h.tunables.flush_deadline;
    let (exit, took) = stop_timed(h).await;
    assert!(took <= budget, "the stop took {took:?} of {budget:?}");
    // Cancelled in time (not abandoned): its file is named as unflushed.
    assert!(!exit.abandoned_pass);
    assert_eq!(exit.unflushed, vec![("t".to_string(), vec!["/x/a".into()])]);
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_ignores_its_cancellation_is_abandoned_within_the_budget() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.hang.lock().unwrap().push("t".into());
    *h.rec.ignore_cancel.lock().unwrap() = true;
    h.change("/x/a", 1).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() == 2).await;
    let budget = h.tunables.flush_deadline;
    let (exit, took) = stop_timed(h).await;
    assert!(took <= budget, "the stop took {took:?} of {budget:?}");
    assert!(exit.abandoned_pass);
    assert_eq!(exit.unflushed, vec![("t".to_string(), vec!["/x/a".into()])]);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_without_flushing_and_names_what_was_pending() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.hang.lock().unwrap().push("t".into());
    *h.rec.ignore_cancel.lock().unwrap() = true;
    h.change("/x/a", 1).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() == 2).await;
    h.change("/x/b", 1).await;
    h.queue_at_stop(WatchMsg::Changed {
        target: 0,
        paths: vec![("/x/c".into(), 1)],
    });
    h.skip_flush.cancel();
    let drains = h.drains.clone();
    let budget = h.tunables.flush_deadline;
    let (exit, took) = stop_timed(h).await;
    assert!(took <= budget, "the stop took {took:?} of {budget:?}");
    // The events were collected (to name them), but no flush pass ran:
    // nothing may be written without the lease.
    assert_eq!(*drains.lock().unwrap(), 1);
    assert_eq!(rec.count(), 2);
    assert_eq!(
        exit.unflushed,
        vec![(
            "t".to_string(),
            vec!["/x/a".into(), "/x/b".into(), "/x/c".into()]
        )]
    );
}
