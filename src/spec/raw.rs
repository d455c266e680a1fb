//! The spec as written: serde structs mirroring the incumbent's YAML, plus
//! the JSON Schema generated from them.
//!
//! These types are deliberately permissive where the YAML is (a scalar may
//! be an integer or a string, unknown keys do not stop deserialization) so
//! that [`super::resolve`] can report *every* problem with a field path and
//! a fix. Unknown keys are found separately by walking the document against
//! the generated schema (see [`super::keys`]), so the schema and the loader
//! can never disagree about which keys exist. Nothing outside `spec` sees
//! these types.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};

/// The whole file. Top-level sections coltecd does not act on are accepted
/// (as anything) and ignored; unknown top-level keys are reported by
/// [`super::keys`], not here.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(title = "coltecd workspace-spec.yaml")]
#[schemars(rename = "Spec")]
pub(crate) struct RawSpec {
    /// Workspace name (informational; shown by `coltecd validate`).
    pub name: Option<String>,
    /// Spec format version (ignored by coltecd).
    #[schemars(with = "serde_json::Value")]
    pub version: Option<IgnoredAny>,
    /// Who this workspace belongs to; gives `{org}`, `{project}`, `{env}`.
    pub metadata: Option<RawMetadata>,
    /// Devcontainer settings (used by the devcontainer tooling, ignored by coltecd).
    #[schemars(with = "serde_json::Value")]
    pub devcontainer: Option<IgnoredAny>,
    /// Container mounts (ignored by coltecd).
    #[schemars(with = "serde_json::Value")]
    pub mounts: Option<IgnoredAny>,
    /// Secret mounts (ignored by coltecd).
    #[schemars(with = "serde_json::Value")]
    pub secrets: Option<IgnoredAny>,
    /// Networking overlay settings (ignored by coltecd).
    #[schemars(with = "serde_json::Value")]
    pub networking: Option<IgnoredAny>,
    /// What to sync, where to, and how.
    pub persistence: Option<RawPersistence>,
    /// Generation timestamp written by the scaffolding tool (ignored).
    #[schemars(with = "serde_json::Value")]
    pub generated_at: Option<IgnoredAny>,
}

/// Top-level sections that are known but deliberately not acted on.
pub(crate) const IGNORED_SECTIONS: &[&str] = &[
    "version",
    "devcontainer",
    "mounts",
    "secrets",
    "networking",
    "generated_at",
];

// `description`/`tags` exist for the schema and are not acted on.
#[allow(dead_code)]
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Metadata")]
pub(crate) struct RawMetadata {
    /// Organisation slug: `{org}` in `remote_path`.
    pub org: Text,
    /// Project slug: `{project}` in `remote_path`.
    pub project: Text,
    /// Environment slug: `{env}` in `remote_path`. Default `dev`, as the
    /// incumbent did; set it explicitly so two workspaces never share a prefix.
    #[serde(default)]
    pub environment: Option<Text>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Persistence")]
pub(crate) struct RawPersistence {
    /// Whether anything is synced at all (default false, as the incumbent).
    pub enabled: Option<bool>,
    /// `replicated` (sync to a remote) or `mounted` (default).
    pub mode: Option<RawMode>,
    /// `project` or `environment` (informational).
    pub scope: Option<RawScope>,
    /// Incumbent symlink mounts (accepted, not acted on).
    pub mounts: Vec<RawPersistenceMount>,
    /// Named remotes, referenced by `default_remote` and `sync[].remote`.
    pub remotes: BTreeMap<String, RawRemote>,
    /// Remote used by targets that do not name one.
    pub default_remote: Option<Text>,
    /// Defaults for `transfers`, `checkers`, `bwlimit`.
    pub defaults: Option<RawDefaults>,
    /// Sync targets.
    pub sync: Vec<RawSync>,
    /// Incumbent volume list; `environment[]` entries are sync targets too.
    pub multi_scope_volumes: Option<RawVolumes>,
    /// Lease on the remote prefixes: `off`, or `{ttl, renew_every}`.
    pub lease: Option<RawLease>,
    /// Delete guard and trash retention.
    pub safety: Option<RawSafety>,
    /// Daemon settings: state/log dirs, debounce, flush deadline, watch mode, request rate.
    pub daemon: Option<RawDaemon>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Mode")]
pub(crate) enum RawMode {
    Mounted,
    Replicated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Scope")]
pub(crate) enum RawScope {
    Project,
    Environment,
}

// Accepted for the schema (incumbent symlink mounts); not acted on.
#[allow(dead_code)]
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "PersistenceMount")]
pub(crate) struct RawPersistenceMount {
    pub name: String,
    pub target: String,
    pub source: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "RemoteType")]
pub(crate) enum RawRemoteType {
    S3,
    Local,
    Crypt,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Remote")]
pub(crate) struct RawRemote {
    /// `s3` (default), `local` (a directory) or `crypt` (wraps another remote).
    #[serde(rename = "type")]
    pub kind: Option<RawRemoteType>,
    /// S3 bucket (else `RCLONE_BUCKET`).
    pub bucket: Option<Text>,
    /// Key prefix (s3) or root directory (local) for every target on this remote.
    pub path_prefix: Option<Text>,
    /// rclone-style backend options: provider, endpoint, region,
    /// access_key_id, secret_access_key, session_token, force_path_style.
    pub options: RawOptions,
    /// crypt: the remote this one wraps.
    pub wrap_remote: Option<String>,
    /// crypt: the path inside the wrapped remote.
    pub wrap_path: Option<String>,
    /// crypt: encryption settings.
    pub crypt: Option<RawCrypt>,
}

/// Remote `options`: a map of rclone option names to scalar values. The
/// keys coltecd understands are listed in [`KNOWN_OPTIONS`]; others are
/// accepted (rclone passthrough in the incumbent) and reported as unused.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(crate) struct RawOptions(pub BTreeMap<String, NumOrStr>);

pub(crate) const KNOWN_OPTIONS: &[&str] = &[
    "provider",
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "force_path_style",
];

impl JsonSchema for RawOptions {
    fn schema_name() -> Cow<'static, str> {
        "RemoteOptions".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let s = json_schema!({"type": ["string", "number", "boolean"]});
        json_schema!({
            "type": "object",
            "description": "rclone-style backend options; `${VAR}` is expanded.",
            "properties": {
                "provider": {"type": "string", "description": "Cloudflare, AWS, Minio, ..."},
                "endpoint": {"type": "string", "description": "S3 endpoint URL (else RCLONE_S3_ENDPOINT / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)"},
                "region": {"type": "string", "description": "Region; `auto` for R2 (default us-east-1)"},
                "access_key_id": {"type": "string", "description": "else RCLONE_S3_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID"},
                "secret_access_key": {"type": "string", "description": "else RCLONE_S3_SECRET_ACCESS_KEY / AWS_SECRET_ACCESS_KEY"},
                "session_token": {"type": "string", "description": "else AWS_SESSION_TOKEN"},
                "force_path_style": {"type": ["boolean", "string"], "description": "default: true with a custom endpoint, false for AWS"},
            },
            "additionalProperties": s,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "FilenameEncryption")]
pub(crate) enum RawFilenameEncryption {
    Standard,
    Obfuscate,
    Off,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Crypt")]
pub(crate) struct RawCrypt {
    /// Name of the environment variable holding the password.
    pub password_env: String,
    /// Name of the environment variable holding the salt (password2).
    #[serde(default)]
    pub password2_env: Option<String>,
    /// `standard` (default), `obfuscate` or `off`.
    #[serde(default)]
    pub filename_encryption: Option<RawFilenameEncryption>,
    /// Default true.
    #[serde(default)]
    pub directory_name_encryption: Option<bool>,
    /// rclone's encoding of encrypted names: only `base32` (rclone's
    /// default) is supported.
    #[serde(default)]
    pub filename_encoding: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub(crate) struct RawDefaults {
    /// Parallel file transfers (default 4, like rclone).
    pub transfers: Option<u64>,
    /// Parallel checkers (default 8, like rclone).
    pub checkers: Option<u64>,
    /// rclone bwlimit: `10M`, `512k`, `off`, `UP:DOWN`; plain number = KiB/s.
    pub bwlimit: Option<NumOrStr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "Direction")]
pub(crate) enum RawDirection {
    Bidirectional,
    PushOnly,
    PullOnly,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Sync")]
pub(crate) struct RawSync {
    /// Unique target name.
    pub name: Text,
    /// Local directory (`~` and paths relative to the spec file allowed).
    pub path: Text,
    /// Remote path; `{org}`, `{project}`, `{env}` are substituted.
    /// Default `{org}/{project}/{env}/<name>`.
    #[serde(default)]
    pub remote_path: Option<Text>,
    /// Remote name (default: `persistence.default_remote`).
    #[serde(default)]
    pub remote: Option<Text>,
    /// `bidirectional` (default), `push-only` or `pull-only`.
    #[serde(default)]
    pub direction: Option<RawDirection>,
    /// Safety-net rescan interval: seconds or a duration (`90s`, `5m`); minimum 10s, default 300.
    #[serde(default)]
    pub interval: Option<NumOrStr>,
    /// Lower runs first (default 2).
    #[serde(default)]
    pub priority: Option<u32>,
    /// rclone-style exclude globs.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub transfers: Option<u64>,
    #[serde(default)]
    pub checkers: Option<u64>,
    #[serde(default)]
    pub bwlimit: Option<NumOrStr>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Volumes")]
pub(crate) struct RawVolumes {
    /// Incumbent shared volumes (not synced by coltecd).
    pub global_refs: Vec<String>,
    /// Incumbent shared volumes (not synced by coltecd).
    pub project_refs: Vec<String>,
    /// Per-environment volumes: synced exactly like `persistence.sync[]`.
    pub environment: Vec<RawVolume>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Volume")]
pub(crate) struct RawVolume {
    pub name: Text,
    pub remote_path: Text,
    /// Local directory (the target's `path`).
    pub mount_path: Text,
    /// Direction (`bidirectional` default).
    #[serde(default)]
    pub sync: Option<RawDirection>,
    #[serde(default)]
    pub interval: Option<NumOrStr>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// true: the local copy is never pushed (requires `sync: pull-only` or no `sync`).
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "LeaseSettings")]
pub(crate) struct RawLeaseSettings {
    /// Default true.
    pub enabled: Option<bool>,
    /// How long a lease lives without renewal (default 60s).
    pub ttl: Option<NumOrStr>,
    /// How often it is renewed (default 15s; must be under ttl/2).
    pub renew_every: Option<NumOrStr>,
}

/// `lease: off | on | true | false | {enabled, ttl, renew_every}`.
#[derive(Debug)]
pub(crate) enum RawLease {
    Switch(bool),
    Settings(RawLeaseSettings),
}

impl<'de> Deserialize<'de> for RawLease {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLease;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`off`, `on`, or a mapping with ttl/renew_every")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawLease, E> {
                Ok(RawLease::Switch(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLease, E> {
                match v {
                    "off" => Ok(RawLease::Switch(false)),
                    "on" => Ok(RawLease::Switch(true)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawLease, A::Error> {
                RawLeaseSettings::deserialize(MapAccessDeserializer::new(map))
                    .map(RawLease::Settings)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for RawLease {
    fn schema_name() -> Cow<'static, str> {
        "Lease".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let settings = generator.subschema_for::<RawLeaseSettings>();
        json_schema!({
            "description": "Lease on the remote prefixes: `off` disables it (only for backends without conditional writes).",
            "anyOf": [
                {"type": "boolean"},
                {"type": "string", "enum": ["off", "on"]},
                settings,
            ]
        })
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Safety")]
pub(crate) struct RawSafety {
    /// A pass may delete at most this many remote files ... (default 50)
    pub mass_delete_max_files: Option<u64>,
    /// ... or this percentage of them (default 25); beyond both it stops.
    pub mass_delete_max_percent: Option<f64>,
    /// How long deleted/overwritten remote files are kept (default 7d; 0 disables).
    pub trash_retention: Option<NumOrStr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "Watch")]
pub(crate) enum RawWatch {
    Auto,
    Poll,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
#[schemars(rename = "Daemon")]
pub(crate) struct RawDaemon {
    /// Local state dir (default `COLTEC_STATE_DIR`, else ~/.local/share/coltecd/<org>-<project>-<env>).
    pub state_dir: Option<Text>,
    /// Log dir (default `logs/` next to the spec file).
    pub log_dir: Option<Text>,
    /// File-event debounce (default 2s).
    pub debounce: Option<NumOrStr>,
    /// Graceful-stop flush deadline (default 8s).
    pub flush_deadline: Option<NumOrStr>,
    /// `auto` (file events, polling fallback) or `poll`.
    pub watch: Option<RawWatch>,
    /// Requests per second to the remote, shared by all targets (default 100).
    pub max_requests_per_second: Option<u32>,
}

/// A string field written as a YAML string. serde_yaml hands a plain
/// scalar to a `String` as its text, so `org: ~` would become the name `~`
/// (and then `$HOME` after tilde expansion), `false` the name `false` and
/// `0x1F` the name `0x1F`. A `Text` refuses null, booleans and numbers, so
/// the error names the field; quoting (`"0x1F"`) says the text is meant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string in quotes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Err(E::invalid_type(
                    de::Unexpected::Other("null (`~`, `null` or nothing)"),
                    &self,
                ))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Text {
    fn schema_name() -> Cow<'static, str> {
        "String".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string"})
    }
}

/// A scalar that may be written as a number or a string (`interval: 60`,
/// `interval: 5m`, `bwlimit: 512`, `bwlimit: 10M`). Parsed later so that
/// the error names the field and says what would be valid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NumOrStr {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
}

impl fmt::Display for NumOrStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumOrStr::Int(i) => write!(f, "{i}"),
            NumOrStr::Float(x) => write!(f, "{x}"),
            NumOrStr::Str(s) => f.write_str(s),
            NumOrStr::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl<'de> Deserialize<'de> for NumOrStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumOrStr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Int(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumOrStr, E> {
                Ok(NumOrStr::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for NumOrStr {
    fn schema_name() -> Cow<'static, str> {
        "NumberOrString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["number", "string"]})
    }
}

/// The JSON Schema (draft-07, which the VS Code YAML extension understands
/// best) of `workspace-spec.yaml`.
pub(crate) fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<RawSpec>();
    schema.to_value()
}
