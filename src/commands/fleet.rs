//! `coltecd fleet [--json] [--idle D] [--sort K]` and `coltecd fleet gc`:
//! thin wrappers over [`crate::fleet`] (which remotes, printing, exit code).
//! Exit 0 listed, 5 a remote is unreachable, 3 the spec is invalid.

use crate::cli::{FleetArgs, FleetCommand, FleetGcArgs, FleetListArgs, FleetScope, GlobalArgs};
use crate::error::{CmdResult, ExitStatus, Fail};
use crate::fleet::{self, FLEET_SCHEMA, FleetReport, GatherOptions, view};
use crate::spec::{self, RemoteSpec, Spec};

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
    let now = fleet::unix_now();
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
    let _ = (spec, scope, args);
    Err(Fail::new(
        ExitStatus::Failure,
        anyhow::anyhow!("fleet gc is not implemented yet"),
    ))
}
