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

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, SyncArgs};
use crate::error::{CmdResult, ExitStatus, Fail, HasExitStatus};
use crate::remote::WriteGate;
use crate::spec::{self, Spec};
use crate::state_dir::{StateDir, StateDirError, StateLock};
use crate::sync::{
    ActionCount, Engine, EngineOptions, PassObserver, PassReport, PassRequest, PassScope,
    PlanSummary, SyncError,
};

/// How many failed files are printed per target.
const SHOW_FAILED: usize = 10;

pub fn run(global: &GlobalArgs, args: &SyncArgs) -> CmdResult {
    let Some(spec) = load_enabled(global, "sync")? else {
        return Ok(ExitStatus::Ok);
    };
    let targets = select_targets(&spec, &args.only)?;
    let state = StateDir::for_spec(&spec);
    if args.now {
        return sync_now(&state);
    }
    let _lock = lock_state(&state)?;
    let rt = super::runtime()?;
    let cancel = CancellationToken::new();
    rt.block_on(async {
        let _ctrl_c = cancel_on_ctrl_c(&cancel);
        let spec = Arc::new(spec);
        if args.dry_run {
            // A dry run writes nothing: no lease needed.
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
                println!("{}: failed: {e}", o.target);
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
    let mut outcome = Outcome::new(args.json);
    for name in targets {
        let progress = Progress::new(name);
        let req = PassRequest {
            scope: PassScope::Full {
                verify: args.verify,
            },
            dry_run: args.dry_run,
            allow_mass_delete: args.allow_mass_delete,
        };
        let r = engine.pass_observed(name, req, cancel, &progress).await;
        progress.finish();
        outcome.record(name, r, args.dry_run);
        if cancel.is_cancelled() {
            break;
        }
    }
    outcome.status()
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

/// Collects per-target results into output and one exit status.
#[derive(Default)]
pub(super) struct Outcome {
    worst: Option<ExitStatus>,
    partial: bool,
    /// `--json`: reports are collected and printed by [`Outcome::status`].
    json: Option<Vec<serde_json::Value>>,
}

impl Outcome {
    pub(super) fn new(json: bool) -> Outcome {
        Outcome {
            json: json.then(Vec::new),
            ..Outcome::default()
        }
    }

    pub(super) fn record(&mut self, name: &str, r: Result<PassReport, SyncError>, dry_run: bool) {
        if let Some(items) = &mut self.json {
            let item = match &r {
                Ok(report) => serde_json::to_value(report).unwrap_or_default(),
                Err(e) => serde_json::json!({
                    "target": name,
                    "error": e.to_string(),
                    "exit_code": e.exit_status().code(),
                }),
            };
            items.push(item);
        }
        match r {
            Ok(report) if self.json.is_some() => self.partial |= !report.failed.is_empty(),
            Ok(report) => {
                if dry_run {
                    print!("{}", plan_text(&report));
                } else {
                    println!("{}", summary_line(&report));
                }
                for f in report.failed.iter().take(SHOW_FAILED) {
                    eprintln!("  failed: {}: {}", f.path, f.reason);
                }
                if report.failed.len() > SHOW_FAILED {
                    eprintln!(
                        "  ... and {} more failed",
                        report.failed.len() - SHOW_FAILED
                    );
                }
                for s in report.skipped.iter().take(SHOW_FAILED) {
                    eprintln!("  skipped: {:?}: {}", s.path, s.reason);
                }
                if report.skipped.len() > SHOW_FAILED {
                    eprintln!(
                        "  ... and {} more skipped",
                        report.skipped.len() - SHOW_FAILED
                    );
                }
                self.partial |= !report.failed.is_empty();
            }
            Err(e) => {
                eprintln!("coltecd: {name}: {e}");
                let s = e.exit_status();
                // Remote trouble (5) outranks everything: it is what to fix first.
                self.worst = Some(match self.worst {
                    Some(ExitStatus::Remote) => ExitStatus::Remote,
                    Some(w) if s != ExitStatus::Remote => w,
                    _ => s,
                });
            }
        }
    }

    pub(super) fn status(&self) -> CmdResult {
        if let Some(items) = &self.json {
            let text = serde_json::to_string_pretty(items)
                .map_err(|e| Fail::new(ExitStatus::Failure, e))?;
            println!("{text}");
        }
        Ok(match (self.worst, self.partial) {
            (Some(s), _) => s,
            (None, true) => ExitStatus::PartialFailure,
            (None, false) => ExitStatus::Ok,
        })
    }
}

/// `name: ↑ 3 files (1.2 MiB), ↓ 0, deleted 1 remote / 0 local, 0 conflicts`.
pub(super) fn summary_line(r: &PassReport) -> String {
    let mut s = format!(
        "{}: uploaded {} ({}), downloaded {} ({}), deleted {} remote / {} local",
        r.target,
        r.uploaded,
        HumanBytes(r.bytes_up),
        r.downloaded,
        HumanBytes(r.bytes_down),
        r.deleted_remote,
        r.deleted_local
    );
    if !r.conflicts.is_empty() {
        s.push_str(&format!(", {} conflict copies", r.conflicts.len()));
    }
    if !r.failed.is_empty() {
        s.push_str(&format!(", {} FAILED", r.failed.len()));
    }
    if r.plan.is_empty() && r.failed.is_empty() {
        s = format!("{}: up to date", r.target);
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(" ({} skipped)", r.skipped.len()));
    }
    s
}

/// The `--dry-run` plan: counts, bytes and the first paths per action.
pub(super) fn plan_text(r: &PassReport) -> String {
    let p: &PlanSummary = &r.plan;
    if p.is_empty() {
        return format!("{}: nothing to do\n", r.target);
    }
    let mut s = format!("{}: would\n", r.target);
    let rows: [(&str, &ActionCount); 5] = [
        ("upload", &p.upload),
        ("download", &p.download),
        ("delete on the remote", &p.delete_remote),
        ("delete locally", &p.delete_local),
        ("keep both (conflict)", &p.conflict),
    ];
    for (what, c) in rows {
        if c.files == 0 {
            continue;
        }
        s.push_str(&format!(
            "  {what}: {} files, {}\n",
            c.files,
            HumanBytes(c.bytes)
        ));
        for path in &c.first {
            s.push_str(&format!("    {path}\n"));
        }
        if c.files as usize > c.first.len() {
            s.push_str(&format!(
                "    ... and {} more\n",
                c.files as usize - c.first.len()
            ));
        }
    }
    s
}

/// An indicatif bar on stderr when it is a terminal; silent otherwise.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    name: String,
    files: AtomicU64,
    total_files: AtomicU64,
}

impl Progress {
    pub(super) fn new(name: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("{name}: scanning"));
            bar
        });
        Progress {
            bar,
            name: name.to_string(),
            files: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn message(&self) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "{}: {}/{} files",
                self.name,
                self.files.load(Ordering::Relaxed),
                self.total_files.load(Ordering::Relaxed)
            ));
        }
    }
}

impl PassObserver for Progress {
    fn planned(&self, _target: &str, plan: &PlanSummary) {
        let files = plan.upload.files
            + plan.download.files
            + plan.conflict.files
            + plan.delete_remote.files
            + plan.delete_local.files;
        self.total_files.store(files, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(plan.upload.bytes + plan.download.bytes + plan.conflict.bytes);
        }
        self.message();
    }
    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.message();
    }
}

/// Where `restore --to DIR` puts a target.
pub(super) fn restore_dir(to: &std::path::Path, name: &str, several: bool) -> PathBuf {
    if several {
        to.join(name)
    } else {
        to.to_path_buf()
    }
}
