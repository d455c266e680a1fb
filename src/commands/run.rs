//! `coltecd run`: the daemon in the foreground (also what `start` spawns).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, RunArgs};
use crate::daemon::ready::Readiness;
use crate::daemon::supervisor::{self, Options};
use crate::daemon::{self, status};
use crate::error::{CmdResult, ExitStatus, Fail};

pub fn run(global: &GlobalArgs, args: &RunArgs) -> CmdResult {
    let mut ready = args.ready_fd.and_then(Readiness::from_fd);
    if daemon::disabled() {
        println!("{}", daemon::DISABLED_MESSAGE);
        write_disabled_status(global);
        return Ok(ExitStatus::Ok);
    }
    let spec = match crate::spec::load(&global.config) {
        Ok(s) => s,
        Err(e) => {
            let f = Fail::from(e);
            if let Some(r) = ready.as_mut() {
                r.failed(f.status, &format!("{:#}", f.report));
            }
            return Err(f);
        }
    };
    let foreground = ready.is_none();
    if let Err(e) = crate::logging::init_daemon(global, &spec.daemon.log_dir, foreground) {
        let f = Fail::new(
            ExitStatus::Failure,
            anyhow::anyhow!(
                "cannot write the log in {}: {e}",
                spec.daemon.log_dir.display()
            ),
        );
        if let Some(r) = ready.as_mut() {
            r.failed(f.status, &format!("{:#}", f.report));
        }
        return Err(f);
    }
    crate::daemon::memory::limit_arenas();
    let rt = match crate::runtime::multi_thread() {
        Ok(rt) => rt,
        Err(f) => {
            if let Some(r) = ready.as_mut() {
                r.failed(f.status, &format!("{:#}", f.report));
            }
            return Err(f);
        }
    };
    let result = rt.block_on(supervisor::run(
        Arc::new(spec),
        Options {
            ready,
            shutdown: CancellationToken::new(),
            handle_signals: true,
        },
    ));
    // The stop already fit its budget: do not wait on blocking work an
    // abandoned pass may have left (dropping the runtime would).
    rt.shutdown_timeout(EXIT_GRACE);
    result
}

/// How long exiting waits for leftover blocking work after the stop.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// Leave a "disabled" status for `coltecd status` (best effort: only when
/// the spec loads).
fn write_disabled_status(global: &GlobalArgs) {
    let Ok((Some(spec), dir)) = daemon::locate(&global.config) else {
        return;
    };
    if dir.ensure().is_err() {
        return;
    }
    let s = daemon::status_for_spec(&spec, status::DaemonState::Disabled);
    let _ = status::write_file(dir.path(), &s);
}
