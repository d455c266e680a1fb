//! The integration tests: one binary, shared helpers in `support`.
//!
//! S3 tests talk over HTTP to two real servers, `moto_server` and s3s-fs,
//! each test once per server (see `support::s3` and `s3_test!`); each test
//! gets its own bucket so the suite runs in parallel.

mod support;

mod crash;
mod crypt;
mod crypt_daemon;
mod daemon;
mod daemon_sync;
mod faults_matrix;
mod faults_sync;
mod fleet;
mod fleet_gc;
mod fleet_release;
mod formats;
mod hardening_fs;
mod hardening_local;
mod hardening_spec;
mod harness;
mod install;
mod lease;
mod lease_cli;
mod lease_daemon;
mod outage;
mod preflight;
mod server_errors;
mod spec;
mod stop_flush;
mod sync;
mod sync_cli;
mod sync_now;
