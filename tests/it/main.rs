//! The integration tests: one binary, shared helpers in `support`.
//!
//! S3 tests talk over HTTP to a real `moto_server` process (see
//! `support::s3`); each test gets its own bucket so the suite runs in parallel.

mod support;

mod crash;
mod daemon;
mod daemon_sync;
mod fleet;
mod harness;
mod lease;
mod lease_cli;
mod lease_daemon;
mod spec;
mod sync;
mod sync_cli;
mod sync_now;
