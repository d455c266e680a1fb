//! Raw spec -> validated [`Spec`]: defaults, `${VAR}` expansion,
//! placeholders, paths, units, remotes, targets and the cross-target
//! checks. Every problem is collected; nothing stops at the first.
//!
//! [`Resolver::resolve`] runs the stages in a fixed order (the order in
//! which diagnostics are pushed is the order users see for ties):
//! workspace -> persistence switches -> remotes -> targets -> cross-target
//! checks -> lease / safety / daemon settings.
//!
//! # Layout
//! - `mod.rs`: the [`Resolver`], `resolve()` and the workspace identity.
//! - `values`: field-level parsing shared by every stage (`${VAR}`s, local
//!   paths, durations, counts, rates) and the diagnostic helpers.
//! - `remotes`: s3, local and crypt remotes.
//! - `targets`: `sync[]` / `multi_scope_volumes.environment[]` entries,
//!   `remote_path`, direction, interval, excludes.
//! - `overlap`: duplicate names and the physical-location nesting checks,
//!   found by `nesting` in `O(n log n)`.
//! - `settings`: `lease`, `safety`, `daemon`.
//!
//! Every default lives in [`crate::spec::defaults`].

mod nesting;
mod overlap;
mod remotes;
mod settings;
mod targets;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::defaults::{DEFAULT_CHECKERS, DEFAULT_ENVIRONMENT, DEFAULT_TRANSFERS, MAX_SLUG_CHARS};
use super::error::Diagnostic;
use super::expand::EnvLookup;
use super::filter::Excludes;
use super::keys::suggest;
use super::model::*;
use super::raw::*;
use targets::TargetInputs;

pub(crate) struct Resolver<'a> {
    env: EnvLookup<'a>,
    spec_path: PathBuf,
    spec_dir: PathBuf,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// Every target's local directory, for the nesting check (collected even
    /// for targets whose remote side has errors).
    locals: Vec<LocalEntry>,
    /// Each distinct `exclude` list, compiled once.
    compiled_excludes: HashMap<Vec<String>, Excludes>,
}

/// A target's local directory, recorded for the nesting check.
struct LocalEntry {
    origin: String,
    field: String,
    name: String,
    path: PathBuf,
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
            compiled_excludes: HashMap::new(),
        }
    }

    pub fn resolve(&mut self, raw: RawSpec) -> Option<Spec> {
        let workspace = self.workspace(raw.metadata.as_ref());
        let mut p = self.persistence(raw.persistence);
        let enabled = p.enabled.unwrap_or(false);
        let has_targets = !p.sync.is_empty()
            || p.multi_scope_volumes
                .as_ref()
                .is_some_and(|v| !v.environment.is_empty());
        self.switches(&p, enabled, has_targets);

        let remotes = self.remotes(&p.remotes);
        self.default_remote(&p);
        let inputs = self.target_inputs(&mut p, workspace.clone(), &remotes);
        let drafts = self.entries(&p, &inputs);
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

    /// The `persistence` section, or an empty one (with a warning) when missing.
    fn persistence(&mut self, raw: Option<RawPersistence>) -> RawPersistence {
        raw.unwrap_or_else(|| {
            self.warn(
                "persistence",
                "there is no `persistence` section, so nothing is synced",
                "add `persistence:` with `enabled: true`, `remotes:` and `sync:` (see config/local.yaml)",
            );
            RawPersistence::default()
        })
    }

    /// `enabled`, `mode` and `mounts`: what they mean for the targets.
    fn switches(&mut self, p: &RawPersistence, enabled: bool, has_targets: bool) {
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
    }

    fn default_remote(&mut self, p: &RawPersistence) {
        if let Some(d) = &p.default_remote
            && !p.remotes.contains_key(d.as_str())
        {
            let names: Vec<&str> = p.remotes.keys().map(String::as_str).collect();
            self.err(
                "persistence.default_remote",
                format!("remote `{d}` is not defined in persistence.remotes"),
                unknown_remote_hint(d, &names),
            );
        }
    }

    /// What every target entry is resolved against: the workspace, the
    /// remotes and `persistence.defaults`.
    fn target_inputs<'r>(
        &mut self,
        p: &mut RawPersistence,
        workspace: Option<Workspace>,
        remotes: &'r BTreeMap<String, Option<RemoteSpec>>,
    ) -> TargetInputs<'r> {
        let defaults = p.defaults.take().unwrap_or_default();
        let transfers = self.count(
            "persistence.defaults.transfers",
            defaults.transfers,
            DEFAULT_TRANSFERS,
        );
        let checkers = self.count(
            "persistence.defaults.checkers",
            defaults.checkers,
            DEFAULT_CHECKERS,
        );
        let bwlimit = self.bwlimit(
            "persistence.defaults.bwlimit",
            defaults.bwlimit.as_ref(),
            BwLimit::default(),
        );
        TargetInputs {
            workspace,
            remotes,
            remote_names: p.remotes.keys().cloned().collect(),
            default_remote: p.default_remote.as_ref().map(|d| d.to_string()),
            transfers,
            checkers,
            bwlimit,
        }
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
            Some(e) => e.to_string(),
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
            ("org", m.org.as_str()),
            ("project", m.project.as_str()),
            ("environment", env.as_str()),
        ] {
            if let Some(problem) = slug_problem(v) {
                self.err(
                    format!("metadata.{field}"),
                    format!("`{}` {problem}", v.escape_debug()),
                    "use a single path segment such as `acme`, `widget`, `dev-a` (letters, digits, `-`, `_`, `.`)",
                );
                ok = false;
            }
        }
        ok.then(|| Workspace {
            org: m.org.to_string(),
            project: m.project.to_string(),
            env,
        })
    }
}

fn unknown_remote_hint(name: &str, names: &[&str]) -> String {
    // Suggestions compare against every name: skipped for huge lists, so
    // thousands of targets naming thousands of remotes stay fast.
    let suggestion = (names.len() <= 200).then(|| suggest(name, names)).flatten();
    match (suggestion, names.is_empty()) {
        (Some(s), _) => format!("did you mean `{s}`?"),
        (None, true) => "define it under `persistence.remotes`".to_string(),
        (None, false) => format!(
            "use one of the remotes defined under persistence.remotes: {}",
            list_names(names)
        ),
    }
}

/// `a, b, c` for a message: at most 10 names, then how many more.
pub(super) fn list_names<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 10;
    let mut out: Vec<&str> = names.iter().take(SHOWN).map(AsRef::as_ref).collect();
    let more = names.len().saturating_sub(SHOWN);
    let more = format!("and {more} more");
    if names.len() > SHOWN {
        out.push(&more);
    }
    out.join(", ")
}

/// Why `v` cannot be an `{org}`, `{project}` or `{env}`: these become key
/// segments and directory names, so they are one segment of letters,
/// digits, `-`, `_` and `.` (not `.` or `..`), at most [`MAX_SLUG_CHARS`].
fn slug_problem(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        Some("is empty")
    } else if v.contains('/') {
        Some("contains `/`")
    } else if v == "." || v == ".." {
        Some("is not a usable name")
    } else if !v
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("contains characters other than letters, digits, `-`, `_` and `.`")
    } else if v.chars().count() > MAX_SLUG_CHARS {
        Some("is too long (at most 128 characters)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug_problem("dev-a"), None);
        assert!(slug_problem("").is_some());
        assert!(slug_problem("a/b").is_some());
        assert!(slug_problem("..").is_some());
        assert!(slug_problem("a b").is_some());
        assert!(slug_problem("~").is_some());
        assert!(slug_problem("$HOME").is_some());
        assert!(slug_problem("a{b}").is_some());
        assert!(slug_problem(&"a".repeat(129)).is_some());
        assert_eq!(slug_problem("müller-2"), None);
    }
}
