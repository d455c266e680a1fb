//! Raw spec -> validated [`Spec`]: defaults, `${VAR}` expansion,
//! placeholders, paths, units, remotes, targets and the cross-target
//! checks. Every problem is collected; nothing stops at the first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::Diagnostic;
use super::expand::{
    EnvLookup, ExpandError, Invalid, expand_vars, normalize, parse_bwlimit, parse_duration,
    resolve_local_path,
};
use super::filter::Excludes;
use super::keys::suggest;
use super::model::*;
use super::raw::*;

/// Default `interval` (the incumbent's): the safety-net rescan period.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Minimum `interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Default `priority` (the incumbent's); lower runs first.
pub const DEFAULT_PRIORITY: u32 = 2;
/// Default `metadata.environment` (the incumbent's), so data the incumbent
/// wrote under `{env}` = `dev` is found again.
pub const DEFAULT_ENVIRONMENT: &str = "dev";
/// rclone's defaults.
pub const DEFAULT_TRANSFERS: usize = 4;
pub const DEFAULT_CHECKERS: usize = 8;
/// Requests per second shared by all targets: generous enough not to slow an
/// initial push of many small files (S3 allows 3,500 PUT/s per prefix), low
/// enough that a few dozen workspaces sharing a bucket stay below throttling.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 1000;

pub(crate) struct Resolver<'a> {
    env: EnvLookup<'a>,
    spec_path: PathBuf,
    spec_dir: PathBuf,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// Every target's local directory, for the nesting check (collected even
    /// for targets whose remote side has errors).
    locals: Vec<LocalEntry>,
}

struct LocalEntry {
    origin: String,
    field: String,
    name: String,
    path: PathBuf,
}

/// A target while it is being resolved, with where it came from.
struct Draft {
    origin: String,
    target: Target,
}

impl<'a> Resolver<'a> {
    pub fn new(spec_path: PathBuf, env: EnvLookup<'a>) -> Self {
        let spec_dir = spec_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        Resolver {
            env,
            spec_path,
            spec_dir,
            errors: Vec::new(),
            warnings: Vec::new(),
            locals: Vec::new(),
        }
    }

    fn err(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.errors.push(Diagnostic::new(field, message).hint(hint));
    }

    fn warn(
        &mut self,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.warnings
            .push(Diagnostic::new(field, message).hint(hint));
    }

    fn invalid(&mut self, field: impl Into<String>, inv: Invalid) {
        self.err(field, inv.message, inv.hint);
    }

    /// Expand `${VAR}`s in `raw`, reporting a missing variable against `field`.
    /// The expanded value is never put into a message.
    fn expand(&mut self, field: &str, raw: &str) -> Option<String> {
        match expand_vars(raw, self.env) {
            Ok(v) => Some(v),
            Err(ExpandError::Missing(var)) => {
                self.err(
                    field,
                    format!("uses ${{{var}}}, which is not set"),
                    format!(
                        "set {var} in the container's environment (a Codespaces secret, `devcontainer up --remote-env`, or fnox), or write `${{{var}:-default}}` for a default"
                    ),
                );
                None
            }
            Err(ExpandError::Syntax(msg)) => {
                self.err(
                    field,
                    msg,
                    "write `${NAME}` or `$NAME`; a literal `$` is written `$$`",
                );
                None
            }
        }
    }

    fn env_first(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| (self.env)(n).filter(|v| !v.is_empty()))
    }

    fn local_path(&mut self, field: &str, raw: &str) -> Option<PathBuf> {
        let expanded = self.expand(field, raw)?;
        match resolve_local_path(&expanded, &self.spec_dir, self.env) {
            Ok(p) => Some(p),
            Err(mut inv) => {
                // Quote what the user wrote, not what a variable expanded to.
                if expanded != raw {
                    inv.message = inv.message.replace(&expanded, raw);
                }
                self.invalid(field, inv);
                None
            }
        }
    }

    fn duration(&mut self, field: &str, v: Option<&NumOrStr>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(v) => match parse_duration(v) {
                Ok(d) => d,
                Err(inv) => {
                    self.invalid(field, inv);
                    default
                }
            },
        }
    }

    fn count(&mut self, field: &str, v: Option<u64>, default: usize) -> usize {
        match v {
            None => default,
            Some(0) => {
                self.err(
                    field,
                    "must be at least 1",
                    format!("set it to 1 or more (default {default}) or remove it"),
                );
                default
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    pub fn resolve(&mut self, raw: RawSpec) -> Option<Spec> {
        let workspace = self.workspace(raw.metadata.as_ref());
        let mut p = match raw.persistence {
            Some(p) => p,
            None => {
                self.warn(
                    "persistence",
                    "there is no `persistence` section, so nothing is synced",
                    "add `persistence:` with `enabled: true`, `remotes:` and `sync:` (see config/local.yaml)",
                );
                RawPersistence::default()
            }
        };
        let enabled = p.enabled.unwrap_or(false);
        let has_targets = !p.sync.is_empty()
            || p.multi_scope_volumes
                .as_ref()
                .is_some_and(|v| !v.environment.is_empty());
        if enabled && p.mode == Some(RawMode::Replicated) && !has_targets {
            self.err(
                "persistence.sync",
                "mode is `replicated` but no sync targets are defined",
                "add an entry under `persistence.sync` (name, path, remote_path) or `persistence.multi_scope_volumes.environment`, or set `enabled: false`",
            );
        }
        if !enabled && has_targets {
            self.warn(
                "persistence.enabled",
                "persistence is not enabled: the targets are checked but nothing is synced",
                "set `persistence.enabled: true`",
            );
        }
        if !p.mounts.is_empty() {
            self.warn(
                "persistence.mounts",
                "persistence mounts are not acted on by coltecd",
                "sync the directory with a `persistence.sync` entry instead",
            );
        }

        let remotes = self.remotes(&p.remotes);
        if let Some(d) = &p.default_remote
            && !p.remotes.contains_key(d)
        {
            let names: Vec<&str> = p.remotes.keys().map(String::as_str).collect();
            self.err(
                "persistence.default_remote",
                format!("remote `{d}` is not defined in persistence.remotes"),
                unknown_remote_hint(d, &names),
            );
        }

        let defaults = p.defaults.take().unwrap_or_default();
        let def_transfers = self.count(
            "persistence.defaults.transfers",
            defaults.transfers,
            DEFAULT_TRANSFERS,
        );
        let def_checkers = self.count(
            "persistence.defaults.checkers",
            defaults.checkers,
            DEFAULT_CHECKERS,
        );
        let def_bw = self.bwlimit(
            "persistence.defaults.bwlimit",
            defaults.bwlimit.as_ref(),
            BwLimit::default(),
        );

        let ctx = TargetCtx {
            workspace: workspace.clone(),
            remotes: &remotes,
            remote_names: p.remotes.keys().cloned().collect(),
            default_remote: p.default_remote.clone(),
            transfers: def_transfers,
            checkers: def_checkers,
            bwlimit: def_bw,
        };

        let mut drafts = Vec::new();
        for (i, s) in p.sync.iter().enumerate() {
            let entry = Entry {
                origin: format!("persistence.sync[{i}]"),
                name: &s.name,
                path: &s.path,
                path_field: "path",
                remote_path: s.remote_path.as_deref(),
                remote: s.remote.as_deref(),
                direction: s.direction,
                read_only: None,
                interval: s.interval.as_ref(),
                priority: s.priority,
                exclude: &s.exclude,
                transfers: s.transfers,
                checkers: s.checkers,
                bwlimit: s.bwlimit.as_ref(),
            };
            if let Some(d) = self.target(&ctx, entry) {
                drafts.push(d);
            }
        }
        if let Some(v) = &p.multi_scope_volumes {
            for (field, refs) in [
                ("global_refs", &v.global_refs),
                ("project_refs", &v.project_refs),
            ] {
                if !refs.is_empty() {
                    self.warn(
                        format!("persistence.multi_scope_volumes.{field}"),
                        "shared volume references are not synced by coltecd",
                        "list directories to sync under `multi_scope_volumes.environment` or `persistence.sync`",
                    );
                }
            }
            for (i, vol) in v.environment.iter().enumerate() {
                let entry = Entry {
                    origin: format!("persistence.multi_scope_volumes.environment[{i}]"),
                    name: &vol.name,
                    path: &vol.mount_path,
                    path_field: "mount_path",
                    remote_path: Some(&vol.remote_path),
                    remote: None,
                    direction: vol.sync,
                    read_only: vol.read_only,
                    interval: vol.interval.as_ref(),
                    priority: vol.priority,
                    exclude: &vol.exclude,
                    transfers: None,
                    checkers: None,
                    bwlimit: None,
                };
                if let Some(d) = self.target(&ctx, entry) {
                    drafts.push(d);
                }
            }
        }
        if has_targets && p.remotes.is_empty() {
            self.err(
                "persistence.remotes",
                "no remote is defined, so the sync targets have nowhere to go",
                "define one, e.g. `remotes: {local: {type: local, path_prefix: ~/coltecd-remote}}` plus `default_remote: local`, or an s3 remote (see config/r2.yaml)",
            );
        }
        self.duplicate_names(&p);
        self.cross_checks(&drafts, &remotes, workspace.as_ref());

        let lease = self.lease(p.lease.as_ref());
        let safety = self.safety(p.safety.as_ref());
        let daemon = self.daemon(p.daemon.as_ref());

        let workspace = workspace?;
        if !self.errors.is_empty() {
            return None;
        }
        let mut targets: Vec<Target> = drafts.into_iter().map(|d| d.target).collect();
        targets.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        Some(Spec {
            path: self.spec_path.clone(),
            name: raw.name.unwrap_or_else(|| workspace.dir_name()),
            workspace,
            enabled,
            remotes: remotes
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect(),
            targets,
            lease,
            safety,
            daemon,
            warnings: self.warnings.iter().map(Diagnostic::one_line).collect(),
        })
    }

    fn workspace(&mut self, meta: Option<&RawMetadata>) -> Option<Workspace> {
        let Some(m) = meta else {
            self.err(
                "metadata",
                "is missing",
                "add `metadata:` with `org`, `project` and `environment`; they form the workspace's unique {org}/{project}/{env} prefix",
            );
            return None;
        };
        let env = match &m.environment {
            Some(e) => e.clone(),
            None => {
                self.warn(
                    "metadata.environment",
                    format!("is not set; using `{DEFAULT_ENVIRONMENT}` as the incumbent did"),
                    "set it explicitly so two workspaces never share a remote prefix",
                );
                DEFAULT_ENVIRONMENT.to_string()
            }
        };
        let mut ok = true;
        for (field, v) in [
            ("org", &m.org),
            ("project", &m.project),
            ("environment", &env),
        ] {
            if let Some(problem) = slug_problem(v) {
                self.err(
                    format!("metadata.{field}"),
                    format!("`{v}` {problem}"),
                    "use a single path segment such as `acme`, `widget`, `dev-a` (letters, digits, `-`, `_`, `.`)",
                );
                ok = false;
            }
        }
        ok.then(|| Workspace {
            org: m.org.clone(),
            project: m.project.clone(),
            env,
        })
    }

    fn bwlimit(&mut self, field: &str, v: Option<&NumOrStr>, default: BwLimit) -> BwLimit {
        match v {
            None => default,
            Some(v) => match parse_bwlimit(v) {
                Ok(b) => b,
                Err(inv) => {
                    self.invalid(field, inv);
                    default
                }
            },
        }
    }

    // ---------------------------------------------------------------- remotes

    /// Every remote, `None` where it had errors (so targets using it do not
    /// pile up follow-on errors).
    fn remotes(
        &mut self,
        raw: &BTreeMap<String, RawRemote>,
    ) -> BTreeMap<String, Option<RemoteSpec>> {
        let mut out = BTreeMap::new();
        for (name, r) in raw {
            let before = self.errors.len();
            let field = format!("persistence.remotes.{name}");
            let kind = match r.kind.unwrap_or(RawRemoteType::S3) {
                RawRemoteType::S3 => self.s3_remote(&field, name, r).map(RemoteKind::S3),
                RawRemoteType::Local => self.local_remote(&field, r).map(RemoteKind::Local),
                RawRemoteType::Crypt => self
                    .crypt_remote(&field, name, r, raw)
                    .map(RemoteKind::Crypt),
            };
            let spec = kind
                .filter(|_| self.errors.len() == before)
                .map(|kind| RemoteSpec {
                    name: name.clone(),
                    kind,
                });
            out.insert(name.clone(), spec);
        }
        // Give each crypt remote a copy of the remote it wraps, innermost first.
        for _ in 0..out.len() {
            let snapshot = out.clone();
            for spec in out.values_mut().flatten() {
                if let RemoteKind::Crypt(c) = &mut spec.kind {
                    c.wrapped = snapshot
                        .get(&c.wrap_remote)
                        .cloned()
                        .flatten()
                        .map(Box::new);
                }
            }
        }
        out
    }

    fn option(&mut self, field: &str, r: &RawRemote, key: &str) -> Option<String> {
        let v = r.options.0.get(key)?;
        let f = format!("{field}.options.{key}");
        let text = match v {
            NumOrStr::Str(s) => s.clone(),
            other => other.to_string(),
        };
        self.expand(&f, &text).filter(|s| !s.is_empty())
    }

    fn s3_remote(&mut self, field: &str, name: &str, r: &RawRemote) -> Option<S3Remote> {
        let bucket = match &r.bucket {
            Some(b) => self.expand(&format!("{field}.bucket"), b),
            None => self.env_first(&["RCLONE_BUCKET"]),
        };
        let bucket = match bucket.filter(|b| !b.is_empty()) {
            Some(b) => b,
            None => {
                if r.bucket.is_none() {
                    self.err(
                        format!("{field}.bucket"),
                        format!("s3 remote `{name}` has no bucket"),
                        "add `bucket: <name>` to the remote, or set RCLONE_BUCKET in the container's environment",
                    );
                } else if self
                    .errors
                    .last()
                    .is_none_or(|d| d.field != format!("{field}.bucket"))
                {
                    self.err(
                        format!("{field}.bucket"),
                        "is empty",
                        "set it to the bucket name",
                    );
                }
                return None;
            }
        };
        if bucket.contains('/') {
            self.err(
                format!("{field}.bucket"),
                format!(
                    "bucket `{}` contains `/`",
                    r.bucket.as_deref().unwrap_or("$RCLONE_BUCKET")
                ),
                "put the bucket name in `bucket` and any key prefix in `path_prefix`",
            );
        }
        let path_prefix =
            self.key_prefix(&format!("{field}.path_prefix"), r.path_prefix.as_deref());
        let provider = self.option(field, r, "provider");
        let endpoint = match r.options.0.contains_key("endpoint") {
            true => self.option(field, r, "endpoint"),
            false => self.env_first(&[
                "RCLONE_S3_ENDPOINT",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
            ]),
        };
        let endpoint = endpoint.map(|e| {
            if e.contains("://") {
                e.trim_end_matches('/').to_string()
            } else {
                format!("https://{}", e.trim_end_matches('/'))
            }
        });
        if let Some(e) = &endpoint
            && (e.contains(char::is_whitespace)
                || !(e.starts_with("http://") || e.starts_with("https://")))
        {
            self.err(
                format!("{field}.options.endpoint"),
                "is not an http(s) URL",
                "write the endpoint as `https://<account>.r2.cloudflarestorage.com` or `http://host:port`",
            );
        }
        let is_cloudflare = provider
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("cloudflare"));
        let region = match r.options.0.contains_key("region") {
            true => self.option(field, r, "region"),
            false => self.env_first(&["RCLONE_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]),
        }
        .unwrap_or_else(|| if is_cloudflare { "auto" } else { "us-east-1" }.to_string());
        let cred = |this: &mut Self, key: &str, vars: &[&str]| -> Option<Secret> {
            match r.options.0.contains_key(key) {
                true => this.option(field, r, key),
                false => this.env_first(vars),
            }
            .map(Secret::new)
        };
        let access_key_id = cred(
            self,
            "access_key_id",
            &["RCLONE_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"],
        );
        let secret_access_key = cred(
            self,
            "secret_access_key",
            &["RCLONE_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
        );
        let session_token = cred(
            self,
            "session_token",
            &["RCLONE_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"],
        );
        if access_key_id.is_some() != secret_access_key.is_some() {
            let (have, missing) = if access_key_id.is_some() {
                ("access_key_id", "secret_access_key")
            } else {
                ("secret_access_key", "access_key_id")
            };
            self.err(
                format!("{field}.options.{missing}"),
                format!("remote `{name}` has an {have} but no {missing}"),
                "set both keys (options or RCLONE_S3_ACCESS_KEY_ID + RCLONE_S3_SECRET_ACCESS_KEY), or neither",
            );
        }
        let path_style = match r.options.0.get("force_path_style") {
            None => endpoint.is_some(),
            Some(v) => match v {
                NumOrStr::Bool(b) => *b,
                NumOrStr::Str(s) if s.eq_ignore_ascii_case("true") => true,
                NumOrStr::Str(s) if s.eq_ignore_ascii_case("false") => false,
                _ => {
                    self.err(
                        format!("{field}.options.force_path_style"),
                        format!("`{v}` is not true or false"),
                        "write `force_path_style: true` or `false`",
                    );
                    endpoint.is_some()
                }
            },
        };
        Some(S3Remote {
            bucket,
            path_prefix: path_prefix.unwrap_or_default(),
            endpoint,
            region,
            provider,
            access_key_id,
            secret_access_key,
            session_token,
            path_style,
        })
    }

    /// A `/`-separated key prefix: `${VAR}` expanded, no `..`, no empty segments.
    fn key_prefix(&mut self, field: &str, raw: Option<&str>) -> Option<String> {
        let raw = raw?;
        let v = self.expand(field, raw)?;
        self.clean_key(field, raw, &v)
    }

    /// `v` is the expanded value; messages quote `raw`, what the user wrote.
    fn clean_key(&mut self, field: &str, raw: &str, v: &str) -> Option<String> {
        let segs: Vec<&str> = v
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        if segs.contains(&"..") {
            self.err(
                field,
                format!("`{raw}` contains `..`"),
                "remote paths cannot climb out of their prefix; remove the `..`",
            );
            return None;
        }
        Some(segs.join("/"))
    }

    fn local_remote(&mut self, field: &str, r: &RawRemote) -> Option<LocalRemote> {
        if r.bucket.is_some() || !r.options.0.is_empty() {
            self.warn(
                field,
                "`bucket` and `options` do not apply to a local remote and are ignored",
                "remove them; `path_prefix` is the remote's root directory",
            );
        }
        let root = match &r.path_prefix {
            Some(p) => self.local_path(&format!("{field}.path_prefix"), p)?,
            None => self.spec_dir.clone(),
        };
        Some(LocalRemote { root })
    }

    fn crypt_remote(
        &mut self,
        field: &str,
        name: &str,
        r: &RawRemote,
        all: &BTreeMap<String, RawRemote>,
    ) -> Option<CryptRemote> {
        let wrap = match &r.wrap_remote {
            None => {
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("crypt remote `{name}` has no wrap_remote"),
                    "set `wrap_remote:` to the name of the s3 or local remote it stores its encrypted files in",
                );
                None
            }
            Some(w) if w == name => {
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("crypt remote `{name}` wraps itself"),
                    "point `wrap_remote:` at an s3 or local remote",
                );
                None
            }
            Some(w) if !all.contains_key(w) => {
                let names: Vec<&str> = all.keys().map(String::as_str).collect();
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("remote `{w}` is not defined in persistence.remotes"),
                    unknown_remote_hint(w, &names),
                );
                None
            }
            Some(w) => {
                // Follow the chain; report a loop once, at its smallest member.
                let mut chain = vec![name.to_string()];
                let mut cur = w.clone();
                let mut looped = false;
                while let Some(next) = all.get(&cur) {
                    if chain.contains(&cur) {
                        looped = cur == name;
                        break;
                    }
                    chain.push(cur.clone());
                    match (next.kind, &next.wrap_remote) {
                        (Some(RawRemoteType::Crypt), Some(n)) => cur = n.clone(),
                        _ => break,
                    }
                }
                if looped {
                    let members = &chain;
                    if members.iter().min().is_some_and(|m| m == name) {
                        chain.push(name.to_string());
                        self.err(
                            format!("{field}.wrap_remote"),
                            format!(
                                "crypt remotes wrap each other in a loop: {}",
                                chain.join(" -> ")
                            ),
                            "make the innermost crypt remote wrap an s3 or local remote",
                        );
                    }
                    None
                } else {
                    Some(w.clone())
                }
            }
        };
        let Some(c) = &r.crypt else {
            self.err(
                format!("{field}.crypt"),
                format!("crypt remote `{name}` has no crypt settings"),
                "add `crypt: {password_env: <VAR holding the password>, password2_env: <VAR holding the salt>}`",
            );
            return None;
        };
        let wrap_path = match &r.wrap_path {
            Some(p) => self.key_prefix(&format!("{field}.wrap_path"), Some(p))?,
            None => String::new(),
        };
        let password = (self.env)(&c.password_env)
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        if password.is_none() {
            self.warn(
                format!("{field}.crypt.password_env"),
                format!(
                    "{} is not set, so targets on crypt remote `{name}` cannot be synced",
                    c.password_env
                ),
                format!("set {} in the container's environment", c.password_env),
            );
        }
        let salt = c
            .password2_env
            .as_ref()
            .and_then(|v| (self.env)(v))
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        Some(CryptRemote {
            wrap_remote: wrap?,
            wrapped: None,
            wrap_path,
            password_env: c.password_env.clone(),
            password2_env: c.password2_env.clone(),
            password,
            salt,
            filename_encryption: match c
                .filename_encryption
                .unwrap_or(RawFilenameEncryption::Standard)
            {
                RawFilenameEncryption::Standard => "standard",
                RawFilenameEncryption::Obfuscate => "obfuscate",
                RawFilenameEncryption::Off => "off",
            }
            .to_string(),
            directory_name_encryption: c.directory_name_encryption.unwrap_or(true),
        })
    }

    // ---------------------------------------------------------------- targets

    fn target(&mut self, ctx: &TargetCtx<'_>, e: Entry<'_>) -> Option<Draft> {
        let o = &e.origin;
        if let Some(problem) = name_problem(e.name) {
            self.err(
                format!("{o}.name"),
                format!("`{}` {problem}", e.name),
                "use letters, digits, `-`, `_` and `.`, e.g. `agent-context`",
            );
        }
        let path_field = format!("{o}.{}", e.path_field);
        let local_path = self.local_path(&path_field, e.path);
        if let Some(p) = &local_path {
            self.locals.push(LocalEntry {
                origin: o.clone(),
                field: path_field,
                name: e.name.to_string(),
                path: p.clone(),
            });
        }
        if let Some(p) = &local_path
            && p.parent().is_none()
        {
            self.err(
                format!("{o}.{}", e.path_field),
                "refuses to sync the filesystem root `/`",
                "point it at the directory that holds the state, e.g. `/workspace/agent-context`",
            );
        }

        // Remote: explicit, else default_remote, else the only remote there is.
        let remote_name = match (e.remote, &ctx.default_remote) {
            (Some(r), _) => Some(r.to_string()),
            (None, Some(d)) => Some(d.clone()),
            (None, None) if ctx.remote_names.len() == 1 => ctx.remote_names.first().cloned(),
            // No remotes at all: reported once for the whole spec, in `resolve`.
            (None, None) if ctx.remote_names.is_empty() => None,
            (None, None) => {
                self.err(
                    format!("{o}.remote"),
                    format!("target `{}` has no remote", e.name),
                    format!(
                        "add `remote: <name>` here or set `persistence.default_remote` (defined remotes: {})",
                        ctx.remote_names.join(", ")
                    ),
                );
                None
            }
        };
        // `None` inside: the remote exists but had its own errors.
        let remote: Option<Option<&RemoteSpec>> = match &remote_name {
            None => None,
            Some(n) => match ctx.remotes.get(n) {
                Some(r) => Some(r.as_ref()),
                None => {
                    if e.remote.is_some() {
                        let names: Vec<&str> =
                            ctx.remote_names.iter().map(String::as_str).collect();
                        self.err(
                            format!("{o}.remote"),
                            format!("remote `{n}` is not defined in persistence.remotes"),
                            unknown_remote_hint(n, &names),
                        );
                    }
                    None
                }
            },
        };

        let remote_path = self.remote_path(ctx, &e, remote.flatten());

        let direction = match (e.read_only, e.direction) {
            (Some(true), None | Some(RawDirection::PullOnly)) => Direction::PullOnly,
            (Some(true), Some(d)) => {
                self.err(
                    format!("{o}.read_only"),
                    format!("`read_only: true` conflicts with `sync: {}`", raw_direction(d)),
                    "set `sync: pull-only` (a read-only volume is restored, never pushed) or `read_only: false`",
                );
                Direction::PullOnly
            }
            (_, d) => match d.unwrap_or(RawDirection::Bidirectional) {
                RawDirection::Bidirectional => Direction::Bidirectional,
                RawDirection::PushOnly => Direction::PushOnly,
                RawDirection::PullOnly => Direction::PullOnly,
            },
        };

        let interval = self.duration(&format!("{o}.interval"), e.interval, DEFAULT_INTERVAL);
        if interval < MIN_INTERVAL {
            self.err(
                format!("{o}.interval"),
                format!(
                    "{} is below the minimum of 10s",
                    humantime::format_duration(interval)
                ),
                "set `interval: 10` or more (whole seconds, or a duration such as `30s`, `5m`); file changes are picked up from events anyway",
            );
        }

        let excludes = match Excludes::new(e.exclude.to_vec()) {
            Ok(x) => x,
            Err(bad) => {
                for b in bad {
                    self.err(
                        format!("{o}.exclude[{}]", b.index),
                        format!("`{}` is not a valid glob: {}", b.pattern, b.reason),
                        "use rclone glob syntax: `*` within a name, `**` across directories, `[abc]`, `{a,b}`; a leading `/` anchors at the sync root",
                    );
                }
                Excludes::default()
            }
        };
        let transfers = self.count(&format!("{o}.transfers"), e.transfers, ctx.transfers);
        let checkers = self.count(&format!("{o}.checkers"), e.checkers, ctx.checkers);
        let bwlimit = self.bwlimit(&format!("{o}.bwlimit"), e.bwlimit, ctx.bwlimit);

        // A target with other errors still takes part in the nesting checks
        // (so they are reported too); the spec as a whole is rejected anyway.
        let (Some(local_path), Some(Some(remote)), Some(remote_path)) =
            (local_path, remote, remote_path)
        else {
            return None;
        };
        Some(Draft {
            origin: e.origin.clone(),
            target: Target {
                name: e.name.to_string(),
                local_path,
                remote_name: remote.name.clone(),
                remote: remote.clone(),
                remote_path,
                direction,
                interval,
                priority: e.priority.unwrap_or(DEFAULT_PRIORITY),
                excludes,
                transfers,
                checkers,
                bwlimit,
            },
        })
    }

    fn remote_path(
        &mut self,
        ctx: &TargetCtx<'_>,
        e: &Entry<'_>,
        remote: Option<&RemoteSpec>,
    ) -> Option<String> {
        let field = format!("{}.remote_path", e.origin);
        let raw = match e.remote_path {
            Some(r) => r.to_string(),
            None => format!("{{org}}/{{project}}/{{env}}/{}", e.name),
        };
        let expanded = self.expand(&field, &raw)?;
        let ws = ctx.workspace.as_ref()?;
        let substituted = expanded
            .replace("{org}", &ws.org)
            .replace("{project}", &ws.project)
            .replace("{env}", &ws.env);
        if let Some(start) = substituted.find('{')
            && let Some(len) = substituted[start..].find('}')
        {
            let ph = &substituted[start..start + len + 1];
            self.err(
                &field,
                format!("unknown placeholder `{ph}`"),
                "the placeholders are {org}, {project} and {env} (from metadata)",
            );
            return None;
        }
        let is_local = matches!(remote.map(|r| &r.kind), Some(RemoteKind::Local(_)));
        let value = if is_local && (substituted.starts_with('/') || substituted.starts_with('~')) {
            // Absolute on a local remote: used as is (the incumbent's tests do this).
            let p = match resolve_local_path(&substituted, &self.spec_dir, self.env) {
                Ok(p) => p,
                Err(inv) => {
                    self.invalid(&field, inv);
                    return None;
                }
            };
            normalize(&p).to_string_lossy().into_owned()
        } else {
            self.clean_key(&field, &raw, &substituted)?
        };
        if value.is_empty() || value == "/" {
            self.err(
                &field,
                "is empty: the target would own the whole remote",
                "use a prefix unique to this workspace and target, e.g. `{org}/{project}/{env}/<name>`",
            );
            return None;
        }
        Some(value)
    }

    // ---------------------------------------------------------------- cross-target checks

    fn duplicate_names(&mut self, p: &RawPersistence) {
        let sync = p
            .sync
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("persistence.sync[{i}]"), s.name.as_str()));
        let vols = p.multi_scope_volumes.iter().flat_map(|v| {
            v.environment.iter().enumerate().map(|(i, e)| {
                (
                    format!("persistence.multi_scope_volumes.environment[{i}]"),
                    e.name.as_str(),
                )
            })
        });
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (origin, name) in sync.chain(vols) {
            if let Some(first) = seen.get(name) {
                self.err(
                    format!("{origin}.name"),
                    format!("target name `{name}` is already used by {first}"),
                    "give every sync entry and volume a unique name",
                );
            } else {
                seen.insert(name, origin);
            }
        }
    }

    fn cross_checks(
        &mut self,
        drafts: &[Draft],
        remotes: &BTreeMap<String, Option<RemoteSpec>>,
        ws: Option<&Workspace>,
    ) {
        let phys: Vec<Option<Phys>> = drafts
            .iter()
            .map(|d| physical(&d.target, remotes))
            .collect();
        let locals = std::mem::take(&mut self.locals);
        for (j, b) in locals.iter().enumerate() {
            for a in locals.iter().take(j) {
                let (pa, pb) = (&a.path, &b.path);
                if pa == pb || pa.starts_with(pb) || pb.starts_with(pa) {
                    let rel = if pa == pb {
                        "is the same directory as"
                    } else if pb.starts_with(pa) {
                        "is inside"
                    } else {
                        "contains"
                    };
                    self.err(
                        &b.field,
                        format!(
                            "{} {rel} {} of target `{}` ({})",
                            pb.display(),
                            pa.display(),
                            a.name,
                            a.origin
                        ),
                        "give every target its own directory; to leave a subdirectory out of a target, add it to that target's `exclude`",
                    );
                }
            }
        }
        for (j, b) in drafts.iter().enumerate() {
            for (i, a) in drafts.iter().enumerate().take(j) {
                if let (Some(x), Some(y)) = (&phys[i], &phys[j])
                    && let Some(rel) = x.overlap(y)
                {
                    self.err(
                        format!("{}.remote_path", b.origin),
                        format!(
                            "remote location {} {rel} {} of target `{}` ({})",
                            b.target.location(),
                            a.target.location(),
                            a.target.name,
                            a.origin
                        ),
                        "give every target its own remote prefix, e.g. `{org}/{project}/{env}/<name>`",
                    );
                }
            }
            // A local remote directory inside any synced directory (or around it) would sync into itself.
            if let Some(Phys::Dir(dir)) = &phys[j] {
                for other in drafts {
                    let lp = &other.target.local_path;
                    if dir.starts_with(lp) || lp.starts_with(dir) {
                        self.err(
                            format!("{}.remote_path", b.origin),
                            format!(
                                "remote directory {} overlaps the synced directory {} of target `{}`",
                                dir.display(),
                                lp.display(),
                                other.target.name
                            ),
                            "put the local remote's `path_prefix` outside every synced directory",
                        );
                    }
                }
            }
            if let (Some(ws), Some(p)) = (ws, &phys[j]) {
                let segs = p.segments();
                let want = [ws.org.as_str(), ws.project.as_str(), ws.env.as_str()];
                if !segs.windows(3).any(|w| w == want) {
                    self.warn(
                        format!("{}.remote_path", b.origin),
                        format!(
                            "{} does not contain {}: another workspace could write the same prefix",
                            b.target.location(),
                            ws.slug()
                        ),
                        "include {org}/{project}/{env} in remote_path, e.g. `{org}/{project}/{env}/<name>`",
                    );
                }
            }
        }
    }

    // ---------------------------------------------------------------- settings

    fn lease(&mut self, raw: Option<&RawLease>) -> LeaseSettings {
        let defaults = LeaseSettings {
            enabled: true,
            ttl: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
        };
        if matches!(
            raw,
            Some(RawLease::Switch(false))
                | Some(RawLease::Settings(RawLeaseSettings {
                    enabled: Some(false),
                    ..
                }))
        ) {
            self.warn(
                "persistence.lease",
                "the lease is off: nothing stops a second container from writing the same remote prefixes",
                "turn it off only for a backend without conditional writes, and make sure no two containers share {org}/{project}/{env}",
            );
        }
        let s = match raw {
            None => return defaults,
            Some(RawLease::Switch(enabled)) => {
                return LeaseSettings {
                    enabled: *enabled,
                    ..defaults
                };
            }
            Some(RawLease::Settings(s)) => s,
        };
        let ttl = self.duration("persistence.lease.ttl", s.ttl.as_ref(), defaults.ttl);
        if ttl < Duration::from_secs(10) {
            self.err(
                "persistence.lease.ttl",
                format!(
                    "{} is below the minimum of 10s",
                    humantime::format_duration(ttl)
                ),
                "use `ttl: 60s` (the default) or more",
            );
        }
        let renew_default = if s.ttl.is_some() {
            ttl / 4
        } else {
            defaults.renew_every
        };
        let renew_every = self.duration(
            "persistence.lease.renew_every",
            s.renew_every.as_ref(),
            renew_default,
        );
        if renew_every.is_zero() || renew_every * 2 >= ttl {
            self.err(
                "persistence.lease.renew_every",
                format!(
                    "{} must be more than 0 and less than half of ttl ({})",
                    humantime::format_duration(renew_every),
                    humantime::format_duration(ttl)
                ),
                "renew at most every ttl/4 (e.g. `ttl: 60s`, `renew_every: 15s`) so a missed renewal does not lose the lease",
            );
        }
        LeaseSettings {
            enabled: s.enabled.unwrap_or(true),
            ttl,
            renew_every,
        }
    }

    fn safety(&mut self, raw: Option<&RawSafety>) -> SafetySettings {
        let empty = RawSafety::default();
        let s = raw.unwrap_or(&empty);
        let percent = s.mass_delete_max_percent.unwrap_or(25.0);
        if !(0.0..=100.0).contains(&percent) {
            self.err(
                "persistence.safety.mass_delete_max_percent",
                format!("{percent} is not a percentage"),
                "use a number from 0 to 100 (default 25)",
            );
        }
        SafetySettings {
            mass_delete_max_files: s.mass_delete_max_files.unwrap_or(50),
            mass_delete_max_fraction: percent.clamp(0.0, 100.0) / 100.0,
            trash_retention: self.duration(
                "persistence.safety.trash_retention",
                s.trash_retention.as_ref(),
                Duration::from_secs(7 * 86400),
            ),
        }
    }

    fn daemon(&mut self, raw: Option<&RawDaemon>) -> DaemonSettings {
        let empty = RawDaemon::default();
        let d = raw.unwrap_or(&empty);
        let state_dir = d
            .state_dir
            .as_ref()
            .and_then(|p| self.local_path("persistence.daemon.state_dir", p));
        let log_dir = d
            .log_dir
            .as_ref()
            .and_then(|p| self.local_path("persistence.daemon.log_dir", p))
            .unwrap_or_else(|| self.spec_dir.join("logs"));
        let flush_deadline = self.duration(
            "persistence.daemon.flush_deadline",
            d.flush_deadline.as_ref(),
            Duration::from_secs(8),
        );
        if flush_deadline.is_zero() {
            self.err(
                "persistence.daemon.flush_deadline",
                "must be more than 0",
                "keep it below the container's stop grace period (docker: 10s), e.g. `8s`",
            );
        } else if flush_deadline >= Duration::from_secs(10) {
            self.warn(
                "persistence.daemon.flush_deadline",
                format!(
                    "{} is not below docker's default stop grace period of 10s: the final flush may be cut off by SIGKILL",
                    humantime::format_duration(flush_deadline)
                ),
                "lower it, or raise the container's stop timeout to match",
            );
        }
        let rps = d
            .max_requests_per_second
            .unwrap_or(DEFAULT_MAX_REQUESTS_PER_SECOND);
        if rps == 0 {
            self.err(
                "persistence.daemon.max_requests_per_second",
                "must be at least 1",
                "use the default 1000, or lower it when many workspaces share a bucket and it throttles",
            );
        }
        DaemonSettings {
            state_dir,
            log_dir,
            debounce: self.duration(
                "persistence.daemon.debounce",
                d.debounce.as_ref(),
                Duration::from_secs(2),
            ),
            flush_deadline,
            watch: match d.watch.unwrap_or(RawWatch::Auto) {
                RawWatch::Auto => WatchMode::Auto,
                RawWatch::Poll => WatchMode::Poll,
            },
            max_requests_per_second: rps.max(1),
        }
    }
}

struct TargetCtx<'a> {
    workspace: Option<Workspace>,
    remotes: &'a BTreeMap<String, Option<RemoteSpec>>,
    remote_names: Vec<String>,
    default_remote: Option<String>,
    transfers: usize,
    checkers: usize,
    bwlimit: BwLimit,
}

/// `sync[]` entries and `multi_scope_volumes.environment[]` entries, unified.
struct Entry<'a> {
    origin: String,
    name: &'a str,
    path: &'a str,
    path_field: &'static str,
    remote_path: Option<&'a str>,
    remote: Option<&'a str>,
    direction: Option<RawDirection>,
    read_only: Option<bool>,
    interval: Option<&'a NumOrStr>,
    priority: Option<u32>,
    exclude: &'a [String],
    transfers: Option<u64>,
    checkers: Option<u64>,
    bwlimit: Option<&'a NumOrStr>,
}

fn raw_direction(d: RawDirection) -> &'static str {
    match d {
        RawDirection::Bidirectional => "bidirectional",
        RawDirection::PushOnly => "push-only",
        RawDirection::PullOnly => "pull-only",
    }
}

fn unknown_remote_hint(name: &str, names: &[&str]) -> String {
    match (suggest(name, names), names.is_empty()) {
        (Some(s), _) => format!("did you mean `{s}`?"),
        (None, true) => "define it under `persistence.remotes`".to_string(),
        (None, false) => format!(
            "use one of the remotes defined under persistence.remotes: {}",
            names.join(", ")
        ),
    }
}

fn slug_problem(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        Some("is empty")
    } else if v.contains('/') {
        Some("contains `/`")
    } else if v == "." || v == ".." {
        Some("is not a usable name")
    } else if v
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        Some("contains whitespace or braces")
    } else {
        None
    }
}

fn name_problem(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        Some("is empty")
    } else if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("contains characters other than letters, digits, `-`, `_` and `.`")
    } else if v.starts_with('.') {
        Some("starts with `.`")
    } else {
        None
    }
}

/// Where a target's bytes physically live, for the nesting checks: crypt
/// remotes are followed to the remote they wrap (using the plaintext path,
/// which is how rclone names directories when name encryption is off and a
/// conservative stand-in when it is on).
#[derive(Debug, Clone, PartialEq)]
enum Phys {
    /// An object store: identity (endpoint + bucket) and key segments.
    Store {
        store: String,
        segs: Vec<String>,
    },
    Dir(PathBuf),
}

impl Phys {
    fn overlap(&self, other: &Phys) -> Option<&'static str> {
        match (self, other) {
            (Phys::Store { store: a, segs: x }, Phys::Store { store: b, segs: y }) if a == b => {
                if x == y {
                    Some("is the same as")
                } else if y.starts_with(x) {
                    Some("is inside")
                } else if x.starts_with(y) {
                    Some("contains")
                } else {
                    None
                }
            }
            (Phys::Dir(a), Phys::Dir(b)) => {
                if a == b {
                    Some("is the same as")
                } else if b.starts_with(a) {
                    Some("is inside")
                } else if a.starts_with(b) {
                    Some("contains")
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn segments(&self) -> Vec<String> {
        match self {
            Phys::Store { segs, .. } => segs.clone(),
            Phys::Dir(p) => p
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect(),
        }
    }
}

fn split_key(k: &str) -> Vec<String> {
    k.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn physical(t: &Target, remotes: &BTreeMap<String, Option<RemoteSpec>>) -> Option<Phys> {
    let mut remote = &t.remote;
    let mut tail = split_key(&t.remote_path);
    for _ in 0..32 {
        match &remote.kind {
            RemoteKind::S3(s3) => {
                let mut segs = split_key(&s3.path_prefix);
                segs.extend(tail);
                return Some(Phys::Store {
                    store: format!("{}|{}", s3.endpoint.as_deref().unwrap_or("aws"), s3.bucket),
                    segs,
                });
            }
            RemoteKind::Local(l) => {
                let rp = tail.join("/");
                let dir = if t.remote_path.starts_with('/') && std::ptr::eq(remote, &t.remote) {
                    PathBuf::from(&t.remote_path)
                } else {
                    l.root.join(rp)
                };
                return Some(Phys::Dir(normalize(&dir)));
            }
            RemoteKind::Crypt(c) => {
                let mut segs = split_key(&c.wrap_path);
                segs.extend(tail);
                tail = segs;
                remote = remotes.get(&c.wrap_remote)?.as_ref()?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(bucket: &str, key: &str) -> Phys {
        Phys::Store {
            store: format!("aws|{bucket}"),
            segs: split_key(key),
        }
    }

    #[test]
    fn overlap_is_by_whole_segments() {
        assert_eq!(
            store("b", "a/b").overlap(&store("b", "a/b")),
            Some("is the same as")
        );
        assert_eq!(
            store("b", "a").overlap(&store("b", "a/b")),
            Some("is inside")
        );
        assert_eq!(
            store("b", "a/b").overlap(&store("b", "a")),
            Some("contains")
        );
        // `a/bc` is not inside `a/b`.
        assert_eq!(store("b", "a/b").overlap(&store("b", "a/bc")), None);
        assert_eq!(store("b", "a").overlap(&store("c", "a")), None);
        let d = |p: &str| Phys::Dir(PathBuf::from(p));
        assert_eq!(d("/r/a").overlap(&d("/r/a/b")), Some("is inside"));
        assert_eq!(d("/r/a").overlap(&d("/r/ab")), None);
        assert_eq!(d("/r/a").overlap(&store("b", "r/a")), None);
    }

    #[test]
    fn slugs_and_names() {
        assert_eq!(slug_problem("dev-a"), None);
        assert!(slug_problem("").is_some());
        assert!(slug_problem("a/b").is_some());
        assert!(slug_problem("..").is_some());
        assert!(slug_problem("a b").is_some());
        assert_eq!(name_problem("agent-context"), None);
        assert_eq!(name_problem("v1.2_x"), None);
        assert!(name_problem(".hidden").is_some());
        assert!(name_problem("a b").is_some());
    }
}
