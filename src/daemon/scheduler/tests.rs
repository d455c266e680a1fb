//! The whole scheduler against a recording fake seam.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::daemon::backend::{PassOutcome, Progress, Scope, SeamError, SyncSeam};
use crate::daemon::status::{
    DaemonStatus, Health, LeaseState, RunState, STATUS_SCHEMA, Source, TargetStatus,
    WatchModeState, WatchState, unix_now,
};
use crate::daemon::watcher::WatchMsg;

/// Records passes; fails the first `fail_first` of them.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, Scope)>>,
    fail_first: Mutex<usize>,
    /// Files every full pass reports as uploaded.
    full_uploads: Mutex<u64>,
}

impl SyncSeam for Recorder {
    fn pass(
        &self,
        target: &str,
        scope: Scope,
        _cancel: CancellationToken,
        _progress: Arc<Progress>,
    ) -> BoxFuture<'static, Result<PassOutcome, SeamError>> {
        let uploaded = match scope {
            Scope::Full { .. } => *self.full_uploads.lock().unwrap(),
            Scope::Paths(_) => 0,
        };
        self.calls.lock().unwrap().push((target.to_string(), scope));
        let mut f = self.fail_first.lock().unwrap();
        let fail = *f > 0;
        if fail {
            *f -= 1;
        }
        Box::pin(async move {
            if fail {
                Err(SeamError {
                    status: crate::error::ExitStatus::Remote,
                    message: "remote unreachable".into(),
                })
            } else {
                let mut out = PassOutcome::default();
                out.counts.uploaded = uploaded;
                Ok(out)
            }
        })
    }

    fn finish(&self, _cancel: CancellationToken) -> BoxFuture<'static, Result<(), SeamError>> {
        Box::pin(async { Ok(()) })
    }
}

fn board(names: &[&str]) -> Arc<Board> {
    Arc::new(Board::new(DaemonStatus {
        schema: STATUS_SCHEMA,
        state: RunState::Running,
        source: Source::Live,
        health: Health::Healthy,
        problems: vec![],
        workspace: "o/p/e".into(),
        spec: "/s".into(),
        pid: Some(1),
        started_at: Some(unix_now()),
        uptime_secs: None,
        updated_at: unix_now(),
        leases: LeaseState {
            writes_allowed: true,
            fenced_reason: None,
            detail: serde_json::Value::Null,
        },
        targets: names
            .iter()
            .map(|n| TargetStatus {
                name: n.to_string(),
                direction: "push-only".into(),
                local_path: "/x".into(),
                remote: "local:/r".into(),
                priority: 0,
                interval_secs: 60,
                watch: WatchState {
                    mode: WatchModeState::Events,
                    reason: None,
                },
                last_success_at: None,
                last_attempt_at: None,
                last_error: None,
                pending_files: 0,
                pending_bytes: 0,
                oldest_pending_at: None,
                pass_running: false,
                in_flight: None,
                next_check_at: None,
                conflicts: vec![],
                conflicts_total: 0,
                last_pass: None,
                skipped: vec![],
            })
            .collect(),
    }))
}

fn info(name: &str, priority: u32) -> TargetInfo {
    TargetInfo {
        name: name.into(),
        priority,
        interval: Duration::from_secs(600),
        writes_remote: true,
    }
}

/// Poll `cond` until true (generous deadline; no timing assertion).
async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Harness {
    rec: Arc<Recorder>,
    board: Arc<Board>,
    watch_tx: mpsc::Sender<WatchMsg>,
    cmd_tx: mpsc::Sender<SchedulerCommand>,
    _reload_tx: mpsc::Sender<Tunables>,
    shutdown: CancellationToken,
    ready: oneshot::Receiver<Result<(), SeamError>>,
    task: tokio::task::JoinHandle<Unflushed>,
}

fn harness(infos: Vec<TargetInfo>, fail_first: usize) -> Harness {
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let board = board(&names);
    let rec = Arc::new(Recorder::default());
    *rec.fail_first.lock().unwrap() = fail_first;
    let (ready_tx, ready) = oneshot::channel();
    let tunables = Tunables {
        debounce: Duration::from_millis(200),
        flush_deadline: Duration::from_secs(8),
        intervals: infos.iter().map(|i| i.interval).collect(),
    };
    let sched = Scheduler::new(infos, rec.clone(), board.clone(), tunables, ready_tx);
    let (watch_tx, watch_rx) = mpsc::channel(16);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(sched.run(
        watch_rx,
        cmd_rx,
        reload_rx,
        shutdown.clone(),
        CancellationToken::new(),
    ));
    Harness {
        rec,
        board,
        watch_tx,
        cmd_tx,
        _reload_tx: reload_tx,
        shutdown,
        ready,
        task,
    }
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn first_passes_are_full_by_priority_then_ready() {
    let h = harness(vec![info("low", 5), info("high", 1)], 0);
    h.ready.await.unwrap().unwrap();
    let calls = h.rec.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            ("high".into(), Scope::Full { verify: false }),
            ("low".into(), Scope::Full { verify: false })
        ]
    );
    h.shutdown.cancel();
    assert!(h.task.await.unwrap().is_empty());
}

#[tokio::test]
async fn changes_become_paths_passes_and_interval_brings_full_passes() {
    let mut short = info("t", 1);
    short.interval = Duration::from_secs(2);
    let h = harness(vec![short], 0);
    h.ready.await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Changed {
            target: 0,
            paths: vec![("/x/a".into(), 3), ("/x/b".into(), 3)],
        })
        .await
        .unwrap();
    let rec = h.rec.clone();
    eventually(|| {
        rec.calls
            .lock()
            .unwrap()
            .iter()
            .any(|(_, s)| *s == Scope::Paths(vec!["/x/a".into(), "/x/b".into()]))
    })
    .await;
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].pending_files == 0).await;
    // The interval brings another full pass.
    eventually(|| {
        rec.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| matches!(s, Scope::Full { .. }))
            .count()
            >= 2
    })
    .await;
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn pending_changes_show_in_status_with_sizes_and_age() {
    let h = harness(vec![info("t", 1)], 0);
    h.ready.await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Changed {
            target: 0,
            paths: vec![("/x/a".into(), 3), ("/x/b".into(), 4)],
        })
        .await
        .unwrap();
    let board = h.board.clone();
    let rec = h.rec.clone();
    // Either still pending, or already pushed: both are valid states;
    // when pending it must carry counts, bytes and an age.
    eventually(|| {
        let t = &board.snapshot().targets[0];
        (t.pending_files == 2 && t.pending_bytes == 7 && t.oldest_pending_at.is_some())
            || rec.calls.lock().unwrap().len() >= 2
    })
    .await;
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn a_continuously_written_file_still_goes_out_within_the_debounce() {
    let h = harness(vec![info("t", 1)], 0);
    h.ready.await.unwrap().unwrap();
    // The harness debounce is 200 ms: changes every 20 ms never leave a
    // quiet gap of 50 ms on an idle machine, yet a pass must happen.
    let rec = h.rec.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    while rec.calls.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no pass while changes kept coming"
        );
        h.watch_tx
            .send(WatchMsg::Changed {
                target: 0,
                paths: vec![("/x/log".into(), n)],
            })
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rec.calls.lock().unwrap()[1],
        ("t".into(), Scope::Paths(vec!["/x/log".into()]))
    );
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn failed_first_pass_fails_readiness() {
    let h = harness(vec![info("t", 1)], 1);
    let err = h.ready.await.unwrap().unwrap_err();
    assert_eq!(err.status, crate::error::ExitStatus::Remote);
    assert!(
        err.message.contains("remote unreachable"),
        "{}",
        err.message
    );
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_flushes_pending_without_waiting_for_debounce() {
    let h = harness(vec![info("t", 1)], 0);
    h.ready.await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Changed {
            target: 0,
            paths: vec![("/x/late".into(), 1)],
        })
        .await
        .unwrap();
    settle().await;
    h.shutdown.cancel();
    let unflushed = h.task.await.unwrap();
    assert!(unflushed.is_empty(), "{unflushed:?}");
    let calls = h.rec.calls.lock().unwrap().clone();
    assert_eq!(
        calls.last().unwrap(),
        &("t".into(), Scope::Paths(vec!["/x/late".into()]))
    );
}

#[tokio::test]
async fn sync_now_waits_for_a_fresh_full_pass_and_stop_cancels() {
    let h = harness(vec![info("t", 1)], 0);
    h.ready.await.unwrap().unwrap();
    let (tx, rx) = oneshot::channel();
    h.cmd_tx
        .send(SchedulerCommand::SyncNow { reply: tx })
        .await
        .unwrap();
    let outcomes = rx.await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].error, None);
    assert_eq!(
        h.rec.calls.lock().unwrap()[1],
        ("t".into(), Scope::Full { verify: true })
    );
    let (tx, rx) = oneshot::channel();
    h.cmd_tx
        .send(SchedulerCommand::Stop { reply: tx })
        .await
        .unwrap();
    assert_eq!(rx.await.unwrap(), std::process::id());
    assert!(h.shutdown.is_cancelled());
    h.task.await.unwrap();
}

#[tokio::test]
async fn fallback_marks_polling_and_rescans() {
    let h = harness(vec![info("t", 1)], 0);
    h.ready.await.unwrap().unwrap();
    h.watch_tx
        .send(WatchMsg::Fallback {
            target: 0,
            reason: "inotify watch limit reached".into(),
        })
        .await
        .unwrap();
    let rec = h.rec.clone();
    eventually(|| rec.calls.lock().unwrap().len() >= 2).await;
    let st = h.board.snapshot();
    assert_eq!(st.targets[0].watch.mode, WatchModeState::Polling);
    assert_eq!(
        h.rec.calls.lock().unwrap()[1].1,
        Scope::Full { verify: false }
    );
    h.shutdown.cancel();
    h.task.await.unwrap();
}

fn full_calls(rec: &Recorder) -> usize {
    rec.calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| matches!(s, Scope::Full { .. }))
        .count()
}

#[tokio::test]
async fn interval_scans_finding_unreported_changes_switch_to_polling() {
    let mut t = info("t", 1);
    t.interval = Duration::from_millis(200);
    let h = harness(vec![t], 0);
    h.ready.await.unwrap().unwrap();
    // Every routine scan now finds a change no event reported.
    *h.rec.full_uploads.lock().unwrap() = 1;
    let board = h.board.clone();
    eventually(|| board.snapshot().targets[0].watch.mode == WatchModeState::Polling).await;
    let reason = board.snapshot().targets[0].watch.reason.clone().unwrap();
    assert!(reason.contains("no file event"), "{reason}");
    // The first scan after the first sync is strike one, the next one
    // is strike two.
    assert!(full_calls(&h.rec) >= 3);
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn interval_scans_with_events_in_between_keep_events() {
    let mut t = info("t", 1);
    t.interval = Duration::from_millis(500);
    let h = harness(vec![t], 0);
    h.ready.await.unwrap().unwrap();
    *h.rec.full_uploads.lock().unwrap() = 1;
    // Events keep arriving (far more often than the interval), so no
    // two routine scans ever follow each other without one between.
    let rec = h.rec.clone();
    while full_calls(&rec) < 5 {
        h.watch_tx
            .send(WatchMsg::Changed {
                target: 0,
                paths: vec![("/x/a".into(), 1)],
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = h.board.snapshot();
    assert_eq!(st.targets[0].watch.mode, WatchModeState::Events);
    h.shutdown.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn partial_event_filesystems_keep_events_and_say_so() {
    let h = harness(vec![info("t", 1)], 0);
    h.ready.await.unwrap().unwrap();
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
    let text = st.render_text(unix_now());
    assert!(text.contains("events (on nfs: ...)"), "{text}");
    h.shutdown.cancel();
    h.task.await.unwrap();
}
