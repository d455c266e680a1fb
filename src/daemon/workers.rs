//! The supervisor's named workers: control socket, lease keeper, watcher,
//! status file, systemd watchdog, signals. Each runs in the supervisor's
//! `JoinSet` until its cancel token fires and ends as a [`WorkerEnd`]: its
//! [`WorkerKind`] and, for the two that can fail critically (the lease is
//! lost, signal handlers cannot be installed), a typed [`WorkerError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::scheduler::{Board, SchedulerCommand, Tunables};
use super::seam::LeaseSeam;
use super::status::{self, DaemonStatus, Source};
use super::watcher::{self, DrainRequest, WatchIo, WatchMsg, WatchTarget};
use super::{control, sdnotify};
use crate::error::{ExitStatus, HasExitStatus};
use crate::lease::LeaseError;
use crate::spec::Spec;

/// Which worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WorkerKind {
    Control,
    Lease,
    Watcher,
    StatusFile,
    Watchdog,
    Signals,
}

impl WorkerKind {
    /// The name in logs.
    pub fn name(self) -> &'static str {
        match self {
            WorkerKind::Control => "control",
            WorkerKind::Lease => "lease",
            WorkerKind::Watcher => "watcher",
            WorkerKind::StatusFile => "status-file",
            WorkerKind::Watchdog => "watchdog",
            WorkerKind::Signals => "signals",
        }
    }
}

impl std::fmt::Display for WorkerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A worker's critical failure: the daemon stops.
#[derive(Debug, thiserror::Error)]
pub(super) enum WorkerError {
    /// The lease is definitively lost: stop without flushing.
    #[error(transparent)]
    LeaseLost(#[from] LeaseError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl HasExitStatus for WorkerError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            WorkerError::LeaseLost(e) => e.exit_status(),
            WorkerError::Signals(_) => ExitStatus::Failure,
        }
    }
}

pub(super) type WorkerEnd = (WorkerKind, Result<(), WorkerError>);

/// What the workers need.
pub(super) struct WorkerSetup {
    pub spec: Arc<Spec>,
    pub board: Arc<Board>,
    pub lease: Arc<dyn LeaseSeam>,
    pub state_dir: PathBuf,
    pub listener: UnixListener,
    pub commands: mpsc::Sender<SchedulerCommand>,
    /// The watcher's messages to the scheduler, and the scheduler's drain
    /// requests to it.
    pub watch: (mpsc::Sender<WatchMsg>, mpsc::Receiver<DrainRequest>),
    /// `Some` when the daemon handles SIGTERM/SIGINT/SIGHUP itself.
    pub signals: Option<(CancellationToken, mpsc::Sender<Tunables>)>,
}

/// Start every worker; each stops when `cancel` fires.
pub(super) fn spawn_all(setup: WorkerSetup, cancel: &CancellationToken) -> JoinSet<WorkerEnd> {
    let mut workers = JoinSet::new();
    let c = cancel.clone();
    let board = setup.board.clone();
    let (listener, commands) = (setup.listener, setup.commands);
    workers.spawn(async move {
        let snapshot = Arc::new(move || board.snapshot());
        control::serve(listener, snapshot, commands, c).await;
        (WorkerKind::Control, Ok(()))
    });
    let (c, lease) = (cancel.clone(), setup.lease);
    workers.spawn(async move {
        let r = lease.maintain(c).await.map_err(WorkerError::from);
        (WorkerKind::Lease, r)
    });
    let targets: Vec<WatchTarget> = setup
        .spec
        .targets
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.direction.writes_remote() && setup.spec.daemon.watch == crate::spec::WatchMode::Auto
        })
        .map(|(i, t)| WatchTarget::from_target(i, t))
        .collect();
    let (c, (out, drain)) = (cancel.clone(), setup.watch);
    let io = WatchIo {
        out,
        drain,
        barrier_dir: Some(setup.state_dir.join(watcher::BARRIER_DIR)),
    };
    workers.spawn(async move {
        watcher::run(targets, io, c).await;
        (WorkerKind::Watcher, Ok(()))
    });
    let (c, board, dir) = (cancel.clone(), setup.board, setup.state_dir);
    workers.spawn(async move {
        status_writer(board, dir, c).await;
        (WorkerKind::StatusFile, Ok(()))
    });
    if let Some(every) = sdnotify::watchdog_interval() {
        let c = cancel.clone();
        workers.spawn(async move {
            watchdog(every, c).await;
            (WorkerKind::Watchdog, Ok(()))
        });
    }
    if let Some((shutdown, reload)) = setup.signals {
        let (c, spec) = (cancel.clone(), setup.spec);
        workers.spawn(async move {
            let r = signals(spec, shutdown, reload, c).await;
            (WorkerKind::Signals, r)
        });
    }
    workers
}

async fn watchdog(every: Duration, cancel: CancellationToken) {
    loop {
        sdnotify::notify("WATCHDOG=1");
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
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
        comparable.leases.detail = Vec::new();
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

/// The settings a SIGHUP may change, from `spec`.
pub(super) fn tunables(spec: &Spec) -> Tunables {
    Tunables {
        debounce: spec.daemon.debounce,
        flush_deadline: spec.daemon.flush_deadline,
        intervals: spec.targets.iter().map(|t| t.interval).collect(),
    }
}

/// SIGTERM/SIGINT stop; SIGHUP reloads what can be reloaded.
async fn signals(
    spec: Arc<Spec>,
    shutdown: CancellationToken,
    reload: mpsc::Sender<Tunables>,
    cancel: CancellationToken,
) -> Result<(), WorkerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let setup = |k| signal(k).map_err(WorkerError::Signals);
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
            _ = hup.recv() => reload_spec(&spec, &reload).await,
        }
    }
}

/// SIGHUP: load the spec again and pass on what may change.
async fn reload_spec(spec: &Spec, reload: &mpsc::Sender<Tunables>) {
    let path = spec.path.clone();
    let loaded = tokio::task::spawn_blocking(move || crate::spec::load(&path)).await;
    match loaded {
        Ok(Ok(new)) => match super::reload_verdict(spec, &new) {
            Ok(()) => {
                let _ = reload.send(tunables(&new)).await;
                tracing::info!("SIGHUP: spec reloaded (intervals, debounce, flush deadline)");
            }
            Err(why) => {
                tracing::warn!(reason = %why, "SIGHUP: spec NOT reloaded; restart coltecd to apply it")
            }
        },
        Ok(Err(e)) => tracing::warn!(error = %e, "SIGHUP: spec NOT reloaded: it does not validate"),
        Err(e) => tracing::warn!(error = %e, "SIGHUP: spec reload failed"),
    }
}
