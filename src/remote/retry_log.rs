//! The warning logged before each retry of a remote operation.
//!
//! opendal's default notifier logs the error's `Debug` form: a dozen lines
//! of context and, with `RUST_BACKTRACE=1`, a 190-line backtrace per retry.
//! This one logs one line, the error's `Display` form (kind, operation,
//! context, source — never the backtrace), with any `user:password@` in a
//! URL masked as a last line of defence (the spec loader already keeps
//! userinfo out of endpoints).

use opendal::layers::RetryEvent;

pub(super) fn log_retry(event: RetryEvent<'_>) {
    tracing::warn!(
        target: "coltecd::remote::retry",
        "will retry {} (attempt {}) in {:.1}s: {}",
        event.op,
        event.attempt,
        event.retry_after.as_secs_f64(),
        crate::spec::mask_userinfo(&event.err.to_string())
    );
}
