//! Writing into the local sync root safely.
//!
//! Every write lands in a temp file in the destination directory, gets its
//! mode and mtime, and is renamed into place, so a crash (`kill -9`) leaves
//! either the old or the new file, never a torn one under its final name.
//! A file that replaces an existing one is also fsynced before the rename
//! and its directory after it ([`fsutil::rename_into_place`]); a new file
//! is made durable by the caller's batch barrier instead (see
//! [`finish_file`]).
//! Parent directories are checked component by component with
//! `symlink_metadata`: a symlink anywhere above the destination (for
//! example one planted by a hostile remote, `a -> /etc`, followed by
//! `a/passwd`) refuses the write, so nothing is ever written outside the
//! root. The final rename replaces a symlink itself, never its target.
//! These functions block; call them from `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::names;
use crate::fsutil;

fn refuse(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// Create the parents of `rel` ([`names`] form) under `root` (no symlinks
/// allowed on the way) and return the absolute destination path.
pub fn prepare(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let parts: Vec<&str> = rel.split('/').collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(refuse(format!("empty path {rel:?}")));
    };
    let mut cur = root.to_path_buf();
    for d in dirs {
        if d.is_empty() || *d == "." || *d == ".." {
            return Err(refuse(format!("refusing path {rel:?}")));
        }
        cur = names::local_path(&cur, d);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(refuse(format!(
                    "{} is a symlink; refusing to write {rel:?} through it",
                    cur.display()
                )));
            }
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a file, not a directory", cur.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Raced with a concurrent download: re-check what is there.
                    let md = fs::symlink_metadata(&cur)?;
                    if !md.is_dir() {
                        return Err(refuse(format!("{} is not a directory", cur.display())));
                    }
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    let dest = names::local_path(&cur, last);
    if let Ok(md) = fs::symlink_metadata(&dest)
        && md.is_dir()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is a directory", dest.display()),
        ));
    }
    Ok(dest)
}

/// A temp path next to `dest`: `.<name>.coltec-tmp-<16 hex>`, the name
/// cut to at most 180 bytes (on a character boundary, invalid UTF-8
/// replaced) so it stays within NAME_MAX (255 bytes) whatever the
/// original length.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut short: String = String::new();
    for c in name.chars() {
        if short.len() + c.len_utf8() > 180 {
            break;
        }
        short.push(c);
    }
    let n: u64 = rand::random();
    dest.with_file_name(format!(".{short}.coltec-tmp-{n:016x}"))
}

/// Create a new temp file (exclusive, owner-only until finalized).
pub fn create_temp(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

pub fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Apply mode and mtime and rename into place; with `durable`, fsync the
/// file before the rename and the directory after it.
///
/// Without `durable` (a download that creates a new file) the rename alone
/// already guarantees that a killed process leaves no torn file under the
/// final name: the page cache survives `kill -9`, only a power loss can
/// lose unflushed data. Against that the caller issues one
/// [`fsutil::sync_filesystem`] before it records the batch in the state
/// database, so a file is never in the base before it is on disk. Two
/// fsyncs per file (file + directory, each a journal commit) were most of
/// a restore's time on a fast server; rclone does none. A file replacing
/// an existing one stays fsynced per file: losing it to a power cut would
/// leave a zeroed file where the base still describes the old one, which
/// the next pass would take for a local edit and upload.
pub fn finish_file(
    file: File,
    tmp: &Path,
    dest: &Path,
    mode: u32,
    mtime_ns: i64,
    durable: bool,
) -> io::Result<()> {
    let r = (|| {
        // setuid/setgid/sticky bits from a remote are never applied.
        file.set_permissions(fs::Permissions::from_mode(mode & 0o777))?;
        file.set_modified(system_time(mtime_ns))?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        Ok(())
    })();
    match r {
        Ok(()) if durable => fsutil::rename_into_place(tmp, dest),
        Ok(()) => fs::rename(tmp, dest).inspect_err(|_| {
            let _ = fs::remove_file(tmp);
        }),
        Err(e) => {
            let _ = fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// Create a symlink `dest -> target` atomically (temp link + rename).
pub fn place_symlink(dest: &Path, target: &str) -> io::Result<()> {
    if target.contains('\0') {
        return Err(refuse("symlink target contains NUL".into()));
    }
    let tmp = temp_path(dest);
    std::os::unix::fs::symlink(target, &tmp)?;
    fsutil::rename_into_place(&tmp, dest)
}

/// The conflict-copy name of `rel` ([`names`] form, as is the result):
/// `dir/name.conflict-<host>-<stamp>.ext` (the extension, if any, is kept
/// last so the file still opens the same). The marker is inserted into the
/// decoded name, so encoded edge characters stay where they belong.
pub fn conflict_name(rel: &str, host: &str, stamp: &str) -> String {
    let dir = rel.rsplit_once('/').map(|(d, _)| d);
    let name = names::last_raw(rel);
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let marker = format!(".conflict-{host}-{stamp}");
    let mut new = name.clone();
    match name.iter().rposition(|&b| b == b'.') {
        Some(i) if i > 0 && i + 1 < name.len() => {
            new.splice(i..i, marker.bytes());
        }
        _ => new.extend_from_slice(marker.as_bytes()),
    }
    let enc = names::encode_name(&new).unwrap_or_else(|_| {
        // No reversible encoding with the marker inside: append it.
        let mut n = name.clone();
        n.extend_from_slice(marker.as_bytes());
        names::encode_name(&n).unwrap_or_else(|_| format!("conflict-{host}-{stamp}"))
    });
    match dir {
        Some(d) => format!("{d}/{enc}"),
        None => enc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_refuses_symlinked_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        let err = prepare(&root, "a/passwd").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        let p = prepare(&root, "x/y/z.txt").unwrap();
        assert!(root.join("x/y").is_dir());
        assert_eq!(p, root.join("x/y/z.txt"));
    }

    #[test]
    fn conflict_names_keep_extension() {
        assert_eq!(
            conflict_name("d/notes.md", "host.a", "20240101T000000Z"),
            "d/notes.conflict-host_a-20240101T000000Z.md"
        );
        assert_eq!(conflict_name(".bashrc", "h", "S"), ".bashrc.conflict-h-S");
        // Encoded names: the marker goes into the real name.
        assert_eq!(
            conflict_name("d/notes.txt\u{2420}", "h", "S"),
            "d/notes.conflict-h-S.txt\u{2420}"
        );
        assert_eq!(conflict_name("x\u{2420}", "h", "S"), "x .conflict-h-S");
    }

    #[test]
    fn prepare_decodes_encoded_names() {
        let tmp = tempfile::tempdir().unwrap();
        let p = prepare(tmp.path(), "d\u{2420}/f\u{201B}FF").unwrap();
        assert!(tmp.path().join("d ").is_dir());
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(p.file_name().unwrap().as_bytes(), b"f\xff");
    }
}
