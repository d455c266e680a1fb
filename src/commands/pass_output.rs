//! How `sync` and `restore` report each target's pass: one summary line
//! (or the plan, with `--dry-run`), failed files, JSON with `--json`, one
//! exit status for the run ([`TargetResults`]), and a progress bar on
//! stderr when it is a terminal ([`TerminalProgress`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::error::{CmdResult, ExitStatus, Fail, HasExitStatus};
use crate::escape::name as esc;
use crate::sync::{ActionCount, PassObserver, PassReport, PlanSummary, SyncError};

/// How many failed files are printed per target.
const SHOW_FAILED: usize = 10;

/// Collects per-target results into output and one exit status.
#[derive(Default)]
pub(super) struct TargetResults {
    worst: Option<ExitStatus>,
    partial: bool,
    /// A target the preflight found unusable (its error's status), and
    /// whether any other target ran: then the run is partial (6), else
    /// that error decides.
    unusable: Option<ExitStatus>,
    served: bool,
    /// `--json`: reports are collected and printed by [`TargetResults::status`].
    json: Option<Vec<serde_json::Value>>,
}

impl TargetResults {
    pub(super) fn new(json: bool) -> TargetResults {
        TargetResults {
            json: json.then(Vec::new),
            ..TargetResults::default()
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
        self.served |= r.is_ok();
        match r {
            Ok(report) if self.json.is_some() => self.partial |= !report.failed.is_empty(),
            Ok(report) => {
                if dry_run {
                    print!("{}", plan_text(&report));
                } else {
                    println!("{}", summary_line(&report));
                }
                for f in report.failed.iter().take(SHOW_FAILED) {
                    eprintln!("  failed: {}: {}", esc(&f.path), esc(&f.reason));
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
                print_undecryptable(&report);
                self.partial |= !report.failed.is_empty();
            }
            Err(e @ SyncError::Unavailable { .. }) => {
                eprintln!("coltecd: {name}: {e}");
                self.unusable = self.unusable.or(Some(e.exit_status()));
            }
            Err(e) => {
                eprintln!("coltecd: {}: {}", esc(name), esc(&e.to_string()));
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
        Ok(match (self.worst, self.partial, self.unusable) {
            (Some(s), _, _) => s,
            (None, _, Some(s)) if !self.served => s,
            (None, true, _) | (None, _, Some(_)) => ExitStatus::PartialFailure,
            (None, false, None) => ExitStatus::Ok,
        })
    }
}

/// Crypt objects whose names do not decrypt: a warning (exit status
/// unchanged, see `Undecryptable`), their raw names and what to do.
fn print_undecryptable(report: &PassReport) {
    let u = &report.undecryptable;
    if u.is_empty() {
        return;
    }
    eprintln!("  warning: {}", u.advice());
    for k in &u.first {
        eprintln!("  undecryptable: {}", esc(k));
    }
    if u.count > u.first.len() as u64 {
        eprintln!(
            "  ... and {} more undecryptable",
            u.count - u.first.len() as u64
        );
    }
}

/// `name: ↑ 3 files (1.2 MiB), ↓ 0, deleted 1 remote / 0 local, 0 conflicts`.
fn summary_line(r: &PassReport) -> String {
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
    if r.trashed > 0 {
        s.push_str(&format!(", {} old versions kept in the trash", r.trashed));
    }
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
    if !r.undecryptable.is_empty() {
        s.push_str(&format!(
            " ({} undecryptable names left alone)",
            r.undecryptable.count
        ));
    }
    s
}

/// The `--dry-run` plan: counts, bytes and the first paths per action.
fn plan_text(r: &PassReport) -> String {
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
            s.push_str(&format!("    {}\n", esc(path)));
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
pub(super) struct TerminalProgress {
    bar: Option<ProgressBar>,
    name: String,
    files: AtomicU64,
    total_files: AtomicU64,
}

impl TerminalProgress {
    pub(super) fn new(name: &str) -> TerminalProgress {
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
        TerminalProgress {
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

impl PassObserver for TerminalProgress {
    fn planned(&self, _target: &str, plan: &PlanSummary) {
        let totals = plan.totals();
        self.total_files.store(totals.files, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(totals.bytes);
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
