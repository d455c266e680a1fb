//! The tokio runtime that commands and the daemon run on. One builder, in a
//! module of its own, so the daemon's PID-1 mode (`daemon::init`) and the
//! subcommands share it without the daemon reaching up into `commands`.

use crate::error::{ExitStatus, Fail};

/// A multi-threaded runtime with I/O and timers (the daemon spawns passes
/// onto it; commands that talk to remotes block on it).
pub fn multi_thread() -> Result<tokio::runtime::Runtime, Fail> {
    // Few malloc arenas for one-shot commands too (the daemon's reason,
    // `daemon::memory`): a push's peak RSS is a target of its own.
    crate::daemon::memory::limit_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::new(ExitStatus::Failure, e))
}
