//! The validated workspace spec: what the rest of coltecd works with.
//!
//! Everything here has been checked once by [`crate::spec::load`]: paths are
//! absolute, placeholders are substituted, `${VAR}`s are expanded, durations
//! and rates are parsed, excludes are compiled. No raw strings from the YAML
//! survive past this point except names and paths.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use super::filter::Excludes;

/// A fully validated `workspace-spec.yaml`.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The file this spec was loaded from (absolute).
    pub path: PathBuf,
    /// Top-level `name:` (informational).
    pub name: String,
    /// `metadata.org/project/environment`.
    pub workspace: Workspace,
    /// `persistence.enabled`. A disabled spec validates but syncs nothing.
    pub enabled: bool,
    /// Named remotes after `${VAR}` expansion, keyed by name.
    pub remotes: BTreeMap<String, RemoteSpec>,
    /// Sync targets from `persistence.sync[]` and
    /// `multi_scope_volumes.environment[]`, ordered by (priority, name).
    pub targets: Vec<Target>,
    pub lease: LeaseSettings,
    pub safety: SafetySettings,
    pub daemon: DaemonSettings,
    /// Non-fatal findings (e.g. a `remote_path` outside `{org}/{project}/{env}`).
    pub warnings: Vec<String>,
}

/// The `{org}/{project}/{env}` identity of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub org: String,
    pub project: String,
    pub env: String,
}

impl Workspace {
    /// `org/project/env`, the identity shown to users.
    pub fn slug(&self) -> String {
        format!("{}/{}/{}", self.org, self.project, self.env)
    }

    /// `org-project-env`, safe as a single directory name.
    pub fn dir_name(&self) -> String {
        format!("{}-{}-{}", self.org, self.project, self.env)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// One state directory synced to one remote location.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// Absolute local directory (relative paths in the spec resolve against
    /// the spec file's directory, `~` against `$HOME`).
    pub local_path: PathBuf,
    /// Name of the remote (`remote:` or `persistence.default_remote`).
    pub remote_name: String,
    /// The remote this target writes to (a copy of `Spec::remotes[remote_name]`).
    pub remote: RemoteSpec,
    /// `remote_path` after `{org}/{project}/{env}` substitution, with leading
    /// and trailing `/` removed (for `local` remotes an absolute `remote_path`
    /// keeps its leading `/`, see [`Target::location`]).
    pub remote_path: String,
    pub direction: Direction,
    pub interval: Duration,
    pub priority: u32,
    pub excludes: Excludes,
    pub transfers: usize,
    pub checkers: usize,
    pub bwlimit: BwLimit,
}

impl Target {
    /// Where this target's files live.
    pub fn location(&self) -> Location {
        match &self.remote.kind {
            RemoteKind::S3(s3) => Location::S3 {
                bucket: s3.bucket.clone(),
                key_prefix: join_key(&s3.path_prefix, &self.remote_path),
            },
            RemoteKind::Local(local) => {
                let rp = PathBuf::from(&self.remote_path);
                let dir = if rp.is_absolute() {
                    rp
                } else {
                    local.root.join(rp)
                };
                Location::Local { dir }
            }
            RemoteKind::Crypt(c) => Location::Crypt {
                wrap_remote: c.wrap_remote.clone(),
                key_prefix: join_key(&c.wrap_path, &self.remote_path),
            },
        }
    }
}

fn join_key(prefix: &str, path: &str) -> String {
    let parts: Vec<&str> = [prefix, path]
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|s| !s.is_empty())
        .collect();
    parts.join("/")
}

/// A resolved remote location of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `key_prefix` has no leading or trailing `/`; it may be empty.
    S3 {
        bucket: String,
        key_prefix: String,
    },
    Local {
        dir: PathBuf,
    },
    Crypt {
        wrap_remote: String,
        key_prefix: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::S3 { bucket, key_prefix } => write!(f, "s3://{bucket}/{key_prefix}"),
            Location::Local { dir } => write!(f, "local:{}", dir.display()),
            Location::Crypt {
                wrap_remote,
                key_prefix,
            } => write!(f, "crypt:{wrap_remote}/{key_prefix}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Bidirectional,
    PushOnly,
    PullOnly,
}

impl Direction {
    /// Whether this direction writes to the remote (and so needs the lease).
    pub fn writes_remote(self) -> bool {
        !matches!(self, Direction::PullOnly)
    }
    /// Whether this direction writes to the local directory.
    pub fn writes_local(self) -> bool {
        !matches!(self, Direction::PushOnly)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Bidirectional => "bidirectional",
            Direction::PushOnly => "push-only",
            Direction::PullOnly => "pull-only",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct RemoteSpec {
    pub name: String,
    pub kind: RemoteKind,
}

#[derive(Debug, Clone)]
pub enum RemoteKind {
    S3(S3Remote),
    Local(LocalRemote),
    Crypt(CryptRemote),
}

impl RemoteKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RemoteKind::S3(_) => "s3",
            RemoteKind::Local(_) => "local",
            RemoteKind::Crypt(_) => "crypt",
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Remote {
    pub bucket: String,
    /// `path_prefix`, without leading/trailing `/` (may be empty).
    pub path_prefix: String,
    /// `options.endpoint` (else `RCLONE_S3_ENDPOINT` / `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `options.region`; `auto` for R2; default `us-east-1`.
    pub region: String,
    /// `options.provider` (`Cloudflare`, `AWS`, `Minio`, ...).
    pub provider: Option<String>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Where the credentials come from, for messages: spec fields and
    /// variable names only, never a value (e.g. `RCLONE_S3_ACCESS_KEY_ID
    /// and RCLONE_S3_SECRET_ACCESS_KEY`).
    pub credentials_from: String,
    /// Path-style addressing (`options.force_path_style`; default true for
    /// any custom endpoint, false for AWS).
    pub path_style: bool,
}

#[derive(Debug, Clone)]
pub struct LocalRemote {
    /// `path_prefix` resolved to an absolute directory (spec dir if unset).
    pub root: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CryptRemote {
    pub wrap_remote: String,
    /// The remote `wrap_remote` names, once resolved (`None` if it has errors).
    pub wrapped: Option<Box<RemoteSpec>>,
    pub wrap_path: String,
    /// The variables holding the password and salt (named in messages).
    pub password_env: String,
    pub password2_env: Option<String>,
    pub password: Option<Secret>,
    pub salt: Option<Secret>,
    pub filename_encryption: String,
    pub directory_name_encryption: bool,
}

/// A credential or other value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The raw value, for handing to the S3 client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// rclone-style `bwlimit`, in bytes per second per direction; `None` = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BwLimit {
    pub up: Option<NonZeroU64>,
    pub down: Option<NonZeroU64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaseSettings {
    /// `false` only when the spec says `lease: off`.
    pub enabled: bool,
    /// Default 60 s.
    pub ttl: Duration,
    /// Default 15 s.
    pub renew_every: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SafetySettings {
    /// A pass may not delete more than this many files ... (default 50)
    pub mass_delete_max_files: u64,
    /// ... AND more than this share of the target's remote files (default 0.25).
    pub mass_delete_max_fraction: f64,
    /// How long deleted/overwritten remote files are kept under `.coltec/trash`
    /// (default 7 days; zero disables the trash).
    pub trash_retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify events, falling back to polling when the watch budget runs out.
    Auto,
    /// No events: interval scans only.
    Poll,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// Override of the state dir (else `COLTEC_STATE_DIR`, else
    /// `~/.local/share/coltecd/<org>-<project>-<env>`).
    pub state_dir: Option<PathBuf>,
    /// Log directory (default: `logs/` next to the spec file).
    pub log_dir: PathBuf,
    /// Debounce for file events (default 2 s).
    pub debounce: Duration,
    /// Graceful-stop flush deadline (default 8 s).
    pub flush_deadline: Duration,
    pub watch: WatchMode,
    /// Request-rate limit shared by all targets (default 1000/s).
    pub max_requests_per_second: u32,
}
