//! The supervisor: one daemon's life from lock to exit.
//!
//! Order: state-dir lock → pidfile → unpushed changes of a previous run
//! kept as conflict copies → credentials check → leases + engine → control
//! socket → watcher + scheduler (first full pass of every target) → ready.
//! Then named workers run until a stop (signal, control socket, `init`'s
//! child exiting) or a critical error (lease definitively lost). The whole
//! stop fits one budget, `flush_deadline` ([`StopBudget`]): the scheduler
//! collects the events of before the stop and flushes, the deferred
//! manifests are written, the workers are cancelled and joined, the lease
//! is released, each in its slice; the final status is written. Nothing is
//! detached.
//!
//! A stop because the lease was taken over cannot flush (it would overwrite
//! the new holder): the changes it leaves unpushed are named in the log,
//! the exit message and the status file, and recorded so the next start
//! keeps them as conflict copies (`unpushed`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::ready::{Readiness, ReadyMsg};
use super::scheduler::{Board, Inputs, Scheduler, SchedulerExit, TargetFailure, TargetInfo};
use super::seam::{Seams, error_chain, fail, fail_from};
use super::status::{self, DaemonState, DaemonStatus};
use super::stop_budget::StopBudget;
use super::workers::{self, WorkerEnd, WorkerKind, WorkerSetup};
use super::{control, pidfile, sdnotify, unpushed};
use crate::error::{ExitStatus, Fail};
use crate::spec::Spec;

use crate::state_dir::{StateDir, StateDirError, StateLock};

mod stop;

use stop::{finish_manifests, join_workers, release_and_record, report_unflushed};

/// How to run a daemon.
pub struct Options {
    /// `coltecd start`'s pipe, when started by it.
    pub ready: Option<Readiness>,
    /// Fire to stop (flush, release, exit). The supervisor also fires it on
    /// SIGTERM/SIGINT (when `handle_signals`) and on a control `stop`.
    pub shutdown: CancellationToken,
    /// Handle SIGTERM/SIGINT/SIGHUP itself. `false` means: runs inside
    /// `coltecd init`, which owns the signals (and the pid).
    pub handle_signals: bool,
}

/// Run the daemon for `spec` until stopped. Reports readiness (or why not)
/// on `opts.ready` and to systemd.
pub async fn run(spec: Arc<Spec>, mut opts: Options) -> Result<ExitStatus, Fail> {
    let result = run_inner(spec, &mut opts).await;
    if let (Some(r), Err(f)) = (opts.ready.as_mut(), &result) {
        r.failed(f.status, &format!("{:#}", f.report));
    }
    result
}

async fn run_inner(spec: Arc<Spec>, opts: &mut Options) -> Result<ExitStatus, Fail> {
    let state = StateDir::for_spec(&spec);
    let Some(lock) = lock_state_dir(&state, opts).await? else {
        return Ok(ExitStatus::Ok);
    };
    let pid_guard = pidfile::write(state.path(), !opts.handle_signals).map_err(|e| {
        fail(
            ExitStatus::Failure,
            format!("cannot write pidfile in {}: {e}", state.path().display()),
        )
    })?;
    tracing::info!(
        pid = std::process::id(),
        workspace = %spec.workspace.slug(),
        spec = %spec.path.display(),
        state_dir = %state.path().display(),
        targets = spec.targets.len(),
        "coltecd daemon starting"
    );
    for w in &spec.warnings {
        tracing::warn!(warning = %w, "spec");
    }

    let board = Arc::new(Board::new(initial_status(&spec)));
    let _ = status::write_file(state.path(), &board.snapshot());
    unpushed::keep_at_start(&spec, &state, &board).await;

    // A target that cannot be served here (missing credentials or crypt
    // password) is never silently ignored: when it is the only kind there
    // is, fail now naming the variables (the error does; it never carries
    // a value); otherwise serve the others and show it in `status` (its
    // passes fail as "unavailable" and wait for a human).
    let mut unusable = crate::preflight::unusable_targets(&spec);
    if !unusable.is_empty() && unusable.len() == spec.targets.len() {
        return Err(Fail::from(unusable.swap_remove(0).error));
    }
    for u in &unusable {
        tracing::error!(target_name = %u.target, error = %u.error, "target cannot be served here; the other targets run");
    }

    let seams = super::wiring::open(spec.clone(), &state).await?;
    board.set_lease(seams.lease.clone());
    seams.lease.set_activity({
        let board = board.clone();
        Arc::new(move || board.activity())
    });

    let (result, budget) = serve(spec.clone(), &state, board.clone(), seams.clone(), opts).await;

    release_and_record(&seams, &board, &state, budget).await;
    let _ = std::fs::remove_file(control::socket_path(state.path()));
    sdnotify::notify("STOPPING=1");
    drop(pid_guard);
    drop(lock);
    match &result {
        Ok(_) => tracing::info!(stop_took = ?budget.elapsed(), "coltecd daemon stopped"),
        Err(f) => {
            tracing::error!(error = %format!("{:#}", f.report), "coltecd daemon stopped on an error")
        }
    }
    result
}

/// Take the state-dir lock; `None` (after telling `start`) when a live
/// coltecd already holds it.
///
/// Usually the lock is free. If not: a live coltecd holds it (a second
/// `start` racing the first: say "already running"), or its previous
/// holder is still exiting (`kill -9` a moment ago: its threads release
/// the lock a little after its pid looks dead), or another container
/// shares this state dir (the error says so). Retry briefly to tell them
/// apart.
async fn lock_state_dir(state: &StateDir, opts: &mut Options) -> Result<Option<StateLock>, Fail> {
    let mut attempts = 0;
    loop {
        match state.lock() {
            Ok(lock) => return Ok(Some(lock)),
            Err(e @ StateDirError::Locked { .. }) => {
                // Another container's daemon: its lock will not go away.
                if pidfile::foreign(state.path()).is_some() {
                    return Err(e.into());
                }
                if let Some(pid) = pidfile::live(state.path()) {
                    tracing::info!(pid, "another coltecd already runs for this spec");
                    if let Some(r) = opts.ready.as_mut() {
                        r.send(&ReadyMsg::Already { pid });
                    }
                    return Ok(None);
                }
                attempts += 1;
                if attempts > 50 {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn initial_status(spec: &Spec) -> DaemonStatus {
    let mut s = super::status_for_spec(spec, DaemonState::Running);
    s.pid = Some(std::process::id());
    s.started_at = Some(crate::clock::unix_now());
    s
}

/// The supervisor's view while the daemon serves: the exit it will report,
/// and whether readiness is still to come.
pub(super) struct Watch {
    pub(super) outcome: Result<ExitStatus, Fail>,
    pub(super) ready_pending: bool,
    pub(super) shutdown: CancellationToken,
    /// Cancelled when the lease is lost or nothing was synced yet: stop
    /// without flushing.
    pub(super) lease_lost: CancellationToken,
    /// The lease keeper reported the lease definitively lost.
    pub(super) lost_lease: bool,
}

impl Watch {
    /// Keep the first failure as the daemon's exit.
    pub(super) fn failed(&mut self, f: Fail) {
        if self.outcome.is_ok() {
            self.outcome = Err(f);
        }
    }
}

/// Serve until stopped, then stop within the budget (all but the lease
/// release, which the caller does in what is left of it).
async fn serve(
    spec: Arc<Spec>,
    state: &StateDir,
    board: Arc<Board>,
    seams: Seams,
    opts: &mut Options,
) -> (Result<ExitStatus, Fail>, StopBudget) {
    let shutdown = opts.shutdown.clone();
    // Workers other than the scheduler stop only after the flush, so the
    // lease keeps being renewed and `status` keeps answering meanwhile.
    let workers_cancel = CancellationToken::new();
    let lease_lost = CancellationToken::new();
    let listener = match control::bind(state.path()) {
        Ok(l) => l,
        Err(e) => {
            let f = fail(
                ExitStatus::Failure,
                format!(
                    "cannot create the control socket in {}: {e}",
                    state.path().display()
                ),
            );
            return (Err(f), StopBudget::starting_now(spec.daemon.flush_deadline));
        }
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (watch_tx, watch_rx) = mpsc::channel(1024);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let (drain_tx, drain_rx) = mpsc::channel(1);
    let setup = WorkerSetup {
        spec: spec.clone(),
        board: board.clone(),
        lease: seams.lease.clone(),
        state_dir: state.path().to_path_buf(),
        listener,
        commands: cmd_tx,
        watch: (watch_tx, drain_rx),
        signals: opts.handle_signals.then(|| (shutdown.clone(), reload_tx)),
    };
    let mut workers = workers::spawn_all(setup, &workers_cancel);
    let inputs = Inputs {
        watch: watch_rx,
        commands: cmd_rx,
        reload: reload_rx,
        drain: drain_tx,
        gate: Some(seams.lease.gate()),
    };
    let (ready_rx, sched_task) =
        spawn_scheduler(&spec, &seams, board.clone(), inputs, &shutdown, &lease_lost);
    let mut w = Watch {
        outcome: Ok(ExitStatus::Ok),
        ready_pending: true,
        shutdown,
        lease_lost,
        lost_lease: false,
    };
    let exit = supervise(&spec, opts, &mut w, &mut workers, ready_rx, sched_task).await;
    let budget = exit
        .budget
        .unwrap_or_else(|| StopBudget::starting_now(spec.daemon.flush_deadline));
    if w.ready_pending {
        w.failed(fail(
            ExitStatus::Failure,
            "stopped before the first sync finished",
        ));
    }
    if let Some(f) = &exit.fatal {
        w.failed(fail(
            f.exit_status(),
            format!("sync of target {} failed: {}", f.target, f.message()),
        ));
    }
    if !w.ready_pending && !w.lease_lost.is_cancelled() {
        if exit.abandoned_pass {
            tracing::warn!(
                "deferred manifests not written: a pass was abandoned; the remote keeps its dirty marker"
            );
        } else {
            finish_manifests(&seams, budget).await;
        }
    }
    workers_cancel.cancel();
    join_workers(&mut workers, &mut w, budget).await;
    report_unflushed(&mut w, &exit.unflushed, state, &board);
    (w.outcome, budget)
}

/// Start the scheduler (its first full passes begin at once); it answers
/// readiness on the returned receiver.
fn spawn_scheduler(
    spec: &Spec,
    seams: &Seams,
    board: Arc<Board>,
    inputs: Inputs,
    shutdown: &CancellationToken,
    lease_lost: &CancellationToken,
) -> (
    oneshot::Receiver<Result<(), TargetFailure>>,
    JoinHandle<SchedulerExit>,
) {
    let infos = spec
        .targets
        .iter()
        .map(|t| TargetInfo {
            name: t.name.clone(),
            root: t.local_path.clone(),
            priority: t.priority,
            interval: t.interval,
            writes_remote: t.direction.writes_remote(),
        })
        .collect();
    let (ready_tx, ready_rx) = oneshot::channel();
    let sched = Scheduler::new(
        infos,
        seams.sync.clone(),
        board,
        workers::tunables(spec),
        ready_tx,
    );
    let task = tokio::spawn(sched.run(inputs, shutdown.clone(), lease_lost.clone()));
    (ready_rx, task)
}

/// Until the scheduler ends: report readiness, and stop on a worker's
/// critical failure.
async fn supervise(
    spec: &Spec,
    opts: &mut Options,
    w: &mut Watch,
    workers: &mut JoinSet<WorkerEnd>,
    mut ready_rx: oneshot::Receiver<Result<(), TargetFailure>>,
    mut sched_task: JoinHandle<SchedulerExit>,
) -> SchedulerExit {
    loop {
        tokio::select! {
            r = &mut ready_rx, if w.ready_pending => {
                w.ready_pending = false;
                match r {
                    Ok(Ok(())) => report_ready(spec, opts),
                    Ok(Err(f)) => {
                        w.failed(fail(
                            f.exit_status(),
                            format!("first sync of target {} failed: {}", f.target, f.message()),
                        ));
                        // Nothing was synced yet; do not flush, just stop.
                        w.lease_lost.cancel();
                        w.shutdown.cancel();
                    }
                    Err(_) => {}
                }
            }
            end = workers.join_next(), if !workers.is_empty() => on_worker_end(w, end),
            s = &mut sched_task => {
                return s.unwrap_or_else(|e| {
                    w.failed(fail(ExitStatus::Failure, format!("internal error in the scheduler: {e}")));
                    SchedulerExit::default()
                });
            }
        }
    }
}

fn report_ready(spec: &Spec, opts: &mut Options) {
    let unusable = crate::preflight::unusable_targets(spec);
    let served = spec.targets.len().saturating_sub(unusable.len());
    let mut summary = format!(
        "coltecd: syncing {} target{} for {} (pid {})",
        served,
        if served == 1 { "" } else { "s" },
        spec.workspace.slug(),
        std::process::id()
    );
    for u in &unusable {
        summary.push_str(&format!(
            "\ncoltecd: target '{}' is not served: {} (the others are; see `coltecd status`)",
            u.target, u.error
        ));
    }
    tracing::info!("ready: leases held, first sync done");
    if let Some(r) = opts.ready.as_mut() {
        r.send(&ReadyMsg::Ready {
            pid: std::process::id(),
            summary,
        });
    }
    sdnotify::notify("READY=1\nSTATUS=syncing");
}

fn on_worker_end(w: &mut Watch, end: Option<Result<WorkerEnd, tokio::task::JoinError>>) {
    match end {
        Some(Ok((kind, Err(e)))) => {
            tracing::error!(worker = %kind, error = %error_chain(&e), "critical failure; stopping");
            if kind == WorkerKind::Lease {
                w.lost_lease = true;
                w.lease_lost.cancel();
            }
            w.failed(fail_from(&e));
            w.shutdown.cancel();
        }
        Some(Ok((kind, Ok(())))) => {
            tracing::debug!(worker = %kind, "worker finished");
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "a worker panicked; stopping");
            w.failed(fail(ExitStatus::Failure, format!("internal error: {e}")));
            w.shutdown.cancel();
        }
        None => {}
    }
}
