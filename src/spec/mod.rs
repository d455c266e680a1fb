//! Loading `workspace-spec.yaml` into a validated [`Spec`].
//!
//! The file is read once, in three passes, and every problem is collected:
//! 1. YAML syntax ([`serde_yaml::Value`]), with line:column.
//! 2. Unknown keys, by walking the document against the JSON Schema of the
//!    raw structs ([`keys`]), with "did you mean" suggestions; and types,
//!    by deserializing the raw structs ([`raw`]) with line:column and path.
//! 3. Meaning ([`resolve`]): defaults, `${VAR}` expansion, `{org}/{project}/{env}`
//!    placeholders, paths, durations, rates, globs, remotes and the
//!    cross-target nesting checks.
//!
//! # Layout
//! - [`model`]: the validated types everyone else codes against.
//! - [`filter`]: `exclude:` globs with rclone semantics.
//! - `raw`: serde structs of the file as written, and the JSON Schema.
//! - `keys`: unknown-key detection against that schema.
//! - `expand`: `${VAR}` expansion and the duration / bwlimit / path parsers.
//! - `resolve`: raw -> [`Spec`].
//! - `error`: [`SpecError`] and [`Diagnostic`].
//!
//! # Defaults worth knowing
//! - `metadata.environment` missing -> `dev` (the incumbent's default, so its
//!   data under `.../dev/...` is found again), with a warning.
//! - `persistence.enabled` missing -> false (the incumbent's default), with a
//!   warning when targets are defined.
//! - `remote_path` missing -> `{org}/{project}/{env}/<name>`.
//! - `interval` 300s (minimum 10s), `priority` 2 (lower first), `direction`
//!   bidirectional, `transfers` 4, `checkers` 8 (rclone's), no bwlimit.
//! - A target without `remote` uses `default_remote`, else the only remote.
//! - remote `type` missing -> `s3`; s3 `bucket` missing -> `RCLONE_BUCKET`;
//!   credentials / endpoint / region missing from `options` ->
//!   `RCLONE_S3_*`, then `AWS_*`; region default `auto` for Cloudflare, else
//!   `us-east-1`; path-style addressing whenever an endpoint is set.
//! - lease on (ttl 60s, renew every 15s); delete guard 50 files and 25%;
//!   trash kept 7 days; logs in `logs/` next to the spec; debounce 2s;
//!   flush deadline 8s; watch `auto`; 100 requests/s.

mod error;
mod expand;
mod filter;
mod keys;
mod model;
mod raw;
mod resolve;

pub use error::{Diagnostic, SpecError};
pub use expand::EnvLookup;
pub use filter::{BadPattern, Excludes, RESERVED_DIR};
pub use model::*;
pub use resolve::{
    DEFAULT_CHECKERS, DEFAULT_ENVIRONMENT, DEFAULT_INTERVAL, DEFAULT_PRIORITY, DEFAULT_TRANSFERS,
    MIN_INTERVAL,
};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Load and validate a spec file, reading `${VAR}`s from the process environment.
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// Like [`load`], with variables (including `HOME`) read through `env`.
pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Spec, SpecError> {
    let abs = absolute(path);
    let text = std::fs::read_to_string(&abs).map_err(|e| {
        let (message, hint) = if e.kind() == std::io::ErrorKind::NotFound {
            (
                format!("no spec file at {}", abs.display()),
                format!(
                    "point coltecd at your spec with `--config PATH` or `COLTEC_CONFIG=PATH` (default {})",
                    crate::cli::DEFAULT_SPEC_PATH
                ),
            )
        } else {
            (
                format!("cannot read spec file {}: {e}", abs.display()),
                "check the path and its permissions, or pass another file with `--config PATH`"
                    .to_string(),
            )
        };
        SpecError {
            path: abs.clone(),
            diagnostics: vec![Diagnostic::new("", message).hint(hint)],
            unreadable: true,
        }
    })?;
    load_str(&text, &abs, env)
}

/// Validate spec text as if it had been read from `path` (relative local
/// paths resolve against `path`'s directory), with variables read through `env`.
pub fn load_str(text: &str, path: &Path, env: EnvLookup<'_>) -> Result<Spec, SpecError> {
    let path = absolute(path);
    let fail = |diagnostics: Vec<Diagnostic>| SpecError {
        path: path.clone(),
        diagnostics,
        unreadable: false,
    };

    let mut doc: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| SpecError::single(path.clone(), yaml_diagnostic(&e)))?;
    match &doc {
        serde_yaml::Value::Mapping(_) => {}
        serde_yaml::Value::Null => {
            return Err(fail(vec![Diagnostic::new("", "the file is empty").hint(
                "start from config/local.yaml: it needs `metadata` and `persistence`",
            )]));
        }
        _ => {
            return Err(fail(vec![
                Diagnostic::new("", "the top level is not a mapping of `key: value` pairs")
                    .hint("start from config/local.yaml: it needs `metadata` and `persistence`"),
            ]));
        }
    }
    // `<<: *anchor` merges are legal YAML; resolve them before checking keys.
    if let Err(e) = doc.apply_merge() {
        return Err(fail(vec![yaml_diagnostic(&e)]));
    }

    let report = keys::check(&doc, schema_value(), text);
    let mut errors = report.errors;
    let raw: Option<raw::RawSpec> = match serde_yaml::from_str(text) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(yaml_diagnostic(&e));
            None
        }
    };
    let Some(raw) = raw else {
        return Err(fail(errors));
    };

    let mut resolver = resolve::Resolver::new(path.clone(), env);
    resolver.warnings = report.warnings;
    let spec = resolver.resolve(raw);
    errors.extend(resolver.errors);
    match spec {
        Some(spec) if errors.is_empty() => Ok(spec),
        _ => Err(fail(errors)),
    }
}

/// The JSON Schema (draft-07) of `workspace-spec.yaml`, for editors.
pub fn schema() -> serde_json::Value {
    schema_value().clone()
}

fn schema_value() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(raw::schema)
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| expand::normalize(&d.join(path)))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// A serde_yaml error as a diagnostic: its path (`persistence.sync[0].interval`),
/// its position, and a hint derived from the kind of mistake.
fn yaml_diagnostic(e: &serde_yaml::Error) -> Diagnostic {
    let mut text = e.to_string();
    let loc = e.location();
    if let Some(l) = &loc {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(i) = text.find(&suffix) {
            text.replace_range(i..i + suffix.len(), "");
        }
    }
    // serde_yaml prefixes the field path: "persistence.sync[0].interval: invalid type ..."
    let (field, message) = match text.split_once(": ") {
        Some((p, m))
            if !p.is_empty()
                && !p.contains(' ')
                && p.chars().next().is_some_and(|c| c.is_alphabetic()) =>
        {
            (p.to_string(), m.to_string())
        }
        _ => (String::new(), text.clone()),
    };
    let hint = if let Some(rest) = message.strip_prefix("missing field `") {
        let f = rest.split('`').next().unwrap_or_default();
        format!("add `{f}:` here")
    } else if message.starts_with("unknown variant") {
        match message.split_once("expected ") {
            Some((_, exp)) => format!("use {exp}"),
            None => "use one of the documented values".to_string(),
        }
    } else if message.starts_with("invalid type") || message.starts_with("invalid value") {
        match message.split_once("expected ") {
            Some((_, exp)) => format!("write {exp} here"),
            None => "check the value's type against `coltecd schema`".to_string(),
        }
    } else if message.contains("duplicate entry") {
        "remove one of the duplicated keys".to_string()
    } else {
        "fix the YAML syntax: check indentation, `key: value` pairs and quoting (quote values containing `: ` or starting with `*`, `&`, `{`, `[`)".to_string()
    };
    Diagnostic {
        field,
        message,
        hint: Some(hint),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
    }
}
