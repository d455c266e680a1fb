//! What happens after a pass failed as a whole, by the error's
//! disposition: retry with backoff, wait for a human, requeue, stop.

use super::*;
use crate::error::{ExitStatus, HasExitStatus};

fn mass_delete() -> SyncError {
    SyncError::MassDelete {
        target: "t".into(),
        count: 900,
        total: 1000,
        side: "remote",
        max_files: 50,
        pct: "50".into(),
    }
}

/// Past every backoff and interval the harness uses.
const AN_HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn failed_first_pass_fails_readiness() {
    let h = harness(vec![info("t", 1)], vec![remote_unreachable()]);
    let failure = h.ready.await.unwrap().unwrap_err();
    assert_eq!(failure.target, "t");
    assert_eq!(failure.exit_status(), ExitStatus::Remote);
    assert!(
        failure.message().contains("remote unreachable"),
        "{}",
        failure.message()
    );
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_remote_failure_is_retried_after_a_backoff() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.fail_next(remote_unreachable());
    h.change("/x/a", 1).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() >= 3).await;
    let at = h.rec.started_at.lock().unwrap().clone();
    // Retried with the paths still pending, after at least half the first
    // backoff (the jitter takes off up to half).
    assert_eq!(h.rec.calls()[2].1, Scope::Paths(vec!["/x/a".into()]));
    assert!(
        at[2] - at[1] >= target::FIRST_BACKOFF / 2,
        "{:?}",
        at[2] - at[1]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_mass_delete_refusal_is_not_retried_until_a_local_change_and_status_says_what_to_do() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.fail_next(mass_delete());
    h.change("/x/gone", 0).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() == 2).await;
    // An hour later (past backoff and interval) nothing was retried.
    tokio::time::sleep(AN_HOUR).await;
    assert_eq!(h.rec.count(), 2, "{:?}", h.rec.calls());
    let st = h.board.snapshot();
    let t = &st.targets[0];
    let err = t.last_error.as_deref().unwrap();
    assert!(err.contains("refusing to delete 900 of 1000"), "{err}");
    assert!(err.contains("waiting for you"), "{err}");
    assert!(
        err.contains("coltecd sync --only t --allow-mass-delete"),
        "{err}"
    );
    assert_eq!(t.next_check_at, None);
    assert_eq!(t.pending_files, 1, "the refused change stays pending");
    let text = st.render_text(crate::clock::unix_now());
    assert!(text.contains("--allow-mass-delete"), "{text}");
    // Something changed locally: the target gets its pass again.
    h.change("/x/back", 1).await;
    eventually(|| rec.count() == 3).await;
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].last_error.is_none()).await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_mass_delete_refusal_is_retried_after_a_reload_or_sync_now() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.fail_next(mass_delete());
    h.rec.fail_next(mass_delete());
    h.change("/x/gone", 0).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() == 2).await;
    tokio::time::sleep(AN_HOUR).await;
    assert_eq!(h.rec.count(), 2);
    // SIGHUP: another try (refused again).
    h.reload_tx.send(h.tunables.clone()).await.unwrap();
    eventually(|| rec.count() == 3).await;
    tokio::time::sleep(AN_HOUR).await;
    assert_eq!(h.rec.count(), 3);
    // `sync --now`: another try (this one goes through).
    let (tx, rx) = oneshot::channel();
    h.cmd_tx
        .send(SchedulerCommand::SyncNow { reply: tx })
        .await
        .unwrap();
    let outcomes = rx.await.unwrap();
    assert_eq!(outcomes[0].error, None, "{outcomes:?}");
    assert_eq!(h.rec.calls()[3].1, Scope::Full { verify: true });
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_target_is_not_retried_by_the_shutdown_flush() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.fail_next(mass_delete());
    h.change("/x/gone", 0).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() == 2).await;
    let exit = h.stop().await;
    assert_eq!(rec.count(), 2);
    assert_eq!(
        exit.unflushed,
        vec![("t".to_string(), vec!["/x/gone".into()])]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_pass_is_requeued_without_backoff() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec.fail_next(SyncError::Cancelled);
    h.change("/x/a", 1).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() >= 3).await;
    let at = h.rec.started_at.lock().unwrap().clone();
    // Run again at once (the backoff would be 2.5 s at the least), with
    // its paths; a cancelled pass is no error to show.
    assert_eq!(at[2], at[1], "{:?}", at[2] - at[1]);
    assert_eq!(h.rec.calls()[2].1, Scope::Paths(vec!["/x/a".into()]));
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].pending_files == 0).await;
    assert_eq!(h.board.snapshot().targets[0].last_error, None);
    // The backoff did not grow either: a remote failure now waits the
    // first backoff (at most), not a doubled one.
    h.rec.fail_next(remote_unreachable());
    h.change("/x/b", 1).await;
    eventually(|| rec.count() >= 5).await;
    let at = h.rec.started_at.lock().unwrap().clone();
    assert!(
        at[4] - at[3] <= target::FIRST_BACKOFF,
        "{:?}",
        at[4] - at[3]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_internal_error_stops_the_scheduler_with_it() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.rec
        .fail_next(SyncError::Internal("invariant broken".into()));
    h.change("/x/a", 1).await;
    let exit = tokio::time::timeout(AN_HOUR, &mut h.task)
        .await
        .expect("the scheduler stops by itself")
        .unwrap();
    assert!(h.shutdown.is_cancelled());
    let fatal = exit.fatal.unwrap();
    assert_eq!(fatal.target, "t");
    assert_eq!(fatal.error.exit_status(), ExitStatus::Failure);
    assert!(fatal.message().contains("invariant broken"));
    // Its changes were not retried, so they are reported unflushed.
    assert_eq!(h.rec.count(), 2);
    assert_eq!(exit.unflushed, vec![("t".to_string(), vec!["/x/a".into()])]);
}
