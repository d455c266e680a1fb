//! The tokio runtime that commands and the daemon run on. One builder, in a
//! module of its own, so the daemon's PID-1 mode (`daemon::init`) and the
//! subcommands share it without the daemon reaching up into `commands`.

use crate::error::{ExitStatus, Fail};

/// A multi-threaded runtime with I/O and timers (the daemon spawns passes
/// onto it; commands that talk to remotes block on it).
pub fn multi_thread() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::new(ExitStatus::Failure, e))
}
