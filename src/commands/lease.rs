//! `coltecd lease show | break | release`: inspect, take over and give up
//! the leases on the spec's remote prefixes.

use std::io::Write;

use crate::cli::{
    GlobalArgs, LeaseArgs, LeaseBreakArgs, LeaseCommand, LeaseHoldArgs, LeaseReleaseArgs,
    LeaseShowArgs, StopArgs,
};
use crate::error::{CmdResult, ExitStatus, Fail};
use crate::lease::{self, Broken, LeaseView, LeaseViewState};
use crate::state_dir::StateDir;

pub fn run(global: &GlobalArgs, args: &LeaseArgs) -> CmdResult {
    crate::logging::init_stderr(global);
    match &args.command {
        LeaseCommand::Show(a) => show(global, a),
        LeaseCommand::Break(a) => brk(global, a),
        LeaseCommand::Release(a) => release(global, a),
        LeaseCommand::Hold(a) => hold(global, a),
    }
}

fn only(names: &[String]) -> Option<&[String]> {
    (!names.is_empty()).then_some(names)
}

fn print(text: &str) -> CmdResult {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is not a failure of the command.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(ExitStatus::Ok)
}

fn show(global: &GlobalArgs, args: &LeaseShowArgs) -> CmdResult {
    let spec = crate::spec::load(&global.config)?;
    let state_dir = StateDir::for_spec(&spec);
    let views = super::runtime()?.block_on(lease::inspect(&spec, &state_dir, only(&args.only)))?;
    if args.json {
        let json =
            serde_json::to_string_pretty(&views).map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        return print(&format!("{json}\n"));
    }
    if views.is_empty() {
        return print("no sync target writes to a remote: nothing is leased\n");
    }
    let mut s = String::new();
    for v in &views {
        s.push_str(&render_view(v));
    }
    print(&s)
}

fn render_view(v: &LeaseView) -> String {
    let mut s = format!("{} ({})\n", v.location, v.targets.join(", "));
    let stale = match (v.unchanged_for_secs, v.stale_in_secs) {
        (Some(u), Some(0)) => format!("unchanged here for {u}s: stale, can be taken over"),
        (Some(u), Some(n)) => format!("unchanged here for {u}s, stale in {n}s if not renewed"),
        _ => String::new(),
    };
    match (v.state, &v.holder) {
        (LeaseViewState::Off, _) => {
            s.push_str("  leasing is OFF in the spec: nothing prevents two writers\n")
        }
        (LeaseViewState::Free, _) => s.push_str("  free\n"),
        (LeaseViewState::Released, _) => s.push_str("  free (released)\n"),
        (state, Some(h)) => {
            let mine = state == LeaseViewState::Mine;
            let who = if mine {
                "this container".to_string()
            } else {
                h.describe_holder()
            };
            s.push_str(&format!("  held by {who}\n"));
            s.push_str(&format!(
                "  since {}, last renewal {}, ttl {}s, lease id {}\n",
                h.acquired_at,
                h.renewed_at,
                h.ttl().as_secs_f64(),
                h.lease_id
            ));
            if !mine && !stale.is_empty() {
                s.push_str(&format!("  {stale}\n"));
            }
        }
        (_, None) => {
            s.push_str("  held by an unreadable lease object\n");
            if !stale.is_empty() {
                s.push_str(&format!("  {stale}\n"));
            }
        }
    }
    s
}

fn brk(global: &GlobalArgs, args: &LeaseBreakArgs) -> CmdResult {
    if !args.force {
        return Err(Fail::new(
            ExitStatus::Usage,
            anyhow::anyhow!(
                "`lease break` takes the lease away from whichever container holds it; if that container \
                 is still running, two containers may write the same state. Re-run with --force if that \
                 container is gone (see `coltecd lease show`)"
            ),
        ));
    }
    let spec = crate::spec::load(&global.config)?;
    let state_dir = StateDir::for_spec(&spec);
    if !spec.lease.enabled {
        return Err(Fail::new(
            ExitStatus::Usage,
            anyhow::anyhow!(
                "leasing is off in this spec (`lease: off`): there is no lease to break"
            ),
        ));
    }
    let broken =
        super::runtime()?.block_on(lease::break_leases(&spec, &state_dir, only(&args.only)))?;
    if args.json {
        let json =
            serde_json::to_string_pretty(&broken).map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        return print(&format!("{json}\n"));
    }
    let mut s = String::new();
    for b in &broken {
        s.push_str(&render_broken(b));
    }
    print(&s)
}

/// `lease release`: a running daemon is stopped as `stop` does (it flushes,
/// then releases); otherwise the leases this container holds are released
/// here, all or nothing (exit 4 naming the holder if another holds one).
fn release(global: &GlobalArgs, args: &LeaseReleaseArgs) -> CmdResult {
    let (_, dir) = crate::daemon::locate(&global.config)?;
    if crate::daemon::pidfile::live(dir.path()).is_some() {
        return super::stop::run(
            global,
            &StopArgs {
                timeout: args.timeout,
            },
        );
    }
    let spec = crate::spec::load(&global.config)?;
    if !spec.lease.enabled {
        return Err(Fail::new(
            ExitStatus::Usage,
            anyhow::anyhow!(
                "leasing is off in this spec (`lease: off`): there is no lease to release"
            ),
        ));
    }
    let state_dir = StateDir::for_spec(&spec);
    // No daemon may start (and acquire) while we release.
    let _lock = state_dir.lock()?;
    let outcomes = super::runtime()?.block_on(lease::release_own(&spec, &state_dir, None))?;
    let held = outcomes.iter().any(|o| o.state == "held");
    let kept = outcomes.iter().any(|o| o.state == "kept");
    if args.json {
        let json = serde_json::to_string_pretty(&outcomes)
            .map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        print(&format!("{json}\n"))?;
    } else {
        let mut s = String::new();
        for o in &outcomes {
            s.push_str(&match (o.state, &o.holder) {
                ("released", _) => format!("released {}: the next container acquires it at once\n", o.location),
                ("free", _) => format!("{}: not held; nothing to release\n", o.location),
                ("held", Some(h)) => format!(
                    "{}: held by another container, {} (lease id {}): not released. Run `coltecd lease release` \
                     in that container, or `coltecd lease break --force` here if it is gone\n",
                    o.location,
                    h.describe_holder(),
                    h.lease_id
                ),
                ("held", None) => format!(
                    "{}: held through an unreadable lease object: not released (see `coltecd lease show`)\n",
                    o.location
                ),
                _ => format!("{}: still held by this container (not released)\n", o.location),
            });
        }
        print(&s)?;
    }
    if held {
        return Ok(ExitStatus::LeaseHeld);
    }
    Ok(if kept {
        ExitStatus::Failure
    } else {
        ExitStatus::Ok
    })
}

fn render_broken(b: &Broken) -> String {
    match &b.previous {
        Some(p) => format!(
            "broke the lease on {}: it was held by {} since {} (last renewal {}, lease id {}); its writes are now fenced\n",
            b.location,
            p.describe_holder(),
            p.acquired_at,
            p.renewed_at,
            p.lease_id
        ),
        None => format!("{}: was not held; nothing to break\n", b.location),
    }
}

/// Hold the leases until SIGTERM/SIGINT: the lease half of a daemon, so
/// contention, `kill -9` and takeover can be exercised on real processes.
fn hold(global: &GlobalArgs, args: &LeaseHoldArgs) -> CmdResult {
    use tokio::signal::unix::{SignalKind, signal};
    use tokio_util::sync::CancellationToken;

    let spec = crate::spec::load(&global.config)?;
    let state_dir = StateDir::for_spec(&spec);
    let _lock = state_dir.lock()?;
    let rt = super::runtime()?;
    rt.block_on(async {
        // Handlers first: a SIGTERM right after `held` is printed must release.
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        let opts = lease::AcquireOptions {
            only: only(&args.only).map(<[String]>::to_vec),
            force: false,
        };
        let set = lease::acquire(&spec, &state_dir, opts).await?;
        let mut s = String::new();
        for st in set.snapshot() {
            s.push_str(&format!(
                "held {} ({})\n",
                st.location,
                st.targets.join(", ")
            ));
        }
        print(&s)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let watcher = tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
        });
        let kept = set.maintain(cancel.clone()).await;
        cancel.cancel();
        let _ = watcher.await;
        set.release().await?;
        kept?;
        Ok(ExitStatus::Ok)
    })
}
