//! `coltecd init -- <cmd…>`: a minimal init for images without one.
//!
//! As PID 1 it spawns the command in its own process group, reaps every
//! zombie (the command's and orphans re-parented to PID 1), forwards
//! SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to the command's process
//! group, and runs the sync daemon in-process alongside. When the command
//! exits, or on SIGTERM/SIGINT, the daemon flushes and releases its lease;
//! then init exits with the command's exit code (128+signal if it was
//! killed). With `COLTEC_DISABLED` only the command runs. If the daemon
//! cannot start (invalid spec, missing credentials, lease held elsewhere)
//! init says so on stderr and still runs the command: the workload comes
//! first, and the message makes the missing persistence visible.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::supervisor::{self, Options};
use crate::error::{CmdResult, ExitStatus, Fail};
use crate::logging::LogOptions;

/// Signals passed on to the command's process group.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Exit code when the command cannot be started (like a shell's).
const CANNOT_RUN: u8 = 127;

/// Run `command` as init, with the daemon for the spec at `config`
/// alongside, logging as `log` says.
pub fn run(config: &Path, log: &LogOptions, command: &[OsString]) -> CmdResult {
    let Some((program, args)) = command.split_first() else {
        return Err(Fail::new(
            ExitStatus::Usage,
            anyhow::anyhow!("init needs a command: coltecd init -- <cmd> [args…]"),
        ));
    };
    let rt = crate::runtime::multi_thread()?;
    let result = rt.block_on(supervise(config, log, program, args));
    // The daemon's stop already fit its budget: do not wait on blocking
    // work an abandoned pass may have left (dropping the runtime would).
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

async fn supervise(
    config: &Path,
    log: &LogOptions,
    program: &OsString,
    args: &[OsString],
) -> CmdResult {
    // Signal handlers first, so nothing the child does is missed.
    let mut signals = Listeners::install()?;
    let child_pid = match spawn_command(program, args) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("coltecd: cannot run {}: {e}", program.to_string_lossy());
            signals.stop().await;
            return Ok(ExitStatus::Child(CANNOT_RUN));
        }
    };
    let shutdown = CancellationToken::new();
    let mut daemon = start_daemon(config, log, shutdown.clone());

    let mut child_code: Option<u8> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while child_code.is_none() || daemon.is_some() {
        tokio::select! {
            Some(sig) = signals.rx.recv() => {
                if sig == Signal::SIGCHLD {
                    reap(child_pid, &mut child_code);
                } else if child_code.is_none() {
                    if let Err(e) = killpg(child_pid, sig) {
                        tracing::debug!(%sig, error = %e, "forwarding a signal failed");
                    }
                    if matches!(sig, Signal::SIGTERM | Signal::SIGINT) {
                        // Flush while the command shuts down: both must fit
                        // in the container's stop grace period.
                        shutdown.cancel();
                    }
                }
            }
            r = async { match daemon.as_mut() { Some(h) => h.await, None => std::future::pending().await } } => {
                daemon = None;
                let r = r.unwrap_or_else(|e| Err(Fail::new(ExitStatus::Failure, anyhow::anyhow!("sync daemon crashed: {e}"))));
                if let Err(f) = &r {
                    eprintln!("coltecd: sync stopped: {:#}", f.report);
                }
            }
            _ = tick.tick() => reap(child_pid, &mut child_code),
        }
        if child_code.is_some() && !shutdown.is_cancelled() {
            shutdown.cancel();
        }
    }
    reap(child_pid, &mut child_code);
    signals.stop().await;
    Ok(ExitStatus::Child(child_code.unwrap_or(0)))
}

/// The signals init forwards (and SIGCHLD), delivered on `rx` in arrival
/// order by one signal-hook iterator on its own thread: one registration
/// for the whole set, and `stop` closes it and joins the thread.
struct Listeners {
    rx: mpsc::Receiver<Signal>,
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listeners {
    fn install() -> Result<Listeners, Fail> {
        let (tx, rx) = mpsc::channel::<Signal>(64);
        let wanted: Vec<i32> = FORWARDED
            .into_iter()
            .chain([Signal::SIGCHLD])
            .map(|s| s as i32)
            .collect();
        let mut signals = signal_hook::iterator::Signals::new(&wanted).map_err(|e| {
            Fail::new(
                ExitStatus::Failure,
                anyhow::anyhow!("cannot install the signal handlers init forwards: {e}"),
            )
        })?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("coltecd-init-signals".into())
            .spawn(move || {
                for raw in signals.forever() {
                    let Ok(sig) = Signal::try_from(raw) else {
                        continue;
                    };
                    if tx.blocking_send(sig).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| {
                Fail::new(
                    ExitStatus::Failure,
                    anyhow::anyhow!("cannot start init's signal thread: {e}"),
                )
            })?;
        Ok(Listeners {
            rx,
            handle,
            thread: Some(thread),
        })
    }

    async fn stop(mut self) {
        self.handle.close();
        // The receiver goes first, so a send blocked on a full channel
        // returns and the thread sees the closed iterator.
        drop(self.rx);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Start the command in its own process group (with the terminal, if
/// any). It is reaped by `waitpid(-1)`; the std handle is never waited on.
fn spawn_command(program: &OsString, args: &[OsString]) -> std::io::Result<Pid> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).process_group(0);
    // SAFETY: only async-signal-safe calls (signal, isatty, tcsetpgrp,
    // getpid) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Give the command the terminal, if there is one, so an
            // interactive shell under init works.
            use nix::sys::signal::{SigHandler, signal as set_handler};
            if nix::unistd::isatty(std::os::fd::BorrowedFd::borrow_raw(0)).unwrap_or(false) {
                let _ = set_handler(Signal::SIGTTOU, SigHandler::SigIgn);
                let _ = nix::unistd::tcsetpgrp(
                    std::os::fd::BorrowedFd::borrow_raw(0),
                    nix::unistd::getpid(),
                );
                let _ = set_handler(Signal::SIGTTOU, SigHandler::SigDfl);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
    Ok(Pid::from_raw(pid))
}

/// Start the daemon task, unless paused or its spec does not load (then say
/// why on stderr; the command runs regardless).
fn start_daemon(
    config: &Path,
    log: &LogOptions,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<CmdResult>> {
    if super::disabled() {
        eprintln!("{}", super::DISABLED_MESSAGE);
        return None;
    }
    let spec = match crate::spec::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("coltecd: sync NOT running: {:#}", anyhow::Error::new(e));
            return None;
        }
    };
    if let Err(e) = crate::logging::init_daemon(log.clone(), &spec.daemon.log_dir, true) {
        eprintln!(
            "coltecd: cannot write logs to {}: {e}; logging to stderr only",
            spec.daemon.log_dir.display()
        );
        crate::logging::init_stderr(log.clone());
    }
    Some(tokio::spawn(supervisor::run(
        Arc::new(spec),
        Options {
            ready: None,
            shutdown,
            handle_signals: false,
        },
    )))
}

/// Reap every exited child; record the command's exit code.
fn reap(child: Pid, code: &mut Option<u8>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) => {
                if pid == child {
                    *code = Some(u8::try_from(c & 0xff).unwrap_or(1));
                }
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                if pid == child {
                    *code = Some(128u8.saturating_add(sig as i32 as u8));
                }
            }
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
}
