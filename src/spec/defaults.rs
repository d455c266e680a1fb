//! Every default and limit the spec loader applies, in one place.
//!
//! The loader (`resolve`) reads these; the rest of the crate and the tests
//! read them through `crate::spec` re-exports. A value changed here changes
//! the documented default (README, `spec/mod.rs` "Defaults worth knowing"),
//! so change both together.

use std::time::Duration;

// ---------------------------------------------------------------- file

/// Where the spec is looked for without `--config` / `COLTEC_CONFIG`.
pub const DEFAULT_SPEC_PATH: &str = "/workspace/.devcontainer/workspace-spec.yaml";

// ---------------------------------------------------------------- workspace

/// Default `metadata.environment` (the incumbent's), so data the incumbent
/// wrote under `{env}` = `dev` is found again.
pub const DEFAULT_ENVIRONMENT: &str = "dev";

// ---------------------------------------------------------------- targets

/// Default `interval` (the incumbent's): the safety-net rescan period.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Minimum `interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Default `priority` (the incumbent's); lower runs first.
pub const DEFAULT_PRIORITY: u32 = 2;
/// rclone's defaults.
pub const DEFAULT_TRANSFERS: usize = 4;
pub const DEFAULT_CHECKERS: usize = 8;

// ---------------------------------------------------------------- remotes

/// S3 region when neither the spec nor the environment names one.
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// S3 region for `provider: Cloudflare` (R2 ignores regions but wants `auto`).
pub const CLOUDFLARE_S3_REGION: &str = "auto";

// ---------------------------------------------------------------- lease

/// Default `lease.ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);
/// Default `lease.renew_every` (when `ttl` is not set either; with a `ttl`,
/// the default is `ttl / 4`).
pub const DEFAULT_LEASE_RENEW_EVERY: Duration = Duration::from_secs(15);
/// Minimum `lease.ttl`.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- safety

/// Default `safety.mass_delete_max_files`.
pub const DEFAULT_MASS_DELETE_MAX_FILES: u64 = 50;
/// Default `safety.mass_delete_max_percent`.
pub const DEFAULT_MASS_DELETE_MAX_PERCENT: f64 = 25.0;
/// Default `safety.trash_retention`.
pub const DEFAULT_TRASH_RETENTION: Duration = Duration::from_secs(7 * 86400);

// ---------------------------------------------------------------- daemon

/// Default `daemon.debounce`.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
/// Default `daemon.flush_deadline`: below docker's stop grace period.
pub const DEFAULT_FLUSH_DEADLINE: Duration = Duration::from_secs(8);
/// docker's default stop grace period; a `flush_deadline` at or above it warns.
pub const DOCKER_STOP_GRACE: Duration = Duration::from_secs(10);
/// Requests per second shared by all targets: generous enough not to slow an
/// initial push of many small files (S3 allows 3,500 PUT/s per prefix), low
/// enough that a few dozen workspaces sharing a bucket stay below throttling.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 1000;
