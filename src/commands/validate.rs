//! `coltecd validate [--json]`: load the spec and print what it resolves to.
//!
//! Exit 0 when the spec is valid, 3 when it is not (every problem is listed
//! on stderr; with `--json` they are also printed as JSON on stdout), 6 when
//! it is valid but a target cannot be served here ([`crate::preflight`]: the
//! same check `start`, `run` and `sync` make, so `validate` names exactly
//! the targets they would skip).
//! Credentials are only ever reported as present or missing.

use std::fmt::Write as _;

use serde_json::json;

use crate::cli::{GlobalArgs, ValidateArgs};
use crate::error::{CmdResult, ExitStatus, Fail};
use crate::preflight::Unusable;
use crate::spec::{self, RemoteKind, Spec, SpecError};

pub fn run(global: &GlobalArgs, args: &ValidateArgs) -> CmdResult {
    match spec::load(&global.config) {
        Ok(spec) => {
            let unusable = crate::preflight::unusable_targets(&spec);
            if args.json {
                let mut v = summary_json(&spec);
                v["unusable"] = unusable_json(&unusable);
                println!("{}", to_json_pretty(&v)?);
            } else {
                print!("{}", summary_text(&spec));
                print!("{}", unusable_text(&unusable));
            }
            Ok(if unusable.is_empty() {
                ExitStatus::Ok
            } else {
                ExitStatus::PartialFailure
            })
        }
        Err(err) => {
            if args.json {
                println!("{}", to_json_pretty(&error_json(&err))?);
            }
            Err(err.into())
        }
    }
}

fn to_json_pretty(v: &serde_json::Value) -> Result<String, Fail> {
    serde_json::to_string_pretty(v).map_err(|e| Fail::new(ExitStatus::Failure, e))
}

/// The human summary: workspace, remotes, one block per target, warnings.
pub fn summary_text(spec: &Spec) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: valid", spec.path.display());
    let _ = writeln!(
        s,
        "workspace {} ({}){}",
        spec.workspace.slug(),
        spec.name,
        if spec.enabled {
            ""
        } else {
            " - persistence disabled, nothing is synced"
        }
    );
    for r in spec.remotes.values() {
        let _ = writeln!(s, "remote {}: {}", r.name, describe_remote(&r.kind));
    }
    let _ = writeln!(s, "{} target(s):", spec.targets.len());
    for t in &spec.targets {
        let _ = writeln!(
            s,
            "  {} [priority {}]\n    {} <-> {}\n    {}, every {}, {} exclude(s), transfers {}, checkers {}",
            t.name,
            t.priority,
            t.local_path.display(),
            t.location(),
            t.direction,
            humantime::format_duration(t.interval),
            t.excludes.patterns().len(),
            t.transfers,
            t.checkers,
        );
    }
    if !spec.warnings.is_empty() {
        let _ = writeln!(s, "{} warning(s):", spec.warnings.len());
        for w in &spec.warnings {
            let _ = writeln!(s, "  - {w}");
        }
    }
    s
}

fn describe_remote(kind: &RemoteKind) -> String {
    match kind {
        RemoteKind::S3(s3) => format!(
            "s3 bucket {}{}, endpoint {}, region {}, {} addressing, credentials {}",
            s3.bucket,
            if s3.path_prefix.is_empty() {
                String::new()
            } else {
                format!(" prefix {}", s3.path_prefix)
            },
            s3.endpoint.as_deref().unwrap_or("AWS default"),
            s3.region,
            if s3.path_style {
                "path-style"
            } else {
                "virtual-host"
            },
            if s3.access_key_id.is_some() && s3.secret_access_key.is_some() {
                "present"
            } else {
                "MISSING (set RCLONE_S3_ACCESS_KEY_ID and RCLONE_S3_SECRET_ACCESS_KEY)"
            }
        ),
        RemoteKind::Local(l) => format!("local directory {}", l.root.display()),
        RemoteKind::Crypt(c) => format!(
            "crypt over {}{}, password {}",
            c.wrap_remote,
            if c.wrap_path.is_empty() {
                String::new()
            } else {
                format!(":{}", c.wrap_path)
            },
            if c.password.is_some() {
                "present"
            } else {
                "MISSING"
            }
        ),
    }
}

/// The targets `start`/`run`/`sync` would skip, and why.
fn unusable_text(unusable: &[Unusable]) -> String {
    let mut s = String::new();
    if unusable.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "{} target(s) cannot be served here (start, run and sync skip them; the others run):",
        unusable.len()
    );
    for u in unusable {
        let _ = writeln!(s, "  - {}: {}", u.target, u.error);
    }
    s
}

fn unusable_json(unusable: &[Unusable]) -> serde_json::Value {
    unusable
        .iter()
        .map(|u| {
            json!({
                "target": u.target,
                "error": u.error.to_string(),
                "exit_code": u.exit_status().code(),
            })
        })
        .collect()
}

/// `--json` output for a valid spec. Field names are stable.
pub fn summary_json(spec: &Spec) -> serde_json::Value {
    let remotes: serde_json::Map<String, serde_json::Value> = spec
        .remotes
        .values()
        .map(|r| {
            let v = match &r.kind {
                RemoteKind::S3(s3) => json!({
                    "type": "s3",
                    "bucket": s3.bucket,
                    "path_prefix": s3.path_prefix,
                    "endpoint": s3.endpoint,
                    "region": s3.region,
                    "path_style": s3.path_style,
                    "credentials": s3.access_key_id.is_some() && s3.secret_access_key.is_some(),
                }),
                RemoteKind::Local(l) => json!({"type": "local", "root": l.root}),
                RemoteKind::Crypt(c) => json!({
                    "type": "crypt",
                    "wrap_remote": c.wrap_remote,
                    "wrap_path": c.wrap_path,
                    "password": c.password.is_some(),
                }),
            };
            (r.name.clone(), v)
        })
        .collect();
    let targets: Vec<serde_json::Value> = spec
        .targets
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "local_path": t.local_path,
                "remote": t.remote_name,
                "remote_path": t.remote_path,
                "location": t.location().to_string(),
                "direction": t.direction.as_str(),
                "interval_secs": t.interval.as_secs(),
                "priority": t.priority,
                "excludes": t.excludes.patterns(),
                "transfers": t.transfers,
                "checkers": t.checkers,
                "bwlimit_up": t.bwlimit.up.map(|b| b.get()),
                "bwlimit_down": t.bwlimit.down.map(|b| b.get()),
            })
        })
        .collect();
    json!({
        "valid": true,
        "path": spec.path,
        "name": spec.name,
        "workspace": {
            "org": spec.workspace.org,
            "project": spec.workspace.project,
            "env": spec.workspace.env,
            "slug": spec.workspace.slug(),
        },
        "enabled": spec.enabled,
        "remotes": remotes,
        "targets": targets,
        "lease": {
            "enabled": spec.lease.enabled,
            "ttl_secs": spec.lease.ttl.as_secs(),
            "renew_every_secs": spec.lease.renew_every.as_secs(),
        },
        "warnings": spec.warnings,
    })
}

/// `--json` output for an invalid spec.
pub fn error_json(err: &SpecError) -> serde_json::Value {
    let errors: Vec<serde_json::Value> = err
        .diagnostics
        .iter()
        .map(|d| {
            json!({
                "field": d.field,
                "message": d.message,
                "hint": d.hint,
                "line": d.line,
                "column": d.column,
            })
        })
        .collect();
    json!({"valid": false, "path": err.path, "errors": errors})
}
