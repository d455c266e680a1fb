//! The 3-way planner: local scan × base (last agreed state) × remote view →
//! actions. Pure and synchronous, so every rule is unit-tested here.
//!
//! Rules (L = local, B = base, R = remote; "changed" = differs from B):
//! - No base (first sync of a path, restore): never deletes. Only-local is
//!   uploaded (if the direction writes the remote), only-remote is
//!   downloaded (if it writes local). Both present and equal (size + mtime,
//!   or link target) → adopted without transfer. Both present and different:
//!   push-only uploads, pull-only downloads, bidirectional downloads when the
//!   remote is newer (keeping the local file as a conflict copy) and
//!   otherwise keeps both as a conflict.
//! - With a base: a side that did not change follows the side that did
//!   (upload, download, delete). Both changed to the same content → adopt.
//!   Both changed differently: push-only → local wins, pull-only → remote
//!   wins, bidirectional → conflict: the local version stays under its name,
//!   the remote version is saved beside it as a conflict copy, and a local
//!   delete never wins over a remote modification (the file is restored).

use std::collections::{BTreeMap, BTreeSet};

use super::kind::Kind;
use super::layout::{RemoteEntry, mtime_close};
use super::report::PlanSummary;
use super::scan::LocalEntry;
use super::state::BaseEntry;
use crate::spec::Direction;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store the local entry; `replaces` is what the remote holds now.
    Upload {
        rel: String,
        local: LocalEntry,
        replaces: Option<RemoteEntry>,
    },
    /// Fetch the remote entry. `local` is what must still be on disk for the
    /// download to replace it; with `keep_local`, the local file is first
    /// renamed to a conflict copy.
    Download {
        rel: String,
        remote: RemoteEntry,
        local: Option<LocalEntry>,
        keep_local: bool,
    },
    DeleteRemote {
        rel: String,
        remote: RemoteEntry,
    },
    DeleteLocal {
        rel: String,
        local: LocalEntry,
    },
    /// Both changed: remote → conflict copy next to the file, then local is uploaded.
    Conflict {
        rel: String,
        local: LocalEntry,
        remote: RemoteEntry,
    },
    /// Both sides already agree: record the base, transfer nothing.
    Adopt {
        rel: String,
        local: LocalEntry,
        remote: RemoteEntry,
    },
    /// Gone on both sides: drop the base.
    Forget {
        rel: String,
    },
}

impl Action {
    pub fn rel(&self) -> &str {
        match self {
            Action::Upload { rel, .. }
            | Action::Download { rel, .. }
            | Action::DeleteRemote { rel, .. }
            | Action::DeleteLocal { rel, .. }
            | Action::Conflict { rel, .. }
            | Action::Adopt { rel, .. }
            | Action::Forget { rel } => rel,
        }
    }
}

/// Whether local and remote hold the same thing (for adoption).
pub fn same(l: &LocalEntry, r: &RemoteEntry) -> bool {
    if l.kind != r.kind {
        return false;
    }
    match l.kind {
        Kind::File => l.size == r.size && r.mtime_ns.is_some_and(|m| mtime_close(l.mtime_ns, m)),
        Kind::Symlink => r.link.is_some() && r.link == l.link,
    }
}

fn remote_unchanged(r: &RemoteEntry, b: &BaseEntry) -> bool {
    r.kind == b.kind && r.rid == b.rid
}

/// Plan the given paths.
pub fn plan(
    direction: Direction,
    paths: &BTreeSet<String>,
    local: &BTreeMap<String, LocalEntry>,
    base: &BTreeMap<String, BaseEntry>,
    remote: &BTreeMap<String, RemoteEntry>,
) -> Vec<Action> {
    let m = Mode {
        push: direction.writes_remote(),
        pull: direction.writes_local(),
    };
    paths
        .iter()
        .filter_map(|rel| {
            let (l, r) = (local.get(rel), remote.get(rel));
            match base.get(rel) {
                None => first_sync(m, rel, l, r),
                Some(b) => with_base(m, rel, l, b, r),
            }
        })
        .collect()
}

/// Which sides a direction writes.
#[derive(Clone, Copy)]
struct Mode {
    push: bool,
    pull: bool,
}

impl Mode {
    fn bidi(self) -> bool {
        self.push && self.pull
    }
}

/// No base: never deletes.
fn first_sync(
    m: Mode,
    rel: &str,
    l: Option<&LocalEntry>,
    r: Option<&RemoteEntry>,
) -> Option<Action> {
    match (l, r) {
        (None, None) => None,
        (Some(l), None) => m.push.then(|| upload(rel, l, None)),
        (None, Some(r)) => m.pull.then(|| download(rel, r, None, false)),
        (Some(l), Some(r)) if same(l, r) => Some(adopt(rel, l, r)),
        (Some(l), Some(r)) => Some(if m.bidi() {
            if r.mtime_ns.is_some_and(|t| t > l.mtime_ns) {
                download(rel, r, Some(l), true)
            } else {
                conflict(rel, l, r)
            }
        } else if m.push {
            upload(rel, l, Some(r))
        } else {
            download(rel, r, Some(l), false)
        }),
    }
}

/// With a base: a side that did not change follows the side that did.
fn with_base(
    m: Mode,
    rel: &str,
    l: Option<&LocalEntry>,
    b: &BaseEntry,
    r: Option<&RemoteEntry>,
) -> Option<Action> {
    let local_changed = !l.is_some_and(|l| b.matches_local(l));
    let remote_changed = !r.is_some_and(|r| remote_unchanged(r, b));
    match (local_changed, remote_changed) {
        (false, false) => None,
        (true, false) => local_changed_only(m, rel, l, r),
        (false, true) => remote_changed_only(m, rel, l, r),
        (true, true) => both_changed(m, rel, l, r),
    }
}

fn local_changed_only(
    m: Mode,
    rel: &str,
    l: Option<&LocalEntry>,
    r: Option<&RemoteEntry>,
) -> Option<Action> {
    match (l, r) {
        (None, Some(r)) => Some(if m.push {
            delete_remote(rel, r)
        } else {
            download(rel, r, None, false)
        }),
        (Some(l), Some(r)) => Some(if m.push {
            upload(rel, l, Some(r))
        } else {
            download(rel, r, Some(l), false)
        }),
        // An unchanged remote implies r is Some.
        _ => None,
    }
}

fn remote_changed_only(
    m: Mode,
    rel: &str,
    l: Option<&LocalEntry>,
    r: Option<&RemoteEntry>,
) -> Option<Action> {
    match (l, r) {
        (Some(l), None) => Some(if m.pull {
            delete_local(rel, l)
        } else {
            upload(rel, l, None)
        }),
        (Some(l), Some(r)) => Some(if m.pull {
            download(rel, r, Some(l), false)
        } else {
            upload(rel, l, Some(r))
        }),
        // An unchanged local side implies l is Some.
        _ => None,
    }
}

fn both_changed(
    m: Mode,
    rel: &str,
    l: Option<&LocalEntry>,
    r: Option<&RemoteEntry>,
) -> Option<Action> {
    Some(match (l, r) {
        (None, None) => Action::Forget {
            rel: rel.to_string(),
        },
        (None, Some(r)) if m.pull => download(rel, r, None, false),
        (None, Some(r)) => delete_remote(rel, r),
        (Some(l), None) if m.push => upload(rel, l, None),
        (Some(l), None) => delete_local(rel, l),
        (Some(l), Some(r)) if same(l, r) => adopt(rel, l, r),
        (Some(l), Some(r)) if m.bidi() => conflict(rel, l, r),
        (Some(l), Some(r)) if m.push => upload(rel, l, Some(r)),
        (Some(l), Some(r)) => download(rel, r, Some(l), false),
    })
}

fn upload(rel: &str, l: &LocalEntry, r: Option<&RemoteEntry>) -> Action {
    Action::Upload {
        rel: rel.to_string(),
        local: l.clone(),
        replaces: r.cloned(),
    }
}

/// What a pull plans for a remote file with nothing local and no base at
/// its path (see [`first_sync`]): fetch it. A restore that starts
/// downloading while it lists plans these one by one.
pub(super) fn fetch_new(rel: &str, r: &RemoteEntry) -> Action {
    download(rel, r, None, false)
}

fn download(rel: &str, r: &RemoteEntry, l: Option<&LocalEntry>, keep_local: bool) -> Action {
    Action::Download {
        rel: rel.to_string(),
        remote: r.clone(),
        local: l.cloned(),
        keep_local,
    }
}

fn adopt(rel: &str, l: &LocalEntry, r: &RemoteEntry) -> Action {
    Action::Adopt {
        rel: rel.to_string(),
        local: l.clone(),
        remote: r.clone(),
    }
}

fn conflict(rel: &str, l: &LocalEntry, r: &RemoteEntry) -> Action {
    Action::Conflict {
        rel: rel.to_string(),
        local: l.clone(),
        remote: r.clone(),
    }
}

fn delete_remote(rel: &str, r: &RemoteEntry) -> Action {
    Action::DeleteRemote {
        rel: rel.to_string(),
        remote: r.clone(),
    }
}

fn delete_local(rel: &str, l: &LocalEntry) -> Action {
    Action::DeleteLocal {
        rel: rel.to_string(),
        local: l.clone(),
    }
}

/// Counts, bytes and first paths of each kind of action in `actions`.
pub(super) fn summarize(actions: &[Action]) -> PlanSummary {
    let mut s = PlanSummary::default();
    for a in actions {
        match a {
            Action::Upload { rel, local, .. } => s.upload.add(rel, local.size),
            Action::Download { rel, remote, .. } => s.download.add(rel, remote.size),
            Action::DeleteRemote { rel, remote } => s.delete_remote.add(rel, remote.size),
            Action::DeleteLocal { rel, local } => s.delete_local.add(rel, local.size),
            Action::Conflict { rel, local, remote } => {
                s.conflict.add(rel, local.size.saturating_add(remote.size))
            }
            Action::Adopt { rel, local, .. } => s.adopt.add(rel, local.size),
            Action::Forget { .. } => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, mtime: i64) -> LocalEntry {
        LocalEntry {
            kind: Kind::File,
            size,
            mtime_ns: mtime,
            mode: 0o644,
            link: None,
        }
    }
    fn rfile(size: u64, mtime: i64, rid: &str) -> RemoteEntry {
        RemoteEntry {
            kind: Kind::File,
            size,
            rid: rid.into(),
            mtime_ns: Some(mtime),
            mode: Some(0o644),
            link: None,
        }
    }
    fn base(size: u64, mtime: i64, rid: &str) -> BaseEntry {
        BaseEntry::from_local(&file(size, mtime), rid.into())
    }

    fn run(
        d: Direction,
        l: Option<LocalEntry>,
        b: Option<BaseEntry>,
        r: Option<RemoteEntry>,
    ) -> Vec<Action> {
        let mut lm = BTreeMap::new();
        let mut bm = BTreeMap::new();
        let mut rm = BTreeMap::new();
        lm.extend(l.map(|l| ("f".to_string(), l)));
        bm.extend(b.map(|b| ("f".to_string(), b)));
        rm.extend(r.map(|r| ("f".to_string(), r)));
        let paths = BTreeSet::from(["f".to_string()]);
        plan(d, &paths, &lm, &bm, &rm)
    }

    use Direction::*;

    #[test]
    fn unchanged_does_nothing() {
        for d in [Bidirectional, PushOnly, PullOnly] {
            let a = run(
                d,
                Some(file(1, 10)),
                Some(base(1, 10, "e")),
                Some(rfile(1, 10, "e")),
            );
            assert!(a.is_empty(), "{d}: {a:?}");
        }
    }

    #[test]
    fn no_base_never_deletes() {
        for d in [Bidirectional, PushOnly, PullOnly] {
            for a in run(d, Some(file(1, 10)), None, None).into_iter().chain(run(
                d,
                None,
                None,
                Some(rfile(1, 10, "e")),
            )) {
                assert!(
                    !matches!(a, Action::DeleteLocal { .. } | Action::DeleteRemote { .. }),
                    "{d}: {a:?}"
                );
            }
        }
        assert!(matches!(
            run(PushOnly, Some(file(1, 10)), None, None)[..],
            [Action::Upload { .. }]
        ));
        assert!(run(PullOnly, Some(file(1, 10)), None, None).is_empty());
        assert!(run(PushOnly, None, None, Some(rfile(1, 10, "e"))).is_empty());
    }

    #[test]
    fn no_base_equal_is_adopted() {
        let a = run(
            Bidirectional,
            Some(file(3, 10)),
            None,
            Some(rfile(3, 10, "e")),
        );
        assert!(matches!(a[..], [Action::Adopt { .. }]));
    }

    #[test]
    fn no_base_bidirectional_newer_remote_downloads_keeping_local() {
        let a = run(
            Bidirectional,
            Some(file(3, 10)),
            None,
            Some(rfile(4, 20, "e")),
        );
        assert!(
            matches!(
                a[..],
                [Action::Download {
                    keep_local: true,
                    ..
                }]
            ),
            "{a:?}"
        );
        let a = run(
            Bidirectional,
            Some(file(3, 30)),
            None,
            Some(rfile(4, 20, "e")),
        );
        assert!(matches!(a[..], [Action::Conflict { .. }]), "{a:?}");
    }

    #[test]
    fn one_sided_changes_follow_direction() {
        // local modified
        let a = run(
            Bidirectional,
            Some(file(2, 11)),
            Some(base(1, 10, "e")),
            Some(rfile(1, 10, "e")),
        );
        assert!(matches!(a[..], [Action::Upload { .. }]));
        let a = run(
            PullOnly,
            Some(file(2, 11)),
            Some(base(1, 10, "e")),
            Some(rfile(1, 10, "e")),
        );
        assert!(matches!(
            a[..],
            [Action::Download {
                keep_local: false,
                ..
            }]
        ));
        // local deleted
        let a = run(
            PushOnly,
            None,
            Some(base(1, 10, "e")),
            Some(rfile(1, 10, "e")),
        );
        assert!(matches!(a[..], [Action::DeleteRemote { .. }]));
        // remote modified
        let a = run(
            Bidirectional,
            Some(file(1, 10)),
            Some(base(1, 10, "e")),
            Some(rfile(2, 12, "f")),
        );
        assert!(matches!(a[..], [Action::Download { .. }]));
        let a = run(
            PushOnly,
            Some(file(1, 10)),
            Some(base(1, 10, "e")),
            Some(rfile(2, 12, "f")),
        );
        assert!(matches!(a[..], [Action::Upload { .. }]));
        // remote deleted
        let a = run(
            Bidirectional,
            Some(file(1, 10)),
            Some(base(1, 10, "e")),
            None,
        );
        assert!(matches!(a[..], [Action::DeleteLocal { .. }]));
        let a = run(PushOnly, Some(file(1, 10)), Some(base(1, 10, "e")), None);
        assert!(matches!(a[..], [Action::Upload { .. }]));
        // mode change alone is a local change
        let mut l = file(1, 10);
        l.mode = 0o600;
        let a = run(
            PushOnly,
            Some(l),
            Some(base(1, 10, "e")),
            Some(rfile(1, 10, "e")),
        );
        assert!(matches!(a[..], [Action::Upload { .. }]));
    }

    #[test]
    fn both_changed_is_a_conflict_in_bidirectional() {
        let a = run(
            Bidirectional,
            Some(file(2, 11)),
            Some(base(1, 10, "e")),
            Some(rfile(3, 12, "f")),
        );
        assert!(matches!(a[..], [Action::Conflict { .. }]));
        // local delete vs remote modify: remote is restored
        let a = run(
            Bidirectional,
            None,
            Some(base(1, 10, "e")),
            Some(rfile(3, 12, "f")),
        );
        assert!(matches!(a[..], [Action::Download { .. }]));
        // local modify vs remote delete: local is uploaded
        let a = run(
            Bidirectional,
            Some(file(2, 11)),
            Some(base(1, 10, "e")),
            None,
        );
        assert!(matches!(a[..], [Action::Upload { .. }]));
        let a = run(Bidirectional, None, Some(base(1, 10, "e")), None);
        assert!(matches!(a[..], [Action::Forget { .. }]));
    }
}
