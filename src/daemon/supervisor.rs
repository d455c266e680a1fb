//! The supervisor: one daemon's life from lock to exit.
//!
//! Order: state-dir lock → pidfile → credentials check → leases + engine →
//! control socket → watcher + scheduler (first full pass of every target)
//! → ready. Then named workers run until a stop (signal, control socket,
//! `init`'s child exiting) or a critical error (lease definitively lost):
//! the scheduler flushes, the workers are cancelled and joined, the lease is
//! released, the final status is written. Nothing is detached.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backend::{Backends, SeamError};
use super::ready::{Readiness, ReadyMsg};
use super::scheduler::{Board, Scheduler, TargetInfo, Tunables};
use super::status::{self, DaemonStatus, RunState, Source, unix_now};
use super::watcher::{self, WatchTarget};
use super::{control, pidfile, sdnotify};
use crate::error::{ExitStatus, Fail};
use crate::spec::{Spec, WatchMode};

use crate::state_dir::{StateDir, StateDirError};

/// How long stopping may spend writing deferred manifests (after the
/// flush deadline, before the lease release).
const FINISH_TIMEOUT: Duration = Duration::from_secs(3);

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

/// A failure of the daemon as a whole, with its exit status.
fn fail(status: ExitStatus, msg: impl Into<String>) -> Fail {
    Fail::new(status, anyhow::anyhow!(msg.into()))
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
    // Usually the lock is free. If not: a live coltecd holds it (a second
    // `start` racing the first: say "already running"), or its previous
    // holder is still exiting (`kill -9` a moment ago: its threads release
    // the lock a little after its pid looks dead), or another container
    // shares this state dir (the error says so). Retry briefly to tell them
    // apart.
    let mut attempts = 0;
    let lock = loop {
        match state.lock() {
            Ok(lock) => break lock,
            Err(e @ StateDirError::Locked { .. }) => {
                if let Some(pid) = pidfile::live(state.path()) {
                    tracing::info!(pid, "another coltecd already runs for this spec");
                    if let Some(r) = opts.ready.as_mut() {
                        r.send(&ReadyMsg::Already { pid });
                    }
                    return Ok(ExitStatus::Ok);
                }
                attempts += 1;
                if attempts > 50 {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
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

    // Missing credentials are never silently ignored: fail now, naming
    // the variables (the error does; it never carries a value).
    for t in &spec.targets {
        crate::remote::target_operator(t).map_err(Fail::from)?;
    }

    let backends = super::wiring::open(spec.clone(), &state)
        .await
        .map_err(|e| fail(e.status, e.message))?;
    board.set_lease(backends.lease.clone());

    let result = serve(spec.clone(), &state, board.clone(), backends.clone(), opts).await;

    // Release whatever happened: after a flush, after a failed start, and
    // after a lost lease (the keeper frees the prefixes it still holds).
    match tokio::time::timeout(Duration::from_secs(5), backends.lease.release()).await {
        Ok(Ok(())) => tracing::info!("lease released"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "releasing the lease failed; it will expire after its TTL")
        }
        Err(_) => tracing::warn!("releasing the lease timed out; it will expire after its TTL"),
    }
    let mut last = board.snapshot().as_stopped(unix_now());
    last.updated_at = unix_now();
    if let Err(e) = status::write_file(state.path(), &last) {
        tracing::warn!(error = %e, "cannot write the final status file");
    }
    let _ = std::fs::remove_file(control::socket_path(state.path()));
    sdnotify::notify("STOPPING=1");
    drop(pid_guard);
    drop(lock);
    match &result {
        Ok(_) => tracing::info!("coltecd daemon stopped"),
        Err(f) => {
            tracing::error!(error = %format!("{:#}", f.report), "coltecd daemon stopped on an error")
        }
    }
    result
}

fn initial_status(spec: &Spec) -> DaemonStatus {
    let mut s = super::status_for_spec(spec, RunState::Running);
    s.pid = Some(std::process::id());
    s.started_at = Some(unix_now());
    s
}

type Worker = (&'static str, Result<(), SeamError>);

async fn serve(
    spec: Arc<Spec>,
    state: &StateDir,
    board: Arc<Board>,
    backends: Backends,
    opts: &mut Options,
) -> Result<ExitStatus, Fail> {
    let shutdown = opts.shutdown.clone();
    // Workers other than the scheduler stop only after the flush, so the
    // lease keeps being renewed and `status` keeps answering meanwhile.
    let workers_cancel = CancellationToken::new();
    let lease_lost = CancellationToken::new();
    let mut workers: JoinSet<Worker> = JoinSet::new();

    let listener = control::bind(state.path()).map_err(|e| {
        fail(
            ExitStatus::Failure,
            format!(
                "cannot create the control socket in {}: {e}",
                state.path().display()
            ),
        )
    })?;
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    {
        let b = board.clone();
        let cancel = workers_cancel.clone();
        workers.spawn(async move {
            control::serve(listener, Arc::new(move || b.snapshot()), cmd_tx, cancel).await;
            ("control", Ok(()))
        });
    }
    {
        let lease = backends.lease.clone();
        let cancel = workers_cancel.clone();
        workers.spawn(async move { ("lease", lease.maintain(cancel).await) });
    }
    let (watch_tx, watch_rx) = mpsc::channel(1024);
    {
        let targets: Vec<WatchTarget> = spec
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.direction.writes_remote() && spec.daemon.watch == WatchMode::Auto)
            .map(|(i, t)| WatchTarget::from_target(i, t))
            .collect();
        let cancel = workers_cancel.clone();
        workers.spawn(async move {
            watcher::run(targets, watch_tx, cancel).await;
            ("watcher", Ok(()))
        });
    }
    {
        let b = board.clone();
        let dir = state.path().to_path_buf();
        let cancel = workers_cancel.clone();
        workers.spawn(async move {
            status_writer(b, dir, cancel).await;
            ("status-file", Ok(()))
        });
    }
    if let Some(every) = sdnotify::watchdog_interval() {
        let cancel = workers_cancel.clone();
        workers.spawn(async move {
            loop {
                sdnotify::notify("WATCHDOG=1");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
            ("watchdog", Ok(()))
        });
    }
    let (reload_tx, reload_rx) = mpsc::channel(1);
    if opts.handle_signals {
        let cancel = workers_cancel.clone();
        let shutdown = shutdown.clone();
        let spec = spec.clone();
        workers.spawn(async move { ("signals", signals(spec, shutdown, reload_tx, cancel).await) });
    } else {
        drop(reload_tx);
    }

    let infos = spec
        .targets
        .iter()
        .map(|t| TargetInfo {
            name: t.name.clone(),
            priority: t.priority,
            interval: t.interval,
            writes_remote: t.direction.writes_remote(),
        })
        .collect();
    let tunables = Tunables {
        debounce: spec.daemon.debounce,
        flush_deadline: spec.daemon.flush_deadline,
        intervals: spec.targets.iter().map(|t| t.interval).collect(),
    };
    let (ready_tx, mut ready_rx) = oneshot::channel();
    let sched = Scheduler::new(
        infos,
        backends.sync.clone(),
        board.clone(),
        tunables,
        ready_tx,
    );
    let mut sched_task = tokio::spawn(sched.run(
        watch_rx,
        cmd_rx,
        reload_rx,
        shutdown.clone(),
        lease_lost.clone(),
    ));

    let mut outcome: Result<ExitStatus, Fail> = Ok(ExitStatus::Ok);
    let mut ready_pending = true;
    let unflushed = loop {
        tokio::select! {
            r = &mut ready_rx, if ready_pending => {
                ready_pending = false;
                match r {
                    Ok(Ok(())) => {
                        let summary = format!(
                            "coltecd: syncing {} target{} for {} (pid {})",
                            spec.targets.len(),
                            if spec.targets.len() == 1 { "" } else { "s" },
                            spec.workspace.slug(),
                            std::process::id()
                        );
                        tracing::info!("ready: leases held, first sync done");
                        if let Some(r) = opts.ready.as_mut() {
                            r.send(&ReadyMsg::Ready { pid: std::process::id(), summary });
                        }
                        sdnotify::notify("READY=1\nSTATUS=syncing");
                    }
                    Ok(Err(e)) => {
                        outcome = Err(fail(e.status, e.message));
                        // Nothing was synced yet; do not flush, just stop.
                        lease_lost.cancel();
                        shutdown.cancel();
                    }
                    Err(_) => {}
                }
            }
            w = workers.join_next(), if !workers.is_empty() => {
                match w {
                    Some(Ok((name, Err(e)))) => {
                        tracing::error!(worker = name, error = %e, "critical failure; stopping");
                        if name == "lease" {
                            lease_lost.cancel();
                        }
                        if outcome.is_ok() {
                            outcome = Err(fail(e.status, e.message));
                        }
                        shutdown.cancel();
                    }
                    Some(Ok((name, Ok(())))) => {
                        tracing::debug!(worker = name, "worker finished");
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "a worker panicked; stopping");
                        if outcome.is_ok() {
                            outcome = Err(fail(ExitStatus::Failure, format!("internal error: {e}")));
                        }
                        shutdown.cancel();
                    }
                    None => {}
                }
            }
            s = &mut sched_task => {
                break match s {
                    Ok(u) => u,
                    Err(e) => {
                        if outcome.is_ok() {
                            outcome = Err(fail(ExitStatus::Failure, format!("internal error in the scheduler: {e}")));
                        }
                        Vec::new()
                    }
                };
            }
        }
    };
    if ready_pending && outcome.is_ok() {
        outcome = Err(fail(
            ExitStatus::Failure,
            "stopped before the first sync finished",
        ));
    }
    if !ready_pending && !lease_lost.is_cancelled() {
        // The lease is still renewed here (its worker stops below), so the
        // gate is open for the deferred manifest writes. Bounded: running
        // out of time here (the future is dropped) only leaves the dirty
        // marker, never a manifest that would be trusted while wrong.
        let finish = backends.sync.finish(CancellationToken::new());
        match tokio::time::timeout(FINISH_TIMEOUT, finish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "deferred manifest write failed; the remote keeps its dirty marker")
            }
            Err(_) => tracing::warn!(
                "deferred manifest write timed out; the remote keeps its dirty marker"
            ),
        }
    }
    for (target, paths) in &unflushed {
        tracing::warn!(target_name = %target, files = paths.len(), "changes NOT flushed before exit");
        for p in paths {
            tracing::warn!(target_name = %target, path = %p.display(), "not flushed");
        }
    }
    workers_cancel.cancel();
    while let Some(w) = workers.join_next().await {
        if let Ok((name, Err(e))) = w {
            tracing::warn!(worker = name, error = %e, "worker ended with an error during shutdown");
            if name == "lease" && outcome.is_ok() {
                outcome = Err(fail(e.status, e.message));
            }
        }
    }
    if outcome.is_ok() && !unflushed.is_empty() {
        let n: usize = unflushed.iter().map(|(_, p)| p.len()).sum();
        outcome = Err(fail(
            ExitStatus::PartialFailure,
            format!(
                "{n} changed file(s) could not be flushed before the deadline (listed in the log)"
            ),
        ));
    }
    outcome
}

/// Write `status.json` whenever the status changed meaningfully (checked
/// every 2 s), and at least every minute (lease renewal ages), so `status`
/// has something true to show after a crash without an idle daemon writing
/// to disk all the time.
async fn status_writer(board: Arc<Board>, dir: PathBuf, cancel: CancellationToken) {
    const REFRESH: Duration = Duration::from_secs(60);
    let mut last: Option<(DaemonStatus, tokio::time::Instant)> = None;
    loop {
        let mut snap = board.snapshot();
        // Fields that change by themselves every second do not count.
        let mut comparable = snap.clone();
        comparable.updated_at = 0;
        comparable.uptime_secs = None;
        comparable.leases.detail = serde_json::Value::Null;
        let due = match &last {
            None => true,
            Some((prev, at)) => *prev != comparable || at.elapsed() >= REFRESH,
        };
        if due {
            snap.source = Source::File;
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || status::write_file(&d, &snap)).await {
                Ok(Ok(())) => last = Some((comparable, tokio::time::Instant::now())),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot write status.json"),
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// SIGTERM/SIGINT stop; SIGHUP reloads what can be reloaded.
async fn signals(
    spec: Arc<Spec>,
    shutdown: CancellationToken,
    reload: mpsc::Sender<Tunables>,
    cancel: CancellationToken,
) -> Result<(), SeamError> {
    use tokio::signal::unix::{SignalKind, signal};
    let setup = |k| {
        signal(k).map_err(|e| SeamError {
            status: ExitStatus::Failure,
            message: format!("cannot install signal handlers: {e}"),
        })
    };
    let mut term = setup(SignalKind::terminate())?;
    let mut int = setup(SignalKind::interrupt())?;
    let mut hup = setup(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = term.recv() => {
                tracing::info!("SIGTERM: flushing and stopping");
                shutdown.cancel();
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: flushing and stopping");
                shutdown.cancel();
            }
            _ = hup.recv() => {
                let path = spec.path.clone();
                let loaded = tokio::task::spawn_blocking(move || crate::spec::load(&path)).await;
                match loaded {
                    Ok(Ok(new)) => match super::reload_verdict(&spec, &new) {
                        Ok(()) => {
                            let t = Tunables {
                                debounce: new.daemon.debounce,
                                flush_deadline: new.daemon.flush_deadline,
                                intervals: new.targets.iter().map(|t| t.interval).collect(),
                            };
                            let _ = reload.send(t).await;
                            tracing::info!("SIGHUP: spec reloaded (intervals, debounce, flush deadline)");
                        }
                        Err(why) => tracing::warn!(reason = %why, "SIGHUP: spec NOT reloaded; restart coltecd to apply it"),
                    },
                    Ok(Err(e)) => tracing::warn!(error = %e, "SIGHUP: spec NOT reloaded: it does not validate"),
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: spec reload failed"),
                }
            }
        }
    }
}
