//! Helpers every one-shot command that works on targets shares (`sync`,
//! `restore`): loading an enabled spec, choosing targets, taking the state
//! dir lock, cancelling on Ctrl-C.

use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::error::{Fail, HasExitStatus};
use crate::spec::{self, Spec};
use crate::state_dir::{StateDir, StateDirError, StateLock};

/// Set up stderr logging and load the spec; `None` (after saying so) when
/// persistence is disabled and there is nothing to `verb`.
pub(super) fn load_enabled(global: &GlobalArgs, verb: &str) -> Result<Option<Spec>, Fail> {
    crate::logging::init_stderr(global);
    let spec = spec::load(&global.config)?;
    if !spec.enabled {
        println!(
            "persistence is disabled in {}; nothing to {verb}",
            spec.path.display()
        );
        return Ok(None);
    }
    Ok(Some(spec))
}

/// Cancel `cancel` on Ctrl-C, so a one-shot run stops between files and
/// aborts in-flight uploads instead of dying mid-transfer. The watcher task
/// is aborted when the returned guard drops.
pub(super) fn cancel_on_ctrl_c(
    cancel: &CancellationToken,
) -> tokio_util::task::AbortOnDropHandle<()> {
    let c = cancel.clone();
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c.cancel();
        }
    }))
}

/// Targets to work on: all (in priority order) or those named by `--only`.
pub(super) fn select_targets(spec: &Spec, only: &[String]) -> Result<Vec<String>, Fail> {
    Ok(spec
        .select(only)?
        .into_iter()
        .map(|t| t.name.clone())
        .collect())
}

/// Take the state dir lock, explaining what to do when a daemon holds it.
pub(super) fn lock_state(state: &StateDir) -> Result<StateLock, Fail> {
    state.lock().map_err(|e| match e {
        StateDirError::Locked { .. } => Fail::new(
            e.exit_status(),
            anyhow::Error::new(e).context(
                "a coltecd daemon already works on this workspace; ask it to sync now with \
                 `coltecd sync --now`, or stop it first (`coltecd stop`)",
            ),
        ),
        other => other.into(),
    })
}
