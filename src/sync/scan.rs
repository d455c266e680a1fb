//! The local side: walking a sync root into [`LocalEntry`]s.
//!
//! Excluded directories are pruned (never read). Symlinks are recorded, never
//! followed. Only regular files and symlinks are synced; sockets, FIFOs and
//! devices are skipped and listed in [`Scan::skipped`] (never opened, so a
//! FIFO cannot block a pass). Every name Linux allows is taken, in its
//! [`names`] form (relative paths are encoded names); a name without a
//! reversible encoding is reported and skipped. The reserved `.coltec`
//! entry at the root is never user data. All functions here block: call
//! them from `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::kind::{Kind, LINK_SUFFIX, RESERVED};
use super::names;
use super::report::{FailedFile, SkippedFile};
use crate::spec::Excludes;

/// One file or symlink as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub kind: Kind,
    /// Bytes (for a symlink: length of the target).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// The link target, for symlinks.
    pub link: Option<String>,
}

impl LocalEntry {
    /// Read one path without following a final symlink. `Ok(None)` when it
    /// does not exist or is not a file/symlink (dirs, sockets, ...).
    pub fn read(path: &Path) -> std::io::Result<Option<LocalEntry>> {
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Self::from_metadata(path, &md)
    }

    fn from_metadata(path: &Path, md: &fs::Metadata) -> std::io::Result<Option<LocalEntry>> {
        let ft = md.file_type();
        let mtime_ns = md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec());
        let mode = md.permissions().mode() & 0o7777;
        if ft.is_file() {
            Ok(Some(LocalEntry {
                kind: Kind::File,
                size: md.len(),
                mtime_ns,
                mode,
                link: None,
            }))
        } else if ft.is_symlink() {
            let target = fs::read_link(path)?;
            let Some(target) = target.to_str() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "symlink target is not valid UTF-8",
                ));
            };
            Ok(Some(LocalEntry {
                kind: Kind::Symlink,
                size: target.len() as u64,
                mtime_ns,
                mode,
                link: Some(target.to_string()),
            }))
        } else {
            Ok(None)
        }
    }
}

/// Everything a walk found.
#[derive(Debug, Default)]
pub struct Scan {
    pub entries: BTreeMap<String, LocalEntry>,
    pub problems: Vec<FailedFile>,
    /// Special files (FIFOs, sockets, devices): never synced.
    pub skipped: Vec<SkippedFile>,
    /// Relative paths of directories that could not be read: files under
    /// them must not be treated as deleted.
    pub unreadable_dirs: Vec<String>,
    /// Download temp files untouched for [`STALE_TEMP_AGE`]: left by a
    /// process that was killed mid-download.
    pub stale_temps: Vec<PathBuf>,
}

/// A download's temp file is written continuously until it is renamed into
/// place; one this old belongs to no download in flight.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Walk `root` (which must exist) into a [`Scan`]. `start` is a
/// '/'-separated relative dir to start from ("" for the whole root).
pub fn walk(root: &Path, start: &str, excludes: &Excludes) -> Scan {
    let mut scan = Scan::default();
    let mut stack: Vec<(PathBuf, String)> =
        vec![(names::local_path(root, start), start.to_string())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                scan.unreadable(rel_dir, format!("cannot read directory: {e}"));
                continue;
            }
        };
        for de in rd {
            match de {
                Ok(de) => stack.extend(scan.visit(&de, &rel_dir, excludes)),
                Err(e) => {
                    scan.unreadable(rel_dir.clone(), format!("cannot read directory entry: {e}"))
                }
            }
        }
    }
    scan
}

impl Scan {
    /// A directory whose content is unknown: nothing under it is deleted.
    fn unreadable(&mut self, rel_dir: String, reason: String) {
        self.problems.push(FailedFile {
            path: rel_dir.clone(),
            reason,
        });
        self.unreadable_dirs.push(rel_dir);
    }

    /// Take one directory entry; returns it when it is a directory to walk.
    fn visit(
        &mut self,
        de: &fs::DirEntry,
        rel_dir: &str,
        excludes: &Excludes,
    ) -> Option<(PathBuf, String)> {
        let name = de.file_name();
        if rel_dir.is_empty() && name == RESERVED {
            return None;
        }
        let path = de.path();
        // A download's temp file (in flight, or left by a crash): never
        // user data.
        if name.to_str().is_some_and(is_temp_name) {
            if is_stale_temp(&path) {
                self.stale_temps.push(path);
            }
            return None;
        }
        let rel = match names::child_rel(rel_dir, &name) {
            Ok(rel) => rel,
            Err(why) => {
                self.problems.push(FailedFile {
                    path: format!("{rel_dir}/{}", name.to_string_lossy()),
                    reason: format!("{}; rename it to sync it", why.0),
                });
                return None;
            }
        };
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            // Vanished between readdir and stat: simply not there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.problems.push(FailedFile {
                    path: rel,
                    reason: format!("cannot stat: {e}"),
                });
                return None;
            }
        };
        if md.is_dir() {
            return (!excludes.is_excluded(&rel, true)).then_some((path, rel));
        }
        if !excludes.is_excluded(&rel, false) {
            self.add(rel, &path, &md);
        }
        None
    }

    /// Record a file or symlink (other kinds are skipped).
    fn add(&mut self, rel: String, path: &Path, md: &fs::Metadata) {
        match LocalEntry::from_metadata(path, md) {
            Ok(Some(e)) if e.kind == Kind::File && rel.ends_with(LINK_SUFFIX) => {
                self.problems.push(FailedFile {
                    path: rel,
                    reason: format!(
                        "regular files named *{LINK_SUFFIX} clash with how symlinks are stored; rename it"
                    ),
                });
            }
            Ok(Some(e)) => {
                self.entries.insert(rel, e);
            }
            Ok(None) => self.skipped.push(SkippedFile::special(rel, md)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.problems.push(FailedFile {
                path: rel,
                reason: format!("cannot read: {e}"),
            }),
        }
    }
}

/// Temp files of in-flight downloads: `.<name>.coltec-tmp-<16 hex>`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".coltec-tmp-")
            .is_some_and(|(_, n)| n.len() == 16 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_stale_temp(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|md| {
        md.is_file()
            && md
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= STALE_TEMP_AGE)
    })
}

/// Whether `rel` or any of its parent directories is excluded.
pub fn excluded_with_parents(excludes: &Excludes, rel: &str, is_dir: bool) -> bool {
    let mut prefix = String::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            prefix.push('/');
        }
        prefix.push_str(part);
        let last = i + 1 == parts.len();
        if excludes.is_excluded(&prefix, if last { is_dir } else { true }) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn walk_records_files_links_and_skips_reserved() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f.txt"), "hello").unwrap();
        fs::set_permissions(root.join("a/b/f.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("b/f.txt", root.join("a/l")).unwrap();
        fs::create_dir_all(root.join(".coltec")).unwrap();
        fs::write(root.join(".coltec/x"), "no").unwrap();
        fs::write(root.join("a/.f.txt.coltec-tmp-0123456789abcdef"), "tmp").unwrap();
        let scan = walk(root, "", &Excludes::default());
        let f = &scan.entries["a/b/f.txt"];
        assert_eq!((f.kind, f.size, f.mode), (Kind::File, 5, 0o600));
        let l = &scan.entries["a/l"];
        assert_eq!(l.link.as_deref(), Some("b/f.txt"));
        assert_eq!(scan.entries.len(), 2);
        // A fresh temp file may be a download in flight: not stale.
        assert!(scan.stale_temps.is_empty());
    }

    #[test]
    fn temp_files_untouched_for_an_hour_are_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let old = root.join(".f.txt.coltec-tmp-0123456789abcdef");
        let fresh = root.join(".g.txt.coltec-tmp-fedcba9876543210");
        fs::write(&old, "partial").unwrap();
        fs::write(&fresh, "partial").unwrap();
        let then =
            std::time::SystemTime::now() - STALE_TEMP_AGE - std::time::Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(then)
            .unwrap();
        let scan = walk(root, "", &Excludes::default());
        assert!(scan.entries.is_empty());
        assert_eq!(scan.stale_temps, vec![old]);
    }
}
