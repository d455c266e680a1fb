//! A consistent in-memory copy of a small local file: the way out for a
//! file that is written continuously. Streaming such a file fails the
//! torn-read check every time; a copy taken while its size, mtime, ctime
//! and inode stayed the same (checked before and after the read, on the
//! open file and on the path) is one whole version of it, uploaded as is.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use bytes::Bytes;

use super::{FileErr, blocking, ferr};
use crate::sync::kind::Kind;
use crate::sync::scan::LocalEntry;

/// Files up to this size are uploaded from a snapshot (memory per upload
/// is then at most this, like the multipart path's parts in flight).
pub(super) const SNAPSHOT_MAX: u64 = 16 * 1024 * 1024;
/// Reads of a file that keeps changing before giving up for this pass.
const ATTEMPTS: usize = 3;

/// What identifies one version of a file, as far as stat can tell.
#[derive(PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    fn of(md: &std::fs::Metadata) -> Version {
        Version {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

pub(super) fn changed_while_read() -> FileErr {
    FileErr::File("changed while being read; retried next pass".into())
}

/// A consistent copy of the regular file at `path` and the entry it was
/// (its current version, not necessarily the one the scan saw). `None`
/// when the file is now larger than [`SNAPSHOT_MAX`] (stream it instead).
pub(super) async fn take(path: PathBuf) -> Result<Option<(Bytes, LocalEntry)>, FileErr> {
    blocking(move || {
        for _ in 0..ATTEMPTS {
            match attempt(&path)? {
                Attempt::Copy(b, e) => return Ok(Some((b, e))),
                Attempt::TooBig => return Ok(None),
                Attempt::Changed => continue,
            }
        }
        Err(changed_while_read())
    })
    .await?
}

enum Attempt {
    Copy(Bytes, LocalEntry),
    TooBig,
    Changed,
}

/// Open the regular file at `path` for reading, never through a final
/// symlink, with its metadata: a file gone or replaced by something else
/// since the scan "changed while being read". Every upload reads through it.
pub(super) fn open_regular(
    path: &std::path::Path,
) -> Result<(std::fs::File, std::fs::Metadata), FileErr> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                changed_while_read()
            } else {
                ferr("cannot open", e)
            }
        })?;
    let md = f.metadata().map_err(|e| ferr("cannot stat", e))?;
    if !md.is_file() {
        return Err(changed_while_read());
    }
    Ok((f, md))
}

/// The entry an upload stores for a regular file with this metadata.
pub(super) fn entry_of(md: &std::fs::Metadata) -> LocalEntry {
    LocalEntry {
        kind: Kind::File,
        size: md.len(),
        mtime_ns: md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec()),
        mode: md.permissions().mode() & 0o7777,
        link: None,
    }
}

fn attempt(path: &std::path::Path) -> Result<Attempt, FileErr> {
    let (mut f, before) = open_regular(path)?;
    if before.len() > SNAPSHOT_MAX {
        return Ok(Attempt::TooBig);
    }
    let cap = usize::try_from(before.len()).unwrap_or(0);
    let mut buf = Vec::with_capacity(cap);
    (&mut f)
        .take(SNAPSHOT_MAX + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ferr("read failed", e))?;
    let after = f.metadata().map_err(|e| ferr("cannot stat", e))?;
    let Ok(at_path) = std::fs::symlink_metadata(path) else {
        return Ok(Attempt::Changed);
    };
    let v = Version::of(&before);
    if buf.len() as u64 != before.len() || Version::of(&after) != v || Version::of(&at_path) != v {
        return Ok(Attempt::Changed);
    }
    Ok(Attempt::Copy(Bytes::from(buf), entry_of(&before)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_snapshot_is_the_file_as_it_is_now_and_large_files_are_streamed() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let (b, e) = take(p.clone()).await.ok().flatten().unwrap();
        assert_eq!(&b[..], b"hello");
        assert_eq!((e.kind, e.size), (Kind::File, 5));
        assert_eq!(e, LocalEntry::read(&p).unwrap().unwrap());
        let big = tmp.path().join("big");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(SNAPSHOT_MAX + 1).unwrap();
        assert!(matches!(take(big).await, Ok(None)));
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(take(link).await.is_err(), "a symlink is never followed");
        assert!(take(tmp.path().join("gone")).await.is_err());
    }
}
