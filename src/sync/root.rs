//! Whether a pass may trust its local root to say what was deleted.
//!
//! A root that is missing, empty, or not the directory coltecd last synced
//! (its device, inode or birth time differ from what the state database
//! recorded: an unmounted volume, a container rebuilt around a surviving
//! state dir; the birth time tells a directory recreated on the inode
//! number just freed, which filesystems reuse at once)
//! while the base says files existed says nothing about deletions: the
//! pass then plans as a first sync (no base, so nothing is deleted on
//! either side: a bidirectional or pull-only target restores what the
//! remote holds, a push-only one only uploads), logs why and reports it
//! ([`RootGuard`]). For a missing or replaced root it also forgets the
//! base (it describes another directory) and records the new identity.
//! Syncthing's folder marker and lsyncd's "never delete at startup" guard
//! the same case.
//!
//! An empty root with its recorded identity may be intended (every file
//! deleted on purpose): its base is kept, a plan that trips the
//! mass-delete guard is refused as before, and `allow_mass_delete`
//! accepts the deletes (as it accepts a replaced root); a missing root is
//! never taken as "delete everything".

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::kind::RESERVED;
use super::scan;
use crate::spec::Excludes;

/// Device, inode and (where the filesystem reports it) birth time of a
/// directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootId {
    pub dev: u64,
    pub ino: u64,
    /// Nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born_ns: Option<i64>,
}

impl RootId {
    /// The identity of `root` (`None` when it cannot be read).
    pub(super) async fn of(root: &Path) -> Option<RootId> {
        let md = tokio::fs::metadata(root).await.ok()?;
        Some(RootId {
            dev: md.dev(),
            ino: md.ino(),
            born_ns: md.created().ok().and_then(super::layout::system_time_ns),
        })
    }

    /// Whether both name the same directory (birth times are compared
    /// only when both are known).
    fn same_dir(&self, other: &RootId) -> bool {
        self.dev == other.dev
            && self.ino == other.ino
            && match (self.born_ns, other.born_ns) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Why a pass did not trust the local root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootSuspect {
    /// The root directory did not exist.
    Missing,
    /// The root is another directory than the one last synced.
    Replaced,
    /// The root held no file or symlink at all.
    Empty,
}

/// A pass that restored instead of deleting (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootGuard {
    pub reason: RootSuspect,
    /// How many files the base held for this target.
    pub base_files: u64,
}

impl RootGuard {
    /// One line for the log and `status`.
    pub fn describe(&self) -> String {
        let why = match self.reason {
            RootSuspect::Missing => "the local directory was missing",
            RootSuspect::Replaced => {
                "the local directory is not the one last synced (another device/inode: \
                 an unmounted volume or a rebuilt container?)"
            }
            RootSuspect::Empty => "the local directory was empty",
        };
        let advice = match self.reason {
            RootSuspect::Missing => "",
            _ => {
                "; if deleting them on the remote is intended, run \
                 `coltecd sync --allow-mass-delete`"
            }
        };
        format!(
            "{why} although {} file(s) were synced before: nothing was deleted, the remote's \
             files are kept (and restored where the direction writes locally){advice}",
            self.base_files
        )
    }
}

/// What a pass knows about its root before it plans.
pub(super) fn suspect_at_start(
    missing: bool,
    recorded: Option<RootId>,
    now: Option<RootId>,
    allow_mass_delete: bool,
) -> Option<RootSuspect> {
    if missing {
        return Some(RootSuspect::Missing);
    }
    match (recorded, now) {
        (Some(r), Some(n)) if !r.same_dir(&n) && !allow_mass_delete => Some(RootSuspect::Replaced),
        _ => None,
    }
}

/// Whether the root holds at least one file or symlink that is not
/// excluded (stops at the first). Blocking.
pub(super) fn has_entries(root: &Path, excludes: &Excludes) -> bool {
    fn go(root: &Path, rel: &str, excludes: &Excludes, depth: usize) -> bool {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            // Unreadable: its content is unknown, so not "empty".
            return true;
        };
        for e in rd {
            let Ok(e) = e else { return true };
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if rel.is_empty() && name == RESERVED {
                continue;
            }
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(ft) = e.file_type() else { return true };
            if ft.is_dir() {
                if depth < 64
                    && !scan::excluded_with_parents(excludes, &child, true)
                    && go(root, &child, excludes, depth + 1)
                {
                    return true;
                }
            } else if (ft.is_file() || ft.is_symlink())
                && !scan::is_temp_name(&name)
                && !scan::excluded_with_parents(excludes, &child, false)
            {
                return true;
            }
        }
        false
    }
    go(root, "", excludes, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_root_is_suspect_unless_the_caller_accepts_it() {
        let id = |ino, born_ns| {
            Some(RootId {
                dev: 1,
                ino,
                born_ns,
            })
        };
        let (a, b) = (id(2, Some(10)), id(3, Some(10)));
        // The inode number of a directory just removed, reused at once.
        let reborn = id(2, Some(11));
        assert_eq!(
            suspect_at_start(false, a, reborn, false),
            Some(RootSuspect::Replaced)
        );
        // A filesystem without birth times: dev and inode decide.
        assert_eq!(suspect_at_start(false, id(2, None), reborn, false), None);
        assert_eq!(suspect_at_start(false, a, a, false), None);
        assert_eq!(
            suspect_at_start(false, a, b, false),
            Some(RootSuspect::Replaced)
        );
        assert_eq!(suspect_at_start(false, a, b, true), None);
        // Nothing recorded yet (first pass, older state): nothing to compare.
        assert_eq!(suspect_at_start(false, None, b, false), None);
        assert_eq!(
            suspect_at_start(true, a, None, true),
            Some(RootSuspect::Missing)
        );
    }

    #[test]
    fn emptiness_ignores_dirs_excluded_files_temps_and_the_reserved_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let none = Excludes::new(vec!["*.log".into()]).unwrap();
        assert!(!has_entries(root, &none));
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join(RESERVED)).unwrap();
        std::fs::write(root.join(RESERVED).join("x"), "x").unwrap();
        std::fs::write(root.join("a/b/x.log"), "x").unwrap();
        assert!(!has_entries(root, &none));
        std::fs::write(root.join("a/b/keep"), "x").unwrap();
        assert!(has_entries(root, &none));
    }
}
