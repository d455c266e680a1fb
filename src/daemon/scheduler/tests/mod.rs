//! The whole scheduler against a scripted fake seam, on paused time: the
//! clock moves only when every task waits (or the test advances it), so
//! debounce, interval and backoff are exercised deterministically and
//! without waiting.
//!
//! - `passes`: what runs when (debounce, interval, priority, flush,
//!   `sync --now`, file-event fallbacks).
//! - `failures`: what happens after a failed pass, by its disposition.
//! - `stopping`: the stop inside its budget: events of before the stop,
//!   full scans where events were lost, a hanging pass abandoned in time.
//! - `outage`: what `status` says while passes fail, and the resume when
//!   the write gate re-opens.

mod failures;
mod outage;
mod passes;
mod stopping;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::daemon::seam::{PassProgress, PassResult, Scope, SyncSeam};
use crate::daemon::status::{
    DaemonState, DaemonStatus, Health, STATUS_SCHEMA, Source, StatusLeases, TargetStatus,
    WatchModeState, WatchState,
};
use crate::daemon::watcher::{DrainRequest, WatchMsg};
use crate::remote::{GateController, gate};
use crate::sync::{FailedFile, PassReport, SyncError};

/// Records passes (with the virtual instant each started); the next
/// passes fail with the scripted errors, the others succeed.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, Scope)>>,
    started_at: Mutex<Vec<Instant>>,
    script: Mutex<VecDeque<SyncError>>,
    /// Files every full pass reports as uploaded.
    full_uploads: Mutex<u64>,
    /// The next passes report these files (relative) as failed.
    failed_files: Mutex<VecDeque<Vec<String>>>,
    /// Passes of these targets never finish unless cancelled...
    hang: Mutex<Vec<String>>,
    /// ...and then not even then (a remote that swallows the abort).
    ignore_cancel: Mutex<bool>,
}

impl Recorder {
    /// The next pass fails with `e`.
    fn fail_next(&self, e: SyncError) {
        self.script.lock().unwrap().push_back(e);
    }

    /// The next pass reports `files` as failed.
    fn fail_files_next(&self, files: &[&str]) {
        self.failed_files
            .lock()
            .unwrap()
            .push_back(files.iter().map(|f| f.to_string()).collect());
    }

    fn calls(&self) -> Vec<(String, Scope)> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn full_calls(&self) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| matches!(s, Scope::Full { .. }))
            .count()
    }
}

impl SyncSeam for Recorder {
    fn pass(
        &self,
        target: &str,
        scope: Scope,
        cancel: CancellationToken,
        _progress: Arc<PassProgress>,
    ) -> BoxFuture<'static, PassResult> {
        let uploaded = match scope {
            Scope::Full { .. } => *self.full_uploads.lock().unwrap(),
            Scope::Paths(_) => 0,
        };
        self.calls.lock().unwrap().push((target.to_string(), scope));
        self.started_at.lock().unwrap().push(Instant::now());
        let failure = self.script.lock().unwrap().pop_front();
        let failed = self.failed_files.lock().unwrap().pop_front();
        let hang = self.hang.lock().unwrap().iter().any(|t| t == target);
        let deaf = *self.ignore_cancel.lock().unwrap();
        Box::pin(async move {
            if hang {
                if deaf {
                    std::future::pending::<()>().await;
                }
                cancel.cancelled().await;
                return Err(Arc::new(SyncError::Cancelled));
            }
            match failure {
                Some(e) => Err(Arc::new(e)),
                None => Ok(PassReport {
                    uploaded,
                    failed: failed
                        .unwrap_or_default()
                        .into_iter()
                        .map(|path| FailedFile {
                            path,
                            reason: "changed while being read".into(),
                        })
                        .collect(),
                    ..PassReport::default()
                }),
            }
        })
    }

    fn finish(&self, _cancel: CancellationToken) -> BoxFuture<'static, Result<(), SyncError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A remote failure as the engine reports it.
fn remote_unreachable() -> SyncError {
    SyncError::Remote {
        target: "t".into(),
        op: "list".into(),
        source: Box::new(opendal::Error::new(
            opendal::ErrorKind::Unexpected,
            "remote unreachable",
        )),
    }
}

fn board(names: &[&str]) -> Arc<Board> {
    Arc::new(Board::new(DaemonStatus {
        schema: STATUS_SCHEMA,
        state: DaemonState::Running,
        source: Source::Live,
        health: Health::Healthy,
        problems: vec![],
        workspace: "o/p/e".into(),
        spec: "/s".into(),
        pid: Some(1),
        started_at: Some(crate::clock::unix_now()),
        uptime_secs: None,
        build: None,
        updated_at: crate::clock::unix_now(),
        leases: StatusLeases {
            writes_allowed: true,
            fenced_reason: None,
            renew_every_secs: None,
            detail: Vec::new(),
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
                failing_since: None,
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
                undecryptable: Default::default(),
                last_local_change_at: None,
                last_remote_change_at: None,
            })
            .collect(),
        stop: None,
    }))
}

fn info(name: &str, priority: u32) -> TargetInfo {
    TargetInfo {
        name: name.into(),
        root: "/x".into(),
        priority,
        interval: Duration::from_secs(600),
        writes_remote: true,
    }
}

/// Let virtual time run (20 ms at a time) until `cond` holds; fails after
/// ten virtual minutes. No wall-clock wait.
async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Let every task run until it waits, without moving the clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

struct Harness {
    rec: Arc<Recorder>,
    board: Arc<Board>,
    watch_tx: mpsc::Sender<WatchMsg>,
    cmd_tx: mpsc::Sender<SchedulerCommand>,
    reload_tx: mpsc::Sender<Tunables>,
    tunables: Tunables,
    shutdown: CancellationToken,
    /// Stop without flushing (the lease is lost).
    skip_flush: CancellationToken,
    ready: oneshot::Receiver<Result<(), TargetFailure>>,
    task: tokio::task::JoinHandle<SchedulerExit>,
    /// The fake watcher sends these when asked to drain, before it
    /// answers: events still queued when the stop came.
    queued_at_stop: Arc<Mutex<Vec<WatchMsg>>>,
    /// The fake watcher never answers a drain (a stuck watcher).
    drain_stuck: Arc<Mutex<bool>>,
    /// Drain requests the fake watcher got.
    drains: Arc<Mutex<u32>>,
    /// The write gate the scheduler watches.
    gate: GateController,
}

impl Harness {
    /// Queue `msg` where the stop's drain finds it.
    fn queue_at_stop(&self, msg: WatchMsg) {
        self.queued_at_stop.lock().unwrap().push(msg);
    }

    async fn change(&self, path: &str, size: u64) {
        self.watch_tx
            .send(WatchMsg::Changed {
                target: 0,
                paths: vec![(path.into(), size)],
            })
            .await
            .unwrap();
    }

    async fn stop(self) -> SchedulerExit {
        self.shutdown.cancel();
        self.task.await.unwrap()
    }
}

/// A scheduler over `infos` whose first passes fail with `first_failures`.
fn harness(infos: Vec<TargetInfo>, first_failures: Vec<SyncError>) -> Harness {
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let board = board(&names);
    let rec = Arc::new(Recorder::default());
    for e in first_failures {
        rec.fail_next(e);
    }
    let (ready_tx, ready) = oneshot::channel();
    let tunables = Tunables {
        debounce: Duration::from_millis(200),
        flush_deadline: Duration::from_secs(8),
        intervals: infos.iter().map(|i| i.interval).collect(),
    };
    let sched = Scheduler::new(
        infos,
        rec.clone(),
        board.clone(),
        tunables.clone(),
        ready_tx,
    );
    let (watch_tx, watch_rx) = mpsc::channel(16);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let (drain_tx, drain_rx) = mpsc::channel(1);
    let (gate_ctl, gate_rx) = gate();
    let queued_at_stop = Arc::new(Mutex::new(Vec::new()));
    let drain_stuck = Arc::new(Mutex::new(false));
    let drains = Arc::new(Mutex::new(0));
    tokio::spawn(fake_watcher(
        drain_rx,
        watch_tx.clone(),
        (queued_at_stop.clone(), drain_stuck.clone(), drains.clone()),
    ));
    let shutdown = CancellationToken::new();
    let skip_flush = CancellationToken::new();
    let inputs = Inputs {
        watch: watch_rx,
        commands: cmd_rx,
        reload: reload_rx,
        drain: drain_tx,
        gate: Some(gate_rx),
    };
    let task = tokio::spawn(sched.run(inputs, shutdown.clone(), skip_flush.clone()));
    Harness {
        rec,
        board,
        watch_tx,
        cmd_tx,
        reload_tx,
        tunables,
        shutdown,
        skip_flush,
        ready,
        task,
        queued_at_stop,
        drain_stuck,
        drains,
        gate: gate_ctl,
    }
}

type FakeWatcherState = (Arc<Mutex<Vec<WatchMsg>>>, Arc<Mutex<bool>>, Arc<Mutex<u32>>);

/// Answers drain requests the way the watcher does: the events still
/// queued go out first, then the answer (or never, when stuck).
async fn fake_watcher(
    mut drain_rx: mpsc::Receiver<DrainRequest>,
    watch_tx: mpsc::Sender<WatchMsg>,
    (queued, stuck, drains): FakeWatcherState,
) {
    while let Some(reply) = drain_rx.recv().await {
        *drains.lock().unwrap() += 1;
        let msgs = std::mem::take(&mut *queued.lock().unwrap());
        for m in msgs {
            let _ = watch_tx.send(m).await;
        }
        if *stuck.lock().unwrap() {
            // Keep the request open, never answer it.
            std::future::pending::<()>().await;
        }
        let _ = reply.send(());
    }
}
