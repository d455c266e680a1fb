//! What a pass reports: [`PassReport`] (what happened), [`PlanSummary`]
//! (what was planned, per kind of action) and the [`PassObserver`]
//! progress callbacks front ends implement.

use std::collections::BTreeSet;

use serde::Serialize;

use super::pending::PendingSummary;
use super::root::RootGuard;

/// How many paths per action a [`PlanSummary`] lists.
pub const PLAN_FIRST_N: usize = 10;

/// How many undecryptable names an [`Undecryptable`] lists.
pub const UNDECRYPTABLE_FIRST_N: usize = 20;

/// The outcome of one pass over one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassReport {
    pub target: String,
    pub uploaded: u64,
    pub downloaded: u64,
    pub deleted_remote: u64,
    pub deleted_local: u64,
    /// Conflict copies created (their relative paths).
    pub conflicts: Vec<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Old remote versions this pass kept in `.coltec/trash/` (what it
    /// overwrote or deleted): the trash's growth.
    pub trashed: u64,
    pub failed: Vec<FailedFile>,
    /// Paths deliberately not synced (FIFOs, sockets, devices; in a local
    /// remote also symlinks coltecd did not write): each path once.
    pub skipped: Vec<SkippedFile>,
    /// Whether this pass listed the remote (a full reconcile).
    pub remote_listed: bool,
    pub plan: PlanSummary,
    /// Set when the local root was missing, empty or not the directory
    /// last synced while the base had files: the pass restored instead of
    /// deleting. `status` should show [`RootGuard::describe`] (a warning
    /// that stays until a pass runs without it).
    pub root_guard: Option<RootGuard>,
    /// The target's transfers still pending after this pass (failed, or
    /// interrupted), retried by every later pass until they succeed.
    /// `status` should show the count, the oldest's age and the first
    /// paths with their error, and not call the target "up to date"
    /// while `files > 0`.
    pub pending: PendingSummary,
    /// Objects in a crypt target whose names do not decrypt with its
    /// password and salt, as of the last full reconcile: never deleted,
    /// trashed or downloaded (a warning: the pass still succeeds).
    pub undecryptable: Undecryptable,
}

/// Objects of a crypt target whose names do not decrypt: how many, and
/// the first [`UNDECRYPTABLE_FIRST_N`] raw (encrypted, not secret) keys,
/// relative to the target's physical directory.
///
/// A warning, not a failure (the exit status and the daemon's health are
/// unchanged): they are not this target's data as configured (another
/// password or salt, another tool), everything that decrypts was synced,
/// and a failing status would stay failing until a human removes objects
/// coltecd itself must never delete. rclone skips such names too; the
/// difference here is that they are named in `sync`/`restore` output,
/// their `--json` and `status`, so that they are not missed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Undecryptable {
    pub count: u64,
    pub first: Vec<String>,
}

impl Undecryptable {
    /// The summary of `keys` (sorted, each once).
    pub(super) fn of(keys: &[String]) -> Undecryptable {
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        Undecryptable {
            count: keys.len() as u64,
            first: keys
                .into_iter()
                .take(UNDECRYPTABLE_FIRST_N)
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Warn about them (once per change: a pass logs what it found).
    pub(super) fn log(&self, target: &str) {
        if !self.is_empty() {
            tracing::warn!(
                target_name = %target,
                objects = self.count,
                first = ?self.first,
                "{}", self.advice()
            );
        }
    }

    /// What they are and what to do about them.
    pub fn advice(&self) -> String {
        format!(
            "{} object(s) in the crypt remote have names that do not decrypt with this \
             target's password and salt; they are left as they are (never downloaded, \
             trashed or deleted). They were written with another password/salt or by \
             another tool: decrypt them with the right rclone crypt config, or move them \
             out of the target's prefix",
            self.count
        )
    }
}

impl PassReport {
    /// An empty report for `target`.
    pub(super) fn new(target: &str, remote_listed: bool) -> PassReport {
        PassReport {
            target: target.to_string(),
            remote_listed,
            ..PassReport::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedFile {
    pub path: String,
    pub reason: String,
}

/// A path that is deliberately not synced, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

impl SkippedFile {
    /// A local entry that is neither a file, a symlink nor a directory.
    pub(super) fn special(path: String, md: &std::fs::Metadata) -> SkippedFile {
        use std::os::unix::fs::FileTypeExt;
        let ft = md.file_type();
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else {
            "not a regular file"
        };
        SkippedFile {
            path,
            reason: format!("{what}; only regular files and symlinks are synced"),
        }
    }
}

/// The paths a target skips, as last seen on each side, so each is logged
/// once when it appears rather than at every pass.
#[derive(Debug, Default)]
pub(super) struct SkipLog {
    local: BTreeSet<SkippedFile>,
    remote: BTreeSet<SkippedFile>,
}

impl SkipLog {
    /// Take what a pass found on one side; `complete`: it looked at the
    /// whole side (otherwise earlier findings are kept). Logs new paths.
    pub(super) fn note(
        &mut self,
        target: &str,
        found: Vec<SkippedFile>,
        complete: bool,
        remote: bool,
    ) {
        let set = if remote {
            &mut self.remote
        } else {
            &mut self.local
        };
        let found: BTreeSet<SkippedFile> = found.into_iter().collect();
        for s in found.difference(set) {
            tracing::warn!(target_name = %target, path = ?s.path, "not synced: {}", s.reason);
        }
        if complete {
            *set = found;
        } else {
            set.extend(found);
        }
    }

    /// Every path currently skipped, each once.
    pub(super) fn all(&self) -> Vec<SkippedFile> {
        self.local.union(&self.remote).cloned().collect()
    }
}

/// Counts, bytes and the first few paths of one kind of action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionCount {
    pub files: u64,
    pub bytes: u64,
    pub first: Vec<String>,
}

impl ActionCount {
    pub(super) fn add(&mut self, rel: &str, bytes: u64) {
        self.files = self.files.saturating_add(1);
        // Sizes come from the remote's listing: saturate, never panic.
        self.bytes = self.bytes.saturating_add(bytes);
        if self.first.len() < PLAN_FIRST_N {
            self.first.push(rel.to_string());
        }
    }

    /// Count `other`'s actions too (a plan that arrives in batches).
    fn merge(&mut self, other: ActionCount) {
        self.files = self.files.saturating_add(other.files);
        self.bytes = self.bytes.saturating_add(other.bytes);
        let room = PLAN_FIRST_N.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
    }
}

/// What a pass planned (and, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub upload: ActionCount,
    pub download: ActionCount,
    pub delete_remote: ActionCount,
    pub delete_local: ActionCount,
    pub conflict: ActionCount,
    /// Already identical on both sides: recorded without transfer.
    pub adopt: ActionCount,
}

impl PlanSummary {
    /// Add a later batch of the same plan.
    pub(super) fn merge(&mut self, other: PlanSummary) {
        self.upload.merge(other.upload);
        self.download.merge(other.download);
        self.delete_remote.merge(other.delete_remote);
        self.delete_local.merge(other.delete_local);
        self.conflict.merge(other.conflict);
        self.adopt.merge(other.adopt);
    }

    /// Whether the plan moves or deletes anything.
    pub fn is_empty(&self) -> bool {
        self.totals().files == 0
    }

    /// What a pass's progress counts toward: every action that moves or
    /// deletes something, and the bytes it moves. The one definition
    /// front ends use (`coltecd sync`'s bar, the daemon's `status`).
    /// Conflicts count both versions (each is transferred at least once);
    /// adoptions move nothing.
    pub fn totals(&self) -> PlanTotals {
        PlanTotals {
            files: [
                &self.upload,
                &self.download,
                &self.delete_remote,
                &self.delete_local,
                &self.conflict,
            ]
            .iter()
            .fold(0u64, |n, c| n.saturating_add(c.files)),
            bytes: [&self.upload, &self.download, &self.conflict]
                .iter()
                .fold(0u64, |n, c| n.saturating_add(c.bytes)),
        }
    }
}

/// See [`PlanSummary::totals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanTotals {
    pub files: u64,
    pub bytes: u64,
}

/// Progress callbacks for interactive front ends (all optional).
pub trait PassObserver: Send + Sync {
    /// The plan is known; transfers start.
    fn planned(&self, _target: &str, _plan: &PlanSummary) {}
    /// `n` more bytes moved (either direction).
    fn bytes(&self, _n: u64) {}
    /// One more action finished.
    fn file_done(&self) {}
}

/// The observer of passes nobody watches.
pub(super) struct NoObserver;
impl PassObserver for NoObserver {}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(files: u64, bytes: u64) -> ActionCount {
        ActionCount {
            files,
            bytes,
            first: Vec::new(),
        }
    }

    #[test]
    fn totals_count_conflict_bytes_and_deletes_but_not_adoptions() {
        let plan = PlanSummary {
            upload: count(1, 10),
            download: count(2, 200),
            delete_remote: count(3, 3000),
            delete_local: count(4, 40000),
            conflict: count(5, 500000),
            adopt: count(6, 6000000),
        };
        assert_eq!(
            plan.totals(),
            PlanTotals {
                files: 1 + 2 + 3 + 4 + 5,
                bytes: 10 + 200 + 500000
            }
        );
        assert!(!plan.is_empty());
        let adopt_only = PlanSummary {
            adopt: count(6, 60),
            ..PlanSummary::default()
        };
        assert!(adopt_only.is_empty());
    }
}
