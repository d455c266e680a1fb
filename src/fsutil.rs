//! Durable local file writes, written once: a new file is written under a
//! temp name beside its destination, fsynced, renamed over the destination
//! and the directory fsynced, so a crash (even `kill -9` or a power loss)
//! leaves either the old or the new content, never half a file; a failed
//! write leaves no temp file behind.
//!
//! [`write_atomic`] is the whole sequence for a small file held in memory
//! (state files, lease records). Writers that stream into a temp file of
//! their own (downloads into a sync root) finish with
//! [`rename_into_place`]; writers that need a different last step (a
//! create-if-absent hard link) use [`write_temp`] and [`sync_parent`].
//! All functions block: call them from `spawn_blocking` in async code.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically and durably, owner-only (0600).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_atomic`] with the new file's permission bits (before umask).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    rename_into_place(&tmp, path)
}

/// Write `bytes` to a new, fsynced temp file beside `path` and return its
/// name; nothing is left behind when this fails.
pub fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let tmp = temp_beside(path);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Rename a finished (already fsynced) temp file or symlink over `dest`
/// and fsync the directory; the temp is removed when the rename fails.
pub fn rename_into_place(tmp: &Path, dest: &Path) -> io::Result<()> {
    if let Err(e) = fs::rename(tmp, dest) {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    sync_parent(dest);
    Ok(())
}

/// fsync the directory holding `path`, making a rename or link in it
/// durable. Best effort: the change is already visible.
pub fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(d) = fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
}

/// Make everything written to the filesystem holding `path` durable
/// (`syncfs(2)`): one call that covers a whole batch of files and renames,
/// where an fsync per file and per directory costs two journal commits
/// each. Callers use it as the barrier before recording such a batch as
/// done (see the download path in `sync::exec`).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let f = fs::File::open(path)?;
    nix::unistd::syncfs(&f).map_err(io::Error::from)
}

/// A fresh temp name beside `path`: `.<name>.tmp-<random>`, hidden and
/// never a name another writer picks at the same time.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n: u64 = rand::random();
    path.with_file_name(format!(".{name}.tmp-{n:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_replaces_the_file_owner_only_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn write_atomic_mode_sets_the_given_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        write_atomic_mode(&path, b"1\n", 0o644).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The umask may only take bits away.
        assert_eq!(mode & !0o644, 0, "{mode:o}");
        assert_ne!(mode & 0o600, 0, "{mode:o}");
    }

    #[test]
    fn a_failed_rename_keeps_the_old_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert!(path.is_dir());
        assert_eq!(names(dir.path()), ["taken"]);
    }

    #[test]
    fn sync_filesystem_succeeds_on_a_directory_and_fails_on_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        sync_filesystem(dir.path()).unwrap();
        let err = sync_filesystem(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_missing_directory_fails_without_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/state.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(names(dir.path()).is_empty());
    }
}
