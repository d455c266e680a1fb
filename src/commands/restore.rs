//! `coltecd restore [--only NAME]... [--to DIR] [--dry-run]`: pull each
//! target's remote state into its directory (or DIR; with several targets
//! `DIR/<name>`). Files that differ locally are replaced by the remote
//! version; nothing local is deleted. Exit codes as for `sync`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::common::{cancel_on_ctrl_c, load_enabled, lock_state, select_targets};
use super::pass_output::{TargetResults, TerminalProgress};
use crate::cli::{GlobalArgs, RestoreArgs};
use crate::error::{CmdResult, ExitStatus};
use crate::remote::WriteGate;
use crate::state_dir::StateDir;
use crate::sync::Engine;

pub fn run(global: &GlobalArgs, args: &RestoreArgs) -> CmdResult {
    let Some(spec) = load_enabled(global, "restore")? else {
        return Ok(ExitStatus::Ok);
    };
    let targets = select_targets(&spec, &args.only)?;
    let state = StateDir::for_spec(&spec);
    let _lock = lock_state(&state)?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    rt.block_on(async {
        let _ctrl_c = cancel_on_ctrl_c(&cancel);
        // Restore never writes the remote: no lease needed.
        let engine = Engine::open(Arc::new(spec), &state, WriteGate::always_open())?;
        let mut results = TargetResults::new(args.json);
        let several = targets.len() > 1;
        for name in &targets {
            let to = args.to.as_deref().map(|d| restore_dir(d, name, several));
            let progress = TerminalProgress::new(name);
            let r = engine
                .restore_observed(name, to.as_deref(), args.dry_run, &cancel, &progress)
                .await;
            progress.finish();
            results.record(name, r, args.dry_run);
            if cancel.is_cancelled() {
                break;
            }
        }
        results.status()
    })
}

/// Where `restore --to DIR` puts a target.
fn restore_dir(to: &Path, name: &str, several: bool) -> PathBuf {
    if several {
        to.join(name)
    } else {
        to.to_path_buf()
    }
}
