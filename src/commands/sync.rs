//! `coltecd sync [--once] [--dry-run] [--only NAME]... [--verify] [--allow-mass-delete]`:
//! one pass over the spec's targets, by priority, then exit; `coltecd sync
//! --now` asks the running daemon for that pass instead.
//!
//! It holds the state dir lock for its whole run, so it never races a
//! daemon; when a daemon holds it, it says so (exit 4). Output: one line
//! per target (or the plan with `--dry-run`), a progress bar on stderr when
//! stderr is a terminal. Exit codes: 0 all good, 6 some files failed (the
//! others were transferred), 5 the remote is unreachable or credentials are
//! missing/rejected, 1 a target refused to run (e.g. the mass-delete guard).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::common::{cancel_on_ctrl_c, load_enabled, lock_state, select_targets};
use super::pass_output::{TargetResults, TerminalProgress};
use crate::cli::{GlobalArgs, SyncArgs};
use crate::error::{CmdResult, ExitStatus};
use crate::remote::WriteGate;
use crate::spec::Spec;
use crate::state_dir::{ScratchStateDir, StateDir};
use crate::sync::{Engine, EngineOptions, PassRequest, PassScope};

pub fn run(global: &GlobalArgs, args: &SyncArgs) -> CmdResult {
    let Some(spec) = load_enabled(global, "sync")? else {
        return Ok(ExitStatus::Ok);
    };
    let targets = select_targets(&spec, &args.only)?;
    let state = StateDir::for_spec(&spec);
    if args.now {
        return sync_now(&state);
    }
    // A dry run writes nothing: without a state dir yet, it plans against
    // a throw-away one rather than creating the workspace's.
    let scratch = match args.dry_run && !state.path().exists() {
        true => Some(ScratchStateDir::new()?),
        false => None,
    };
    let state = scratch.as_ref().map_or(state.clone(), |s| s.dir().clone());
    let _lock = lock_state(&state)?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    rt.block_on(async {
        let _ctrl_c = cancel_on_ctrl_c(&cancel);
        let spec = Arc::new(spec);
        if args.dry_run {
            // No lease needed either.
            return sync_once(
                spec,
                &state,
                WriteGate::always_open(),
                &targets,
                args,
                &cancel,
            )
            .await;
        }
        // Lease the written prefixes for the run, so a manual sync cannot
        // collide with another container's daemon (exit 4 if held).
        let opts = crate::lease::AcquireOptions {
            only: Some(targets.clone()),
            force: false,
        };
        crate::lease::while_held(&spec.clone(), &state, opts, |gate| {
            sync_once(spec, &state, gate, &targets, args, &cancel)
        })
        .await?
    })
}

/// `--now`: the running daemon does a full pass of every target; we print
/// its outcome. Exit 3 when no daemon runs, 6 when a target failed.
fn sync_now(state: &StateDir) -> CmdResult {
    let outcomes = crate::daemon::control::sync_now(state)?;
    let mut status = ExitStatus::Ok;
    for o in outcomes {
        match o.error {
            None if o.failed == 0 => println!(
                "{}: uploaded {}, downloaded {}",
                o.target, o.uploaded, o.downloaded
            ),
            None => {
                println!(
                    "{}: uploaded {}, downloaded {}, {} file(s) failed (see `coltecd status`)",
                    o.target, o.uploaded, o.downloaded, o.failed
                );
                status = status.max(ExitStatus::PartialFailure);
            }
            Some(e) => {
                println!("{}: failed: {}", o.target, crate::escape::name(&e));
                status = status.max(ExitStatus::PartialFailure);
            }
        }
    }
    Ok(status)
}

/// Run one pass per target (in the given order) with writes gated by `gate`.
pub async fn sync_once(
    spec: Arc<Spec>,
    state: &StateDir,
    gate: WriteGate,
    targets: &[String],
    args: &SyncArgs,
    cancel: &CancellationToken,
) -> CmdResult {
    // A one-shot run trusts an unchanged remote manifest instead of
    // listing the remote (`--verify` lists).
    let engine = Engine::open_with(
        spec,
        state,
        gate,
        EngineOptions {
            trust_manifest_on_open: !args.verify,
            manifest_min_interval: None,
        },
    )?;
    let mut results = TargetResults::new(args.json);
    for name in targets {
        let progress = TerminalProgress::new(name);
        let req = PassRequest {
            scope: PassScope::Full {
                verify: args.verify,
            },
            dry_run: args.dry_run,
            allow_mass_delete: args.allow_mass_delete,
        };
        let r = engine.pass_observed(name, req, cancel, &progress).await;
        progress.finish();
        results.record(name, r, args.dry_run);
        if cancel.is_cancelled() {
            break;
        }
    }
    results.status()
}
