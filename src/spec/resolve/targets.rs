//! Targets: `persistence.sync[]` and `multi_scope_volumes.environment[]`
//! entries, unified as an [`Entry`] and resolved against [`TargetInputs`]:
//! name, local directory, remote (explicit, default, or the only one),
//! `remote_path` with its placeholders, direction, interval, excludes and
//! transfer settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::values::fmt_duration;
use super::{LocalEntry, Resolver, list_names, unknown_remote_hint};
use crate::spec::defaults::{
    DEFAULT_INTERVAL, DEFAULT_PRIORITY, MAX_INTERVAL, MAX_PRIORITY, MIN_INTERVAL,
};
use crate::spec::expand::{normalize, resolve_local_path};
use crate::spec::filter::Excludes;
use crate::spec::model::*;
use crate::spec::raw::*;

/// What every target entry is resolved against: the workspace, the remotes
/// and the spec-wide `persistence.defaults`.
pub(super) struct TargetInputs<'a> {
    pub workspace: Option<Workspace>,
    pub remotes: &'a BTreeMap<String, Option<RemoteSpec>>,
    pub remote_names: Vec<String>,
    pub default_remote: Option<String>,
    pub transfers: usize,
    pub checkers: usize,
    pub bwlimit: BwLimit,
}

/// A target while it is being resolved, with where it came from.
pub(super) struct Draft {
    pub origin: String,
    pub target: Target,
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

impl<'a> Entry<'a> {
    fn sync(i: usize, s: &'a RawSync) -> Self {
        Entry {
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
        }
    }

    fn volume(i: usize, vol: &'a RawVolume) -> Self {
        Entry {
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
        }
    }
}

impl Resolver<'_> {
    /// Every sync entry, then every volume; a target with errors is left out
    /// (its errors are reported).
    pub(super) fn entries(&mut self, p: &RawPersistence, inputs: &TargetInputs<'_>) -> Vec<Draft> {
        let mut drafts = Vec::new();
        for (i, s) in p.sync.iter().enumerate() {
            if let Some(d) = self.target(inputs, Entry::sync(i, s)) {
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
                if let Some(d) = self.target(inputs, Entry::volume(i, vol)) {
                    drafts.push(d);
                }
            }
        }
        drafts
    }

    fn target(&mut self, inputs: &TargetInputs<'_>, e: Entry<'_>) -> Option<Draft> {
        let o = &e.origin;
        if let Some(problem) = name_problem(e.name) {
            self.err(
                format!("{o}.name"),
                format!("`{}` {problem}", e.name),
                "use letters, digits, `-`, `_` and `.`, e.g. `agent-context`",
            );
        }
        let local_path = self.target_local(&e);
        let remote = self.target_remote(inputs, &e);
        let remote_path = self.remote_path(inputs, &e, remote.flatten());
        let direction = self.direction(&e);
        let interval = self.interval(&format!("{o}.interval"), e.interval);
        let priority = self.priority(&format!("{o}.priority"), e.priority);
        let excludes = self.excludes(&e);
        let transfers = self.count(&format!("{o}.transfers"), e.transfers, inputs.transfers);
        let checkers = self.count(&format!("{o}.checkers"), e.checkers, inputs.checkers);
        let bwlimit = self.bwlimit(&format!("{o}.bwlimit"), e.bwlimit, inputs.bwlimit);

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
                priority,
                excludes,
                transfers,
                checkers,
                bwlimit,
            },
        })
    }

    /// `interval`: from [`MIN_INTERVAL`] to [`MAX_INTERVAL`] (default
    /// [`DEFAULT_INTERVAL`]).
    fn interval(&mut self, field: &str, v: Option<&NumOrStr>) -> Duration {
        let interval = self.duration(field, v, DEFAULT_INTERVAL);
        if interval < MIN_INTERVAL {
            self.err(
                field,
                format!(
                    "{} is below the minimum of {}",
                    fmt_duration(interval),
                    fmt_duration(MIN_INTERVAL)
                ),
                "set `interval: 10` or more (whole seconds, or a duration such as `30s`, `5m`); file changes are picked up from events anyway",
            );
        } else if interval > MAX_INTERVAL {
            self.err(
                field,
                format!(
                    "{} is above the maximum of {}",
                    fmt_duration(interval),
                    fmt_duration(MAX_INTERVAL)
                ),
                "use at most `7d`; file changes are picked up from events anyway, the interval is only a safety net",
            );
            return DEFAULT_INTERVAL;
        }
        interval
    }

    /// `priority`: 0 ..= [`MAX_PRIORITY`] (default [`DEFAULT_PRIORITY`]).
    fn priority(&mut self, field: &str, v: Option<u32>) -> u32 {
        match v {
            Some(p) if p > MAX_PRIORITY => {
                self.err(
                    field,
                    format!("{p} is above the maximum of {MAX_PRIORITY}"),
                    format!(
                        "use 0 to {MAX_PRIORITY}; lower runs first (default {DEFAULT_PRIORITY})"
                    ),
                );
                DEFAULT_PRIORITY
            }
            Some(p) => p,
            None => DEFAULT_PRIORITY,
        }
    }

    /// The local directory, recorded for the nesting check; never `/`.
    fn target_local(&mut self, e: &Entry<'_>) -> Option<PathBuf> {
        let o = &e.origin;
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
        local_path
    }

    /// The remote: explicit, else `default_remote`, else the only remote
    /// there is. `None`: no usable name (reported); `Some(None)`: the remote
    /// exists but had its own errors.
    fn target_remote<'r>(
        &mut self,
        inputs: &TargetInputs<'r>,
        e: &Entry<'_>,
    ) -> Option<Option<&'r RemoteSpec>> {
        let o = &e.origin;
        let remote_name = match (e.remote, &inputs.default_remote) {
            (Some(r), _) => Some(r.to_string()),
            (None, Some(d)) => Some(d.clone()),
            (None, None) if inputs.remote_names.len() == 1 => inputs.remote_names.first().cloned(),
            // No remotes at all: reported once for the whole spec, in `resolve`.
            (None, None) if inputs.remote_names.is_empty() => None,
            (None, None) => {
                self.err(
                    format!("{o}.remote"),
                    format!("target `{}` has no remote", e.name),
                    format!(
                        "add `remote: <name>` here or set `persistence.default_remote` (defined remotes: {})",
                        list_names(&inputs.remote_names)
                    ),
                );
                None
            }
        };
        let n = remote_name?;
        match inputs.remotes.get(&n) {
            Some(r) => Some(r.as_ref()),
            None => {
                if e.remote.is_some() {
                    let names: Vec<&str> = inputs.remote_names.iter().map(String::as_str).collect();
                    self.err(
                        format!("{o}.remote"),
                        format!("remote `{n}` is not defined in persistence.remotes"),
                        unknown_remote_hint(&n, &names),
                    );
                }
                None
            }
        }
    }

    /// `sync:` (default bidirectional); `read_only: true` means pull-only.
    fn direction(&mut self, e: &Entry<'_>) -> Direction {
        match (e.read_only, e.direction) {
            (Some(true), None | Some(RawDirection::PullOnly)) => Direction::PullOnly,
            (Some(true), Some(d)) => {
                self.err(
                    format!("{}.read_only", e.origin),
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
        }
    }

    /// `exclude:` compiled; every bad glob is reported.
    /// Compiling globs is most of the cost of a big spec, and targets
    /// usually share their `exclude` lists: each distinct list is compiled
    /// once per load.
    fn excludes(&mut self, e: &Entry<'_>) -> Excludes {
        if let Some(x) = self.compiled_excludes.get(e.exclude) {
            return x.clone();
        }
        match Excludes::new(e.exclude.to_vec()) {
            Ok(x) => {
                self.compiled_excludes.insert(e.exclude.to_vec(), x.clone());
                x
            }
            Err(bad) => {
                for b in bad {
                    self.err(
                        format!("{}.exclude[{}]", e.origin, b.index),
                        format!("`{}` is not a valid glob: {}", b.pattern, b.reason),
                        "use rclone glob syntax: `*` within a name, `**` across directories, `[abc]`, `{a,b}`; a leading `/` anchors at the sync root",
                    );
                }
                Excludes::default()
            }
        }
    }

    /// `remote_path` (default `{org}/{project}/{env}/<name>`) with its
    /// placeholders substituted: a clean key, or an absolute directory on a
    /// local remote.
    fn remote_path(
        &mut self,
        inputs: &TargetInputs<'_>,
        e: &Entry<'_>,
        remote: Option<&RemoteSpec>,
    ) -> Option<String> {
        let field = format!("{}.remote_path", e.origin);
        let raw = match e.remote_path {
            Some(r) => r.to_string(),
            None => format!("{{org}}/{{project}}/{{env}}/{}", e.name),
        };
        let expanded = self.expand(&field, &raw)?;
        let ws = inputs.workspace.as_ref()?;
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
}

fn raw_direction(d: RawDirection) -> &'static str {
    match d {
        RawDirection::Bidirectional => "bidirectional",
        RawDirection::PushOnly => "push-only",
        RawDirection::PullOnly => "pull-only",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_problem("agent-context"), None);
        assert_eq!(name_problem("v1.2_x"), None);
        assert!(name_problem(".hidden").is_some());
        assert!(name_problem("a b").is_some());
    }
}
