//! The command line: one clap definition, parsed once in `main`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where the spec lives when neither `--config` nor `COLTEC_CONFIG` says.
pub use crate::spec::defaults::DEFAULT_SPEC_PATH;

/// coltecd keeps devcontainer state safe: it syncs a workspace's state
/// directories to S3/R2 (or a local directory) under a leased prefix.
#[derive(Debug, Parser)]
#[command(
    name = "coltecd",
    version = crate::version::LONG,
    about,
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Path of workspace-spec.yaml.
    #[arg(long, short = 'c', global = true, env = "COLTEC_CONFIG", default_value = DEFAULT_SPEC_PATH)]
    pub config: PathBuf,
    /// Log level or filter (e.g. `info`, `coltecd=debug`); `RUST_LOG` also works.
    #[arg(long, global = true, env = "COLTEC_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "COLTEC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub use crate::logging::LogFormat;

impl From<&GlobalArgs> for crate::logging::LogOptions {
    fn from(g: &GlobalArgs) -> Self {
        crate::logging::LogOptions {
            level: g.log_level.clone(),
            format: g.log_format,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec and print the sync targets it resolves to.
    Validate(ValidateArgs),
    /// Print the JSON Schema of workspace-spec.yaml (for editors).
    Schema,
    /// Start the sync daemon in the background (for `postStartCommand`);
    /// returns once the lease is held and the first sync is done.
    Start,
    /// Run the sync daemon in the foreground (logs also go to stderr).
    Run(RunArgs),
    /// Ask the running daemon to flush pending changes, release its lease
    /// and exit; waits for it.
    Stop(StopArgs),
    /// Is my state safe? Daemon, lease, per-target sync state. Exit 0
    /// healthy, 1 degraded, 3 not running.
    Status(StatusArgs),
    /// Run a command as the container's init (PID 1): reap zombies, forward
    /// signals, run the sync daemon alongside, flush before exiting with the
    /// command's exit code.
    Init(InitArgs),
    /// Run one sync pass over the spec's targets (by priority) and exit.
    Sync(SyncArgs),
    /// Pull targets' remote state into their directories (or --to DIR).
    Restore(RestoreArgs),
    /// Show or break the leases on this spec's remote prefixes.
    Lease(LeaseArgs),
    /// Every coltecd target under the spec's remotes: who holds it, how
    /// idle it is, how much it stores. Exit 0 listed, 5 remote unreachable.
    Fleet(FleetArgs),
    /// Print a shell completion script for SHELL to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout, or write one page per
    /// subcommand into --dir.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: Option<FleetCommand>,
    #[command(flatten)]
    pub list: FleetListArgs,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Remove what nobody owns any more: nested-lease markers and probe
    /// objects of holders that are gone, trash older than its retention of
    /// targets whose daemon is gone. Never user data or a live holder's objects.
    Gc(FleetGcArgs),
}

/// Which remotes the fleet commands look at.
#[derive(Debug, Clone, Args)]
pub struct FleetScope {
    /// Only this remote of the spec (default: every remote).
    #[arg(long, value_name = "NAME", global = true)]
    pub remote: Option<String>,
    /// Only targets under this key prefix of the remote.
    #[arg(long, value_name = "KEY", global = true, default_value = "")]
    pub prefix: String,
}

#[derive(Debug, Args)]
pub struct FleetListArgs {
    #[command(flatten)]
    pub scope: FleetScope,
    /// Print the documented JSON shape (`"schema": 1`).
    #[arg(long)]
    pub json: bool,
    /// Only targets idle (no local change) for at least this long, e.g. `30m`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle: Option<std::time::Duration>,
    /// Order of the rows.
    #[arg(long, value_enum, default_value_t = crate::fleet::SortKey::Path)]
    pub sort: crate::fleet::SortKey,
    /// Read every target's manifest for files and bytes (one GET each).
    #[arg(long)]
    pub sizes: bool,
    /// List every target's trash for objects and bytes (one listing each).
    #[arg(long)]
    pub trash: bool,
}

#[derive(Debug, Args)]
pub struct FleetGcArgs {
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write coltecd.1 and coltecd-SUBCOMMAND.1 pages into DIR instead of
    /// printing coltecd.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// File descriptor to report readiness on (used by `coltecd start`).
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// How long to wait for the daemon to exit, in seconds (default: the
    /// spec's flush deadline plus 10 s).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON (documented, stable shape).
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when the workspace had no local change for at least this long
    /// (e.g. `30m`), 1 otherwise (for idle hooks and auto-stop scripts).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_for: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Run one pass and exit (what this command always does; accepted for
    /// scripts written against the incumbent).
    #[arg(long)]
    pub once: bool,
    /// Print what would be transferred or deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only sync the target with this name (repeatable).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Compare against a fresh listing of the remote, catching changes made
    /// behind coltecd's back.
    #[arg(long)]
    pub verify: bool,
    /// Let a pass delete more files than the mass-delete guard allows.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Print one JSON report per target (an array) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Ask the running daemon for an immediate full pass of every target
    /// (instead of a competing one-shot run) and wait for its outcome.
    #[arg(long, conflicts_with_all = ["once", "dry_run", "only", "verify", "allow_mass_delete", "json"])]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Only restore the target with this name (repeatable).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Restore into DIR instead of each target's own path (with several
    /// targets: into DIR/TARGET_NAME).
    #[arg(long, value_name = "DIR")]
    pub to: Option<std::path::PathBuf>,
    /// Print what would be downloaded; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON report per target (an array) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub command: LeaseCommand,
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Who holds the lease of each prefix this spec writes, and how stale it looks from here.
    Show(LeaseShowArgs),
    /// Take over leases held by another container (that container's writes are then fenced),
    /// print whose they were, and release them so the next `coltecd start` acquires at once.
    Break(LeaseBreakArgs),
    /// Free this container's leases for the next container: stops a running
    /// daemon as `stop` does (final flush, then release); without one,
    /// releases the leases this container holds. Refuses (exit 4) if
    /// another container holds them: that one frees them, or `lease break --force`.
    Release(LeaseReleaseArgs),
    /// Acquire this spec's leases and keep renewing them until SIGTERM/SIGINT, then release
    /// (for tests and diagnostics; `coltecd start` does this as part of syncing).
    #[command(hide = true)]
    Hold(LeaseHoldArgs),
}

#[derive(Debug, Args)]
pub struct LeaseHoldArgs {
    /// Only these sync targets (by name; repeat or separate with commas).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LeaseShowArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only these sync targets (by name; repeat or separate with commas).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LeaseReleaseArgs {
    /// How long to wait for a running daemon to flush and exit, in seconds
    /// (default: as `stop`).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Print the result as JSON (without a running daemon).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LeaseBreakArgs {
    /// Required: breaking a live lease lets two containers write the same prefix.
    #[arg(long)]
    pub force: bool,
    /// Only these sync targets (by name; repeat or separate with commas).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
