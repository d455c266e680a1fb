//! `coltecd start`: validate, spawn `coltecd run` detached, wait until it is
//! syncing (or failed), print one line, return. Nothing is written to the
//! terminal afterwards (Codespaces would count it as activity).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use crate::cli::{GlobalArgs, LogFormat};
use crate::daemon::ready::{self, ReadyMsg};
use crate::daemon::{self, pidfile};
use crate::error::{CmdResult, ExitStatus, Fail};
use crate::state_dir::StateDir;

pub fn run(global: &GlobalArgs) -> CmdResult {
    if daemon::disabled() {
        println!("{}", daemon::DISABLED_MESSAGE);
        return Ok(ExitStatus::Ok);
    }
    let spec = crate::spec::load(&global.config)?;
    if spec.targets.is_empty() || !spec.enabled {
        println!(
            "coltecd: nothing to sync for {} (persistence disabled or no sync targets)",
            spec.workspace.slug()
        );
        return Ok(ExitStatus::Ok);
    }
    let state = StateDir::for_spec(&spec);
    if let Some(pid) = pidfile::live(state.path()) {
        println!("coltecd: already running (pid {pid})");
        return Ok(ExitStatus::Ok);
    }
    let log_dir = &spec.daemon.log_dir;
    let fail = |what: &str, e: std::io::Error| {
        Fail::new(ExitStatus::Failure, anyhow::anyhow!("{what}: {e}"))
    };
    std::fs::create_dir_all(log_dir)
        .map_err(|e| fail(&format!("cannot create log dir {}", log_dir.display()), e))?;
    let log_path = log_dir.join(crate::logging::DAEMON_LOG_FILE);
    // The daemon's own stdout/stderr (panics, early errors) go to its log.
    let log = crate::logging::open_log_file(&log_path)
        .map_err(|e| Fail::new(ExitStatus::Failure, anyhow::anyhow!("{e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| fail("cannot duplicate the log file handle", e))?;
    let exe = std::env::current_exe().map_err(|e| fail("cannot find the coltecd executable", e))?;

    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
        Fail::new(
            ExitStatus::Failure,
            anyhow::anyhow!("cannot create a pipe: {e}"),
        )
    })?;
    // If we were started with stdio closed, the pipe may sit on fd 0-2,
    // which the child's stdio setup would overwrite: move it above them.
    let write_end = if write_end.as_raw_fd() <= 2 {
        let moved = nix::fcntl::fcntl(&write_end, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            .map_err(|e| {
                Fail::new(
                    ExitStatus::Failure,
                    anyhow::anyhow!("cannot set up the readiness pipe: {e}"),
                )
            })?;
        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor we now own.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(moved) }
    } else {
        write_end
    };
    let ready_fd = write_end.as_raw_fd();

    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config")
        .arg(&spec.path)
        .arg("--log-format")
        .arg(match global.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        });
    if let Some(level) = &global.log_level {
        cmd.arg("--log-level").arg(level);
    }
    cmd.arg("run")
        .arg("--ready-fd")
        .arg(ready_fd.to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    // SAFETY: only async-signal-safe calls (setsid, fcntl) between fork and
    // exec. setsid detaches the daemon from our session and terminal; the
    // readiness fd must survive exec, so clear its close-on-exec flag.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            let fd = std::os::fd::BorrowedFd::borrow_raw(ready_fd);
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail("cannot start the coltecd daemon", e))?;
    // Only the daemon may hold the write end, so its exit means EOF here.
    drop(write_end);
    let msg = ready::wait(File::from(read_end));
    match msg {
        Some(ReadyMsg::Ready { summary, .. }) => {
            println!("{summary}");
            Ok(ExitStatus::Ok)
        }
        Some(ReadyMsg::Already { pid }) => {
            println!("coltecd: already running (pid {pid})");
            Ok(ExitStatus::Ok)
        }
        Some(ReadyMsg::Failed { code, reason }) => {
            let _ = child.wait();
            Err(Fail::new(
                status_from_code(code),
                anyhow::anyhow!("{reason}\n(daemon log: {})", log_path.display()),
            ))
        }
        None => {
            let how = match child.wait() {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown status ({e})"),
            };
            Err(Fail::new(
                ExitStatus::Failure,
                anyhow::anyhow!(
                    "the daemon exited ({how}) before it was ready; see {}",
                    log_path.display()
                ),
            ))
        }
    }
}

fn status_from_code(code: u8) -> ExitStatus {
    match code {
        0 => ExitStatus::Ok,
        2 => ExitStatus::Usage,
        3 => ExitStatus::InvalidSpec,
        4 => ExitStatus::LeaseHeld,
        5 => ExitStatus::Remote,
        6 => ExitStatus::PartialFailure,
        _ => ExitStatus::Failure,
    }
}
