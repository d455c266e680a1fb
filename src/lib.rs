//! coltecd: keeps devcontainer state safe.
//!
//! It reads `.devcontainer/workspace-spec.yaml` and syncs a workspace's state
//! directories to S3/R2 or a local directory under a unique
//! `{org}/{project}/{env}` prefix.
//!
//! # Layout
//!
//! - [`spec`]: loading and validating `workspace-spec.yaml` into a [`spec::Spec`].
//! - [`cli`] / [`commands`]: the command line, one module per subcommand.
//! - [`remote`]: opendal operators for s3, local and crypt remotes.
//! - [`crypt`]: rclone's crypt format (keys, names, contents).
//! - [`error`]: the exit-code table every error maps into.
//! - [`fsutil`]: durable local file writes (temp file + fsync + rename).
//! - [`state_dir`]: the per-workspace local state directory and its lock.
//! - [`daemon`]: the sync daemon (`start`/`run`/`init`), its control socket,
//!   status model, pidfile and systemd notify support.
//! - [`logging`]: tracing setup, the daemon's size-rotated log file.
//! - [`runtime`]: the tokio runtime builder commands and the daemon share.
//! - [`sync`]: the sync engine (scan, 3-way plan, transfers, manifest, trash).
//! - [`lease`]: one writer per remote prefix (conditional writes, fencing).
//! - [`version`]: which build this is, and the rule for versioned formats.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod crypt;
pub mod daemon;
pub mod error;
pub mod escape;
pub mod fleet;
pub mod fsutil;
pub mod lease;
pub mod logging;
pub mod preflight;
pub mod remote;
pub mod runtime;
pub mod spec;
pub mod state_dir;
pub mod sync;
pub mod version;
