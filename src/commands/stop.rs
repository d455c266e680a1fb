//! `coltecd stop`: ask the daemon to flush and exit (control socket, else
//! SIGTERM to the pidfile's pid), wait for it, report.
//!
//! Never another container's daemon: when the state dir's pidfile was
//! written in another container, nothing is sent (its control socket would
//! reach that daemon, and its pid means nothing here); `stop` says so and
//! exits 0, as this container's daemon is not running.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cli::{GlobalArgs, StopArgs};
use crate::daemon::control::{self, ControlError, Request, Response};
use crate::daemon::{self, pidfile};
use crate::error::{CmdResult, ExitStatus, Fail};

pub fn run(global: &GlobalArgs, args: &StopArgs) -> CmdResult {
    let (spec, dir) = daemon::locate(&global.config)?;
    let flush = spec
        .as_ref()
        .map(|s| s.daemon.flush_deadline)
        .unwrap_or(Duration::from_secs(8));
    let timeout = args
        .timeout
        .map(Duration::from_secs)
        .unwrap_or(flush + Duration::from_secs(10));
    if let Some(other) = pidfile::foreign(dir.path()) {
        println!(
            "coltecd: not stopping anything: {}",
            super::status::foreign_note(dir.path(), &other)
        );
        return Ok(ExitStatus::Ok);
    }
    let recorded = pidfile::live(dir.path());
    let pid = match control::request(&dir, Request::Stop) {
        Ok(Response::Stopping { pid }) => pid,
        Ok(other) => {
            return Err(Fail::new(
                ExitStatus::Failure,
                anyhow::anyhow!("unexpected answer from the daemon: {other:?}"),
            ));
        }
        Err(e) => {
            let Some(pid) = recorded else {
                if matches!(e, ControlError::NotRunning { .. }) {
                    println!("coltecd: not running");
                    return Ok(ExitStatus::Ok);
                }
                return Err(e.into());
            };
            if pidfile::under_init(dir.path()) {
                // Signalling init would stop the container's command too.
                return Err(Fail::new(
                    ExitStatus::Failure,
                    anyhow::Error::new(e).context(format!(
                        "the sync daemon runs inside `coltecd init` (pid {pid}) and did not take \
                         the stop request; not signalling it, as that would stop the container's \
                         command as well"
                    )),
                ));
            }
            // No usable control socket, but the process lives: signal it.
            let raw = i32::try_from(pid).map_err(|_| {
                Fail::new(
                    ExitStatus::Failure,
                    anyhow::anyhow!("bad pid {pid} in pidfile"),
                )
            })?;
            kill(Pid::from_raw(raw), Signal::SIGTERM).map_err(|err| {
                Fail::new(
                    ExitStatus::Failure,
                    anyhow::anyhow!("cannot signal coltecd (pid {pid}): {err}"),
                )
            })?;
            pid
        }
    };
    let started = Instant::now();
    // Done when the process is gone; under `coltecd init` the process lives
    // on (running the command): done when the daemon removed its pidfile.
    let under_init = pidfile::under_init(dir.path());
    let running =
        || pidfile::is_coltecd(pid) && (!under_init || pidfile::recorded(dir.path()) == Some(pid));
    while running() {
        if started.elapsed() > timeout {
            return Err(Fail::new(
                ExitStatus::Failure,
                anyhow::anyhow!(
                    "coltecd (pid {pid}) is still running after {} s; its log says what it is doing",
                    timeout.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let note = match crate::daemon::status::read_file(dir.path()) {
        Some(s) if s.targets.iter().any(|t| t.pending_files > 0) => {
            let n: u64 = s.targets.iter().map(|t| t.pending_files).sum();
            format!(" ({n} change(s) NOT flushed; see the daemon log)")
        }
        _ => " (flushed, lease released)".to_string(),
    };
    println!("coltecd: stopped (pid {pid}){note}");
    Ok(ExitStatus::Ok)
}
