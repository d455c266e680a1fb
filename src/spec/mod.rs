//! Loading `workspace-spec.yaml` into a validated [`Spec`].
//!
//! The file is read once, in three passes, and every problem is collected:
//! 1. YAML syntax ([`serde_yaml::Value`]), with line:column.
//! 2. Unknown keys, by walking the document against the JSON Schema of the
//!    raw structs (`keys`), with "did you mean" suggestions; and types, by
//!    deserializing the raw structs (`raw`) with line:column and path. serde
//!    stops at the first type error, so on failure each part (sync entry,
//!    remote, setting) is deserialized on its own to report all of them.
//! 3. Meaning (`resolve`): defaults, `${VAR}` expansion, `{org}/{project}/{env}`
//!    placeholders, paths, durations, rates, globs, remotes and the
//!    cross-target nesting checks.
//!
//! # Layout
//! - `model`: the validated types everyone else codes against.
//! - `filter`: `exclude:` globs with rclone semantics.
//! - `raw`: serde structs of the file as written, and the JSON Schema.
//! - `keys`: unknown-key detection against that schema.
//! - `expand`: `${VAR}` expansion and the duration / bwlimit / path parsers.
//! - `resolve/`: raw -> [`Spec`] (core, remotes, targets, overlap checks,
//!   settings).
//! - `defaults`: every default and limit, in one place.
//! - `error`: [`SpecError`] and [`Diagnostic`].
//! - `select`: [`Spec::select`] for `--only NAME`.
//! - `type_errors`: every type error of the document, part by part.
//! - `yaml_error`: serde_yaml errors taken apart (path, kind, position) and
//!   turned into diagnostics with a hint.
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
//!   flush deadline 8s; watch `auto`; 1000 requests/s.

pub mod defaults;
mod error;
mod expand;
mod filter;
mod keys;
mod model;
mod raw;
mod read;
mod redact;
mod resolve;
mod select;
mod type_errors;
mod yaml_error;
mod yaml_shape;

pub use defaults::{
    DEFAULT_CHECKERS, DEFAULT_ENVIRONMENT, DEFAULT_INTERVAL, DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_PRIORITY, DEFAULT_TRANSFERS, MIN_INTERVAL,
};
pub use error::{Diagnostic, SpecError};
pub use expand::EnvLookup;
pub use filter::{BadPattern, Excludes, RESERVED_DIR};
pub use model::*;
pub use redact::mask_userinfo;
pub use select::UnknownTarget;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use type_errors::type_errors;
use yaml_error::yaml_diagnostic;

/// Load and validate a spec file, reading `${VAR}`s from the process environment.
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// Like [`load`], with variables (including `HOME`) read through `env`.
pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Spec, SpecError> {
    let abs = absolute(path);
    let text = read::spec_text(&abs).map_err(|e| {
        let (message, hint) = if e.kind() == std::io::ErrorKind::NotFound {
            (
                format!("no spec file at {}", abs.display()),
                format!(
                    "point coltecd at your spec with `--config PATH` or `COLTEC_CONFIG=PATH` (default {})",
                    defaults::DEFAULT_SPEC_PATH
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

    yaml_shape::check(text).map_err(|d| SpecError::single(path.clone(), d))?;
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
    let unmerged = doc.clone();
    if let Err(e) = doc.apply_merge() {
        let mut d = yaml_shape::bad_merge(&unmerged).unwrap_or_else(|| yaml_diagnostic(&e));
        if let Some((line, col)) = keys::locate(text, &d.field) {
            (d.line, d.column) = (Some(line), Some(col));
        }
        return Err(fail(vec![d]));
    }
    // serde_yaml applies `<<` merges only to `Value`s, not when deserializing
    // structs from text, where merged keys would silently vanish. With merges
    // present, the typed pass reads the merged document re-serialized, and
    // positions come from the field path instead of the parser.
    let merged_text = if doc != unmerged {
        serde_yaml::to_string(&doc).ok()
    } else {
        None
    };

    let secrets = secret_values(&doc, env);
    let scrub = |mut ds: Vec<Diagnostic>| {
        for d in &mut ds {
            d.message = redact(&d.message, &secrets);
            d.hint = d.hint.as_deref().map(|h| redact(h, &secrets));
        }
        ds
    };
    let fail = |ds: Vec<Diagnostic>| fail(scrub(ds));

    let report = keys::check(&doc, schema_value());
    let mut errors = report.errors;
    let raw: Option<raw::RawSpec> =
        match serde_yaml::from_str(merged_text.as_deref().unwrap_or(text)) {
            Ok(r) => Some(r),
            Err(e) => {
                // serde stops at the first type error; look for the others part
                // by part so that all of them are reported at once.
                let mut first = yaml_diagnostic(&e);
                if merged_text.is_some() {
                    first.line = None;
                    first.column = None;
                }
                let mut parts = type_errors(&doc);
                match parts
                    .iter_mut()
                    .find(|d| d.field == first.field && d.message == first.message)
                {
                    Some(same) => *same = first,
                    None => parts.insert(0, first),
                }
                errors.extend(parts);
                None
            }
        };
    let Some(raw) = raw else {
        place(&mut errors, text);
        errors.sort_by_key(|d| d.line.unwrap_or(usize::MAX));
        return Err(fail(errors));
    };

    let mut resolver = resolve::Resolver::new(path.clone(), env);
    resolver.warnings = report.warnings;
    let spec = resolver.resolve(raw);
    errors.extend(resolver.errors);
    match spec {
        Some(mut spec) if errors.is_empty() => {
            for w in &mut spec.warnings {
                *w = redact(w, &secrets);
            }
            Ok(spec)
        }
        _ => {
            place(&mut errors, text);
            errors.sort_by_key(|d| d.line.unwrap_or(usize::MAX));
            Err(fail(errors))
        }
    }
}

/// Give every diagnostic without a position the line of its field (one
/// pass over the text for all of them).
fn place(errors: &mut [Diagnostic], text: &str) {
    if errors.iter().all(|d| d.line.is_some()) {
        return;
    }
    let locator = keys::Locator::new(text);
    for d in errors.iter_mut().filter(|d| d.line.is_none()) {
        if let Some((line, col)) = locator.locate(&d.field) {
            d.line = Some(line);
            d.column = Some(col);
        }
    }
}

/// Variables that hold credentials: their values are never printed.
const CREDENTIAL_VARS: &[&str] = &[
    "RCLONE_S3_ACCESS_KEY_ID",
    "RCLONE_S3_SECRET_ACCESS_KEY",
    "RCLONE_S3_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "RCLONE_CRYPT_PASSWORD",
    "RCLONE_CRYPT_SALT",
];

/// Variables that may hold an endpoint, whose `user:password@` is secret.
const ENDPOINT_VARS: &[&str] = &[
    "RCLONE_S3_ENDPOINT",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
];

/// The password (and whole userinfo) of an endpoint URL, if it has one.
fn endpoint_passwords(url: &str) -> Vec<String> {
    let (_, userinfo) = redact::split_userinfo(url);
    userinfo
        .map(|u| {
            let mut v = vec![u.clone()];
            if let Some((_, pw)) = u.split_once(':') {
                v.push(pw.to_string());
            }
            v
        })
        .unwrap_or_default()
}

/// Remote options that hold credentials.
const CREDENTIAL_OPTIONS: &[&str] = &["access_key_id", "secret_access_key", "session_token"];

/// Every credential value this spec could put into a message: the values
/// of the credential variables, of the crypt password variables it names,
/// and of its credential options (literal or expanded). Messages are
/// scrubbed of them as a last line of defence: the loader quotes paths and
/// prefixes, which a careless `${VAR}` could fill with a secret.
fn secret_values(doc: &serde_yaml::Value, env: EnvLookup<'_>) -> Vec<String> {
    let mut out: Vec<String> = CREDENTIAL_VARS.iter().filter_map(|v| env(v)).collect();
    for var in ENDPOINT_VARS {
        out.extend(env(var).iter().flat_map(|e| endpoint_passwords(e)));
    }
    let remotes = doc
        .get("persistence")
        .and_then(|p| p.get("remotes"))
        .and_then(serde_yaml::Value::as_mapping);
    for remote in remotes.into_iter().flat_map(|m| m.values()) {
        if let Some(opts) = remote.get("options") {
            if let Some(raw) = opts.get("endpoint").and_then(serde_yaml::Value::as_str) {
                let expanded = expand::expand_vars(raw, env).unwrap_or_default();
                out.extend(endpoint_passwords(raw));
                out.extend(endpoint_passwords(&expanded));
            }
            for key in CREDENTIAL_OPTIONS {
                if let Some(raw) = opts.get(*key).and_then(serde_yaml::Value::as_str) {
                    out.push(raw.to_string());
                    if let Ok(v) = expand::expand_vars(raw, env) {
                        out.push(v);
                    }
                }
            }
        }
        if let Some(crypt) = remote.get("crypt") {
            for key in ["password_env", "password2_env"] {
                if let Some(var) = crypt.get(key).and_then(serde_yaml::Value::as_str)
                    && let Some(v) = env(var)
                {
                    out.push(v);
                }
            }
        }
    }
    // Very short values would mangle ordinary words; real credentials are long.
    out.retain(|s| s.len() >= 6 && !s.contains("${"));
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut t = mask_userinfo(text);
    for s in secrets {
        if t.contains(s.as_str()) {
            t = t.replace(s.as_str(), "***");
        }
    }
    t
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_are_collected_and_redacted() {
        let doc: serde_yaml::Value = serde_yaml::from_str(
            "persistence:\n  remotes:\n    r:\n      options:\n        access_key_id: LITERALKEY123\n        secret_access_key: ${MY_SECRET}\n    c:\n      crypt: {password_env: PW}\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "MY_SECRET" => Some("expanded-secret".to_string()),
            "PW" => Some("crypt-password".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("aws-secret-value".to_string()),
            "AWS_SESSION_TOKEN" => Some("abc".to_string()),
            _ => None,
        };
        let secrets = secret_values(&doc, &env);
        for s in [
            "LITERALKEY123",
            "expanded-secret",
            "crypt-password",
            "aws-secret-value",
        ] {
            assert!(
                secrets.iter().any(|x| x == s),
                "{s} not collected: {secrets:?}"
            );
        }
        // Too short to be a credential: not scrubbed (it would mangle words).
        assert!(!secrets.iter().any(|x| x == "abc"));
        assert_eq!(
            redact("a expanded-secret b LITERALKEY123", &secrets),
            "a *** b ***"
        );
    }
}
