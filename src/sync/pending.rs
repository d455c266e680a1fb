//! The journal of pending transfers: table `pending/<target>` in
//! `sync.redb`, one row per path whose transfer is planned or failed.
//!
//! - **Write-ahead.** Before a pass transfers anything, every planned
//!   upload and download is written as a [`Pending`] row (one
//!   transaction). A row is removed in the same transaction that records
//!   the transfer's base row, so a process killed at any instant leaves
//!   each transfer either recorded in the base or still pending.
//! - **After a crash.** A pass that finds a *planned* row (no pass ended
//!   since it was written) or any pending download lists the remote (a
//!   full reconcile), so nothing planned is forgotten. A pending upload
//!   carries the local entry it stored: a remote object whose size and
//!   mtime metadata equal it is that upload, finished before the crash,
//!   and becomes the base ([`repair`]): deleting the file afterwards
//!   deletes it remotely, and no conflict copy is made of it.
//! - **Failures.** A failed transfer stays pending (attempts, last error)
//!   until a pass settles the path: failed uploads are re-checked by every
//!   pass, path-scoped ones included; failed downloads make every pass a
//!   full reconcile until they succeed. [`PendingSummary`] is what a
//!   pass reports of them (for `status`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::Kind;
use super::layout::RemoteEntry;
use super::plan::Action;
use super::state::{BaseChanges, BaseEntry, BaseMap, StateDb, StateError};

/// Which way a pending transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    Up,
    Down,
}

/// Whether the transfer was only planned or has failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingState {
    /// Written ahead of the transfer; found at a pass's start it means the
    /// process stopped before the transfer's outcome was recorded.
    Planned,
    Failed,
}

/// One pending transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub transfer: Transfer,
    pub state: PendingState,
    /// For an upload: the local entry being stored (its `rid` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<BaseEntry>,
    /// When the transfer was first planned (RFC 3339).
    pub since: String,
    /// Failed attempts so far.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Pending rows by relative path.
pub type PendingMap = BTreeMap<String, Pending>;
/// Changes to the journal: `None` removes the row.
pub type PendingChanges = BTreeMap<String, Option<Pending>>;

/// What a pass reports of its target's pending transfers after it ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PendingSummary {
    /// Transfers still pending (failed, or planned by a pass that stopped).
    pub files: u64,
    pub uploads: u64,
    pub downloads: u64,
    /// When the oldest of them was first planned (RFC 3339).
    pub oldest_since: Option<String>,
    /// The first few, with their last error.
    pub first: Vec<PendingFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingFile {
    pub path: String,
    pub transfer: Transfer,
    pub attempts: u32,
    pub error: Option<String>,
}

impl PendingSummary {
    pub(super) fn of(rows: &PendingMap) -> PendingSummary {
        let mut s = PendingSummary::default();
        for (path, p) in rows {
            s.files += 1;
            match p.transfer {
                Transfer::Up => s.uploads += 1,
                Transfer::Down => s.downloads += 1,
            }
            // RFC 3339 UTC stamps of one writer sort as strings.
            if s.oldest_since.as_ref().is_none_or(|o| p.since < *o) {
                s.oldest_since = Some(p.since.clone());
            }
            if s.first.len() < super::PLAN_FIRST_N {
                s.first.push(PendingFile {
                    path: path.clone(),
                    transfer: p.transfer,
                    attempts: p.attempts,
                    error: p.error.clone(),
                });
            }
        }
        s
    }
}

/// Whether the rows make the pass list the remote (see the module doc).
pub(super) fn forces_full(rows: &PendingMap) -> bool {
    rows.values()
        .any(|p| p.transfer == Transfer::Down || p.state == PendingState::Planned)
}

fn now() -> String {
    crate::clock::rfc3339_now_precise()
}

/// The row written ahead of `a` (`None` for actions that transfer nothing).
pub(super) fn intent(a: &Action, prior: Option<&Pending>) -> Option<Pending> {
    let (transfer, local) = match a {
        Action::Upload { local, .. } => (Transfer::Up, Some(local)),
        Action::Conflict { local, .. } => (Transfer::Up, Some(local)),
        Action::Download { .. } => (Transfer::Down, None),
        _ => return None,
    };
    Some(Pending {
        transfer,
        state: PendingState::Planned,
        local: local.map(|l| BaseEntry::from_local(l, String::new())),
        since: prior.map_or_else(now, |p| p.since.clone()),
        attempts: prior.map_or(0, |p| p.attempts),
        error: prior.and_then(|p| p.error.clone()),
    })
}

/// The row of a transfer that failed with `error`.
pub(super) fn failed(planned: Option<&Pending>, a_transfer: Transfer, error: &str) -> Pending {
    Pending {
        transfer: planned.map_or(a_transfer, |p| p.transfer),
        state: PendingState::Failed,
        local: planned.and_then(|p| p.local.clone()),
        since: planned.map_or_else(now, |p| p.since.clone()),
        attempts: planned.map_or(0, |p| p.attempts).saturating_add(1),
        error: Some(error.to_string()),
    }
}

/// Which way `a` moves data, if it does.
pub(super) fn transfer_of(a: &Action) -> Option<Transfer> {
    match a {
        Action::Upload { .. } | Action::Conflict { .. } => Some(Transfer::Up),
        Action::Download { .. } => Some(Transfer::Down),
        _ => None,
    }
}

/// Uploads that finished before a crash: for each pending upload whose
/// remote object matches the entry it stored (same kind and size, mtime
/// metadata within the planner's tolerance, or the same link target), the
/// base row that its success would have written. Paths whose base already
/// says so are skipped.
pub(super) fn repair(
    rows: &PendingMap,
    base: &BaseMap,
    remote: &BTreeMap<String, RemoteEntry>,
) -> BaseChanges {
    let mut out = BaseChanges::new();
    for (rel, p) in rows {
        let (Transfer::Up, Some(l)) = (p.transfer, &p.local) else {
            continue;
        };
        let Some(r) = remote.get(rel) else { continue };
        let stored = r.kind == l.kind
            && match l.kind {
                Kind::File => {
                    r.size == l.size
                        && r.mtime_ns
                            .is_some_and(|m| super::layout::mtime_close(l.mtime_ns, m))
                }
                Kind::Symlink => r.link.is_some() && r.link == l.link,
            };
        if !stored {
            continue;
        }
        let row = BaseEntry {
            rid: r.rid.clone(),
            ..l.clone()
        };
        if base.get(rel) != Some(&row) {
            out.insert(rel.clone(), Some(row));
        }
    }
    out
}

fn pending_table(target: &str) -> String {
    format!("pending/{target}")
}

impl StateDb {
    /// Every pending row of `target`.
    pub fn load_pending(&self, target: &str) -> Result<PendingMap, StateError> {
        let mut out = BTreeMap::new();
        self.for_each_row(&pending_table(target), |k, v| {
            // An undecodable row is dropped: the next full pass finds the
            // path again from both sides.
            if let Ok(p) = serde_json::from_slice::<Pending>(v) {
                out.insert(k.to_string(), p);
            }
        })?;
        Ok(out)
    }

    /// Apply base and journal changes in one transaction.
    pub fn apply_with_pending(
        &self,
        target: &str,
        base: &BaseChanges,
        pending: &PendingChanges,
    ) -> Result<(), StateError> {
        if base.is_empty() && pending.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        self.apply_in(&txn, target, base)?;
        self.write_rows(&txn, &pending_table(target), pending)?;
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::scan::LocalEntry;

    fn local(size: u64, mtime: i64) -> LocalEntry {
        LocalEntry {
            kind: Kind::File,
            size,
            mtime_ns: mtime,
            mode: 0o644,
            link: None,
        }
    }

    fn remote(size: u64, mtime: i64, rid: &str) -> RemoteEntry {
        RemoteEntry {
            kind: Kind::File,
            size,
            rid: rid.into(),
            mtime_ns: Some(mtime),
            mode: Some(0o644),
            link: None,
        }
    }

    fn upload(rel: &str, l: &LocalEntry) -> Action {
        Action::Upload {
            rel: rel.into(),
            local: l.clone(),
            replaces: None,
        }
    }

    #[test]
    fn journal_round_trips_with_the_base_in_one_transaction() {
        let tmp = tempfile::tempdir().unwrap();
        let db = StateDb::open(&tmp.path().join("s.redb")).unwrap();
        assert!(db.load_pending("t").unwrap().is_empty());
        let l = local(3, 5);
        let p = intent(&upload("a", &l), None).unwrap();
        let ahead = PendingChanges::from([("a".to_string(), Some(p.clone()))]);
        db.apply_with_pending("t", &BaseChanges::new(), &ahead)
            .unwrap();
        assert_eq!(db.load_pending("t").unwrap()["a"], p);
        assert!(forces_full(&db.load_pending("t").unwrap()));
        // Success: base row written and journal row removed together.
        let base =
            BaseChanges::from([("a".to_string(), Some(BaseEntry::from_local(&l, "e".into())))]);
        let clear = PendingChanges::from([("a".to_string(), None)]);
        db.apply_with_pending("t", &base, &clear).unwrap();
        assert!(db.load_pending("t").unwrap().is_empty());
        assert_eq!(db.load("t").unwrap().len(), 1);
    }

    #[test]
    fn a_failed_upload_keeps_its_start_and_counts_attempts_and_does_not_force_a_listing() {
        let l = local(3, 5);
        let planned = intent(&upload("a", &l), None).unwrap();
        let f1 = failed(Some(&planned), Transfer::Up, "boom");
        assert_eq!(f1.attempts, 1);
        assert_eq!(f1.since, planned.since);
        let again = intent(&upload("a", &l), Some(&f1)).unwrap();
        let f2 = failed(Some(&again), Transfer::Up, "boom");
        assert_eq!((f2.attempts, f2.state), (2, PendingState::Failed));
        let rows = PendingMap::from([("a".to_string(), f2)]);
        assert!(!forces_full(&rows));
        let down = failed(None, Transfer::Down, "500");
        assert!(forces_full(&PendingMap::from([("b".to_string(), down)])));
        let s = PendingSummary::of(&rows);
        assert_eq!((s.files, s.uploads, s.downloads), (1, 1, 0));
        assert_eq!(s.oldest_since, Some(planned.since));
    }

    #[test]
    fn an_upload_found_stored_after_a_crash_becomes_the_base() {
        let l = local(3, 5_000_000_000);
        let rows = PendingMap::from([
            (
                "stored".to_string(),
                intent(&upload("stored", &l), None).unwrap(),
            ),
            (
                "other".to_string(),
                intent(&upload("other", &l), None).unwrap(),
            ),
            (
                "absent".to_string(),
                intent(&upload("absent", &l), None).unwrap(),
            ),
        ]);
        let remote_view = BTreeMap::from([
            ("stored".to_string(), remote(3, 5_000_000_000, "\"e1\"")),
            // Another writer's version (other size): not ours.
            ("other".to_string(), remote(4, 5_000_000_000, "\"e2\"")),
        ]);
        let got = repair(&rows, &BaseMap::new(), &remote_view);
        assert_eq!(
            got,
            BaseChanges::from([(
                "stored".to_string(),
                Some(BaseEntry::from_local(&l, "\"e1\"".into()))
            )])
        );
        // Already the base: nothing to repair.
        let base = BaseMap::from([(
            "stored".to_string(),
            BaseEntry::from_local(&l, "\"e1\"".into()),
        )]);
        assert!(repair(&rows, &base, &remote_view).is_empty());
    }
}
