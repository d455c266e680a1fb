//! `coltecd fleet [--json] [--idle D] [--sort K]` and `coltecd fleet gc`:
//! thin wrappers over [`crate::fleet`] (which remotes, printing, exit code).
//! Exit 0 listed (gc: nothing failed), 1 a gc removal failed, 5 a remote
//! is unreachable, 3 the spec is invalid.

use crate::cli::{FleetArgs, FleetCommand, FleetGcArgs, FleetListArgs, FleetScope, GlobalArgs};
use crate::daemon::status::human_bytes;
use crate::error::{CmdResult, ExitStatus, Fail};
use crate::fleet::gc::{self, GC_SCHEMA, GcItem, GcReport, GcSettings};
use crate::fleet::{self, FLEET_SCHEMA, FleetReport, GatherOptions, view};
use crate::lease::Clock;
use crate::lease::observe::Observations;
use crate::spec::{self, RemoteSpec, Spec};
use crate::state_dir::StateDir;

pub fn run(global: &GlobalArgs, args: &FleetArgs) -> CmdResult {
    crate::logging::init_stderr(global);
    let spec = spec::load(&global.config)?;
    match &args.command {
        None => list(&spec, &args.list),
        Some(FleetCommand::Gc(gc)) => run_gc(&spec, &args.list.scope, gc),
    }
}

/// The remotes `scope` names (all of the spec's by default).
fn remotes<'a>(spec: &'a Spec, scope: &FleetScope) -> Result<Vec<&'a RemoteSpec>, Fail> {
    match &scope.remote {
        Some(name) => match spec.remotes.get(name) {
            Some(r) => Ok(vec![r]),
            None => Err(Fail::new(
                ExitStatus::Usage,
                anyhow::anyhow!(
                    "the spec has no remote '{name}' (it has: {})",
                    spec.remotes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
        },
        None => Ok(spec.remotes.values().collect()),
    }
}

fn list(spec: &Spec, args: &FleetListArgs) -> CmdResult {
    let opts = GatherOptions {
        sizes: args.sizes,
        trash: args.trash,
    };
    let now = crate::clock::unix_now();
    let mut report = FleetReport {
        schema: FLEET_SCHEMA,
        generated_at: now,
        remotes: Vec::new(),
        targets: Vec::new(),
    };
    let rt = super::runtime()?;
    for remote in remotes(spec, &args.scope)? {
        let (summary, entries) =
            rt.block_on(fleet::gather(remote, &args.scope.prefix, opts, now))?;
        report.remotes.push(summary);
        report.targets.extend(entries);
    }
    if let Some(idle) = args.idle {
        view::filter_idle(&mut report.targets, idle.as_secs());
    }
    view::sort(&mut report.targets, args.sort);
    if args.json {
        let body =
            serde_json::to_string_pretty(&report).map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        println!("{body}");
    } else {
        print!("{}", view::render_table(&report.targets));
        for r in &report.remotes {
            eprintln!(
                "{}: {} ({} listings, {} reads)",
                r.remote, r.root, r.requests.lists, r.requests.gets
            );
        }
    }
    Ok(ExitStatus::Ok)
}

fn run_gc(spec: &Spec, scope: &FleetScope, args: &FleetGcArgs) -> CmdResult {
    let settings = GcSettings {
        ttl: spec.lease.ttl,
        trash_retention: spec.safety.trash_retention,
        dry_run: args.dry_run,
    };
    let state_dir = StateDir::for_spec(spec);
    state_dir
        .ensure()
        .map_err(|e| Fail::new(ExitStatus::Failure, e))?;
    let mut obs = Observations::load(state_dir.path(), Clock::boot());
    let mut report = GcReport {
        schema: GC_SCHEMA,
        dry_run: args.dry_run,
        ..GcReport::default()
    };
    let rt = super::runtime()?;
    for remote in remotes(spec, scope)? {
        let done = rt.block_on(gc::collect(
            remote,
            &scope.prefix,
            settings,
            &mut obs,
            &mut report,
        ));
        // Sightings made so far count for the next run even if this one fails.
        obs.save();
        done?;
    }
    if args.json {
        let body =
            serde_json::to_string_pretty(&report).map_err(|e| Fail::new(ExitStatus::Failure, e))?;
        println!("{body}");
    } else {
        print!("{}", render_gc(&report));
    }
    Ok(if report.failed.is_empty() {
        ExitStatus::Ok
    } else {
        ExitStatus::Failure
    })
}

/// The human form of a gc report: one line per object, removals first.
fn render_gc(r: &GcReport) -> String {
    let removed = if r.dry_run { "would remove" } else { "removed" };
    let mut s = String::new();
    let mut line = |what: &str, i: &GcItem| {
        let size = if i.objects > 1 {
            format!(" ({} objects, {})", i.objects, human_bytes(i.bytes))
        } else {
            String::new()
        };
        s.push_str(&format!(
            "{what:<12} {:<13} {}{size}\n             {}\n",
            i.kind.as_str(),
            i.location,
            i.reason
        ));
    };
    for i in &r.removed {
        line(removed, i);
    }
    for i in &r.failed {
        line("FAILED", i);
    }
    for i in &r.kept {
        line("kept", i);
    }
    s.push_str(&format!(
        "{}: {} {removed}, {} kept, {} failed\n",
        if r.dry_run {
            "fleet gc --dry-run"
        } else {
            "fleet gc"
        },
        r.removed.len(),
        r.kept.len(),
        r.failed.len()
    ));
    s
}
