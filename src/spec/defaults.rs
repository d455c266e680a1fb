//! Every default and limit the spec loader applies, in one place.
//!
//! The loader (`resolve`) reads these; the rest of the crate and the tests
//! read them through `crate::spec` re-exports. A value changed here changes
//! the documented default (README, `spec/mod.rs` "Defaults worth knowing"),
//! so change both together.

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

// ---------------------------------------------------------------- the file

/// Where the spec is looked for without `--config` / `COLTEC_CONFIG`.
pub const DEFAULT_SPEC_PATH: &str = "/workspace/.devcontainer/workspace-spec.yaml";

/// The largest spec file coltecd reads (1 MiB): real specs are a few KiB,
/// and everything after reading is linear in the size.
pub const MAX_SPEC_BYTES: u64 = 1 << 20;
/// Deepest nesting of flow collections (`[...]`, `{...}`) in the YAML. The
/// YAML scanner's cost grows with depth x size, so depth is checked first.
pub const MAX_FLOW_DEPTH: usize = 64;
/// At most this many problems are listed; the count says how many more.
pub const MAX_DIAGNOSTICS: usize = 200;
/// Longest `{org}`, `{project}` and `{env}`, in characters.
pub const MAX_SLUG_CHARS: usize = 128;

// ---------------------------------------------------------------- workspace

/// Default `metadata.environment` (the incumbent's), so data the incumbent
/// wrote under `{env}` = `dev` is found again.
pub const DEFAULT_ENVIRONMENT: &str = "dev";

// ---------------------------------------------------------------- targets

/// Default `interval` (the incumbent's): the safety-net rescan period.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Minimum `interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Maximum `interval`: a rescan at least weekly.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * DAY);
/// Range of `priority`.
pub const MAX_PRIORITY: u32 = 1000;
/// Default `priority` (the incumbent's); lower runs first.
pub const DEFAULT_PRIORITY: u32 = 2;
/// rclone's defaults.
pub const DEFAULT_TRANSFERS: usize = 4;
pub const DEFAULT_CHECKERS: usize = 8;
/// Range of `transfers` and `checkers`: 1 ..= this.
pub const MAX_PARALLEL: usize = 256;

// ---------------------------------------------------------------- remotes

/// Deepest chain of crypt remotes wrapping crypt remotes.
pub const MAX_CRYPT_NESTING: usize = 8;
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
/// Maximum `lease.ttl`: a crashed container's prefixes are free within a day.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(DAY);
/// Minimum `lease.renew_every` (the maximum is under `ttl / 2`).
pub const MIN_LEASE_RENEW_EVERY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- safety

/// Default `safety.mass_delete_max_files`.
pub const DEFAULT_MASS_DELETE_MAX_FILES: u64 = 50;
/// Default `safety.mass_delete_max_percent`.
pub const DEFAULT_MASS_DELETE_MAX_PERCENT: f64 = 25.0;
/// Default `safety.trash_retention`.
pub const DEFAULT_TRASH_RETENTION: Duration = Duration::from_secs(7 * DAY);
/// Maximum `safety.trash_retention` (0 disables the trash).
pub const MAX_TRASH_RETENTION: Duration = Duration::from_secs(365 * DAY);
/// Maximum `safety.mass_delete_max_files`.
pub const MAX_MASS_DELETE_MAX_FILES: u64 = 1_000_000_000;

// ---------------------------------------------------------------- daemon

/// Default `daemon.debounce`.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
/// Maximum `daemon.debounce` (the minimum is 0: sync at once).
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(10 * MINUTE);
/// Default `daemon.flush_deadline`: below docker's stop grace period.
pub const DEFAULT_FLUSH_DEADLINE: Duration = Duration::from_secs(8);
/// Range of `daemon.flush_deadline`.
pub const MIN_FLUSH_DEADLINE: Duration = Duration::from_secs(1);
pub const MAX_FLUSH_DEADLINE: Duration = Duration::from_secs(10 * MINUTE);
/// docker's default stop grace period; a `flush_deadline` at or above it warns.
pub const DOCKER_STOP_GRACE: Duration = Duration::from_secs(10);
/// Requests per second shared by all targets: generous enough not to slow an
/// initial push of many small files (S3 allows 3,500 PUT/s per prefix), low
/// enough that a few dozen workspaces sharing a bucket stay below throttling.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 1000;
/// Range of `daemon.max_requests_per_second`: 1 ..= this.
pub const MAX_REQUESTS_PER_SECOND: u32 = 1_000_000;

// ---------------------------------------------------------------- bwlimit

/// Largest `bwlimit` rate, in bytes/s (1 TiB/s: no link is faster, and
/// token-bucket arithmetic on it cannot overflow).
pub const MAX_BWLIMIT_BYTES_PER_SEC: u64 = 1 << 40;
