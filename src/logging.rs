//! Logging setup: `tracing` to stderr (commands) — text or JSON, level from
//! `--log-level`, else `RUST_LOG`, else `info`.

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// The filter from `--log-level` / `RUST_LOG`, defaulting to `default`.
pub fn filter(global: &GlobalArgs, default: &str) -> EnvFilter {
    match &global.log_level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new(default)),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    }
}

/// Log to stderr, for interactive commands. Safe to call more than once.
pub fn init_stderr(global: &GlobalArgs) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(global, "warn"))
        .with_writer(std::io::stderr);
    let _ = match global.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}
