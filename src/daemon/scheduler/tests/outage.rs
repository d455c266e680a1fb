//! An outage as the scheduler and `status` see it: degraded from the first
//! failed pass, with since when and what is pending; and when the write
//! gate re-opens (a fenced lease proved still ours), the fenced changes go
//! out at once instead of after their backoff.

use super::*;

fn fenced() -> SyncError {
    SyncError::Fenced {
        target: "t".into(),
        reason: "lease lost on local:/r: renewals failing".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn status_is_degraded_from_the_first_failed_pass_with_since_and_pending() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    assert_eq!(h.board.snapshot().health, Health::Healthy);
    h.rec.fail_next(remote_unreachable());
    h.change("/x/a", 3).await;
    let rec = h.rec.clone();
    eventually(|| rec.count() == 2).await;
    settle().await;
    let st = h.board.snapshot();
    assert_eq!(st.health, Health::Degraded, "{:?}", st.problems);
    let t = &st.targets[0];
    assert!(t.failing_since.is_some(), "{t:?}");
    let problem = st.problems.join("\n");
    assert!(problem.contains("t (failing since"), "{problem}");
    assert!(problem.contains("remote unreachable"), "{problem}");
    assert!(problem.contains("1 file(s) pending, oldest"), "{problem}");
    let text = st.render_text(crate::clock::unix_now());
    assert!(text.contains("DEGRADED"), "{text}");
    // The retry succeeds: healthy again, nothing failing.
    eventually(|| rec.count() == 3).await;
    settle().await;
    let st = h.board.snapshot();
    assert_eq!(st.health, Health::Healthy, "{:?}", st.problems);
    assert_eq!(st.targets[0].failing_since, None);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fenced_changes_go_out_as_soon_as_the_gate_reopens_not_after_the_backoff() {
    let mut h = harness(vec![info("t", 1)], vec![]);
    (&mut h.ready).await.unwrap().unwrap();
    h.gate.close("lease lost: renewals failing");
    for _ in 0..3 {
        h.rec.fail_next(fenced());
    }
    h.change("/x/a", 1).await;
    let rec = h.rec.clone();
    // The first pass and two retries failed fenced: the next retry waits
    // a backoff of 20 s (at least 10 s with jitter).
    eventually(|| rec.count() == 4).await;
    settle().await;
    assert_eq!(h.board.snapshot().targets[0].pending_files, 1);
    // The lease is re-verified: the gate re-opens.
    let reopened = Instant::now();
    h.gate.open();
    eventually(|| rec.count() == 5).await;
    let started = *rec.started_at.lock().unwrap().last().unwrap();
    assert!(
        started - reopened <= event_loop::GATE_POLL * 2,
        "resumed {:?} after the gate re-opened",
        started - reopened
    );
    assert_eq!(rec.calls()[4].1, Scope::Paths(vec!["/x/a".into()]));
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].pending_files == 0).await;
    h.stop().await;
}
