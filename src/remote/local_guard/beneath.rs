//! The blocking half of the guarded local remote: every path below the
//! root is reached one component at a time, each component opened from
//! its parent's descriptor with `O_NOFOLLOW | O_DIRECTORY` (directories)
//! or looked at with `AT_SYMLINK_NOFOLLOW` / opened with `O_NOFOLLOW`
//! (the last component). No path string below the root is ever resolved
//! by the kernel in one piece, so a symlink swapped in at any moment is
//! met as a symlink and refused, never followed (see the module doc of
//! [`super`] for the guarantee and its limits).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, renameat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, linkat, unlinkat};

/// Where temp files of writes live (below the root, so a rename commits
/// them): short random names, so any object name up to NAME_MAX fits.
const TMP_DIR: [&str; 2] = [".coltec", "tmp"];

pub(super) fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// What an entry below the root is, seen without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
    /// A name that is not UTF-8: no object key can name it.
    BadName,
}

impl EntryKind {
    fn of(st: &FileStat) -> EntryKind {
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if fmt == SFlag::S_IFREG {
            EntryKind::File
        } else if fmt == SFlag::S_IFDIR {
            EntryKind::Dir
        } else if fmt == SFlag::S_IFLNK {
            EntryKind::Symlink
        } else if fmt == SFlag::S_IFIFO {
            EntryKind::Fifo
        } else if fmt == SFlag::S_IFSOCK {
            EntryKind::Socket
        } else {
            EntryKind::Device
        }
    }

    /// The content type a listing carries for an entry that is not an
    /// object (its mode is `Unknown`), so callers can say what it is.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            EntryKind::File => "application/octet-stream",
            EntryKind::Dir => "inode/directory",
            EntryKind::Symlink => "inode/symlink",
            EntryKind::Fifo => "inode/fifo",
            EntryKind::Socket => "inode/socket",
            EntryKind::Device => "inode/chardevice",
            EntryKind::BadName => "inode/x-non-utf8-name",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            EntryKind::File => "a file",
            EntryKind::Dir => "a directory",
            EntryKind::Symlink => "a symlink",
            EntryKind::Fifo => "a FIFO",
            EntryKind::Socket => "a socket",
            EntryKind::Device => "a device",
            EntryKind::BadName => "a name that is not UTF-8",
        }
    }
}

/// One entry, as stat or a listing sees it.
#[derive(Debug, Clone)]
pub(super) struct Stat {
    pub(super) kind: EntryKind,
    pub(super) size: u64,
    pub(super) mtime: SystemTime,
}

impl Stat {
    pub(super) fn of(st: &FileStat) -> Stat {
        let secs = u64::try_from(st.st_mtime).unwrap_or(0);
        let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
        Stat {
            kind: EntryKind::of(st),
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)),
        }
    }
}

/// A listed entry: its path relative to the root (directories end in `/`).
pub(super) struct Listed {
    pub(super) path: String,
    pub(super) stat: Stat,
}

/// The components of an object path; `.`, `..` and empty components are
/// refused (opendal normalises them away; this is the second fence).
pub(super) fn components(path: &str) -> io::Result<Vec<&str>> {
    let p = path.trim_matches('/');
    if p.is_empty() {
        return Ok(Vec::new());
    }
    p.split('/')
        .map(|c| match c {
            "" | "." | ".." => Err(refused(format!("refusing path {path:?}"))),
            c => Ok(c),
        })
        .collect()
}

pub(super) fn open_dir_at(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

pub(super) fn lstat_at(parent: &OwnedFd, name: &OsStr) -> Result<FileStat, Errno> {
    fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// A write in progress: a temp file in [`TMP_DIR`].
pub(super) struct Temp {
    dir: OwnedFd,
    name: String,
    pub(super) file: File,
}

impl Temp {
    pub(super) fn discard(self) {
        let _ = unlinkat(&self.dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// Move `t` to `name` in `dir` only if nothing is there: one
/// `renameat2(RENAME_NOREPLACE)`, or where the file system lacks it, a
/// hard link (which fails on an existing name) and removing the temp.
fn place_new(t: &Temp, dir: &OwnedFd, name: &str) -> io::Result<()> {
    match renameat2(
        &t.dir,
        t.name.as_str(),
        dir,
        name,
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            linkat(&t.dir, t.name.as_str(), dir, name, AtFlags::empty())?;
            let _ = unlinkat(&t.dir, t.name.as_str(), UnlinkatFlags::NoRemoveDir);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The guarded view of one local directory.
#[derive(Debug)]
pub(super) struct Beneath {
    root: PathBuf,
}

impl Beneath {
    pub(super) fn new(root: PathBuf) -> Beneath {
        Beneath { root }
    }

    /// The root itself: the configured path, resolved as the user wrote
    /// it (it is theirs to point anywhere); created for writes.
    fn root_fd(&self, create: bool) -> io::Result<OwnedFd> {
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
                .open(&self.root)
        };
        match open() {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.root)?;
                Ok(open()?.into())
            }
            r => Ok(r?.into()),
        }
    }

    /// The directory at `comps` below the root; a symlink or anything but
    /// a directory on the way is refused; `create` makes missing ones.
    pub(super) fn dir(&self, comps: &[&str], create: bool) -> io::Result<OwnedFd> {
        let mut fd = self.root_fd(create)?;
        for (i, c) in comps.iter().enumerate() {
            let name = OsStr::new(c);
            fd = match open_dir_at(&fd, name) {
                Ok(d) => d,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(&fd, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    open_dir_at(&fd, name).map_err(|e| explain(&fd, &comps[..=i], e))?
                }
                Err(e) => return Err(explain(&fd, &comps[..=i], e)),
            };
        }
        Ok(fd)
    }

    /// The directory holding `path`, and its last component.
    fn parent<'p>(&self, path: &'p str, create: bool) -> io::Result<(OwnedFd, &'p str)> {
        let comps = components(path)?;
        let Some((last, dirs)) = comps.split_last() else {
            return Err(refused("the root itself is not an object".into()));
        };
        Ok((self.dir(dirs, create)?, last))
    }

    /// What is at `path`, not following it.
    pub(super) fn lstat(&self, path: &str) -> io::Result<Stat> {
        let comps = components(path)?;
        let Some((last, dirs)) = comps.split_last() else {
            return Ok(Stat::of(&fstat(self.root_fd(false)?)?));
        };
        let d = self.dir(dirs, false)?;
        Ok(Stat::of(&lstat_at(&d, OsStr::new(last))?))
    }

    /// Open a regular file for reading. Anything else (a symlink, FIFO,
    /// socket or device) is refused without being opened for I/O.
    pub(super) fn open_file(&self, path: &str) -> io::Result<File> {
        let (d, name) = self.parent(path, false)?;
        let name = OsStr::new(name);
        let seen = lstat_at(&d, name)?;
        let kind = EntryKind::of(&seen);
        if kind != EntryKind::File {
            return Err(refused(format!(
                "{path} is {}; the local remote reads regular files only",
                kind.describe()
            )));
        }
        // O_NONBLOCK: should a FIFO be swapped in since the check, opening
        // it does not wait for a writer; fstat then refuses it.
        let fd = openat(
            &d,
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let now = fstat(&fd)?;
        if EntryKind::of(&now) != EntryKind::File
            || now.st_ino != seen.st_ino
            || now.st_dev != seen.st_dev
        {
            return Err(refused(format!("{path} changed while being opened")));
        }
        Ok(File::from(fd))
    }

    /// A new, empty temp file (owner-only).
    pub(super) fn temp(&self) -> io::Result<Temp> {
        let dir = self.dir(&TMP_DIR, true)?;
        loop {
            let name = format!("w-{:016x}", rand::random::<u64>());
            match openat(
                &dir,
                name.as_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => {
                    return Ok(Temp {
                        dir,
                        name,
                        file: File::from(fd),
                    });
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Make a finished temp file the object at `path`: fsync, rename over
    /// the last component (replacing a symlink there, never writing
    /// through it), fsync the directory. Parents are created as needed.
    /// With `if_absent`, an existing entry at `path` (of any kind) is left
    /// alone and the write fails with `AlreadyExists`.
    pub(super) fn commit(&self, t: Temp, path: &str, if_absent: bool) -> io::Result<File> {
        let placed = t.file.sync_all().and_then(|()| {
            let (d, name) = self.parent(path, true)?;
            if if_absent {
                place_new(&t, &d, name)?;
            } else {
                renameat(&t.dir, t.name.as_str(), &d, name)?;
            }
            let _ = fsync(&d);
            Ok(())
        });
        match placed {
            Ok(()) => Ok(t.file),
            Err(e) => {
                t.discard();
                Err(e)
            }
        }
    }

    /// Remove the object (or, for a path ending in `/`, the empty
    /// directory) at `path`; a symlink there is removed itself. Missing is
    /// fine.
    pub(super) fn remove(&self, path: &str) -> io::Result<()> {
        let flag = if path.ends_with('/') {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        let (d, name) = match self.parent(path, false) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match unlinkat(&d, name, flag) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn create_dir(&self, path: &str) -> io::Result<()> {
        self.dir(&components(path)?, true).map(drop)
    }

    /// Copy the regular file `from` to `to` (keeping its permission bits).
    pub(super) fn copy(&self, from: &str, to: &str) -> io::Result<u64> {
        let mut src = self.open_file(from)?;
        let mode = src.metadata()?.permissions().mode() & 0o777;
        let mut t = self.temp()?;
        let copied = io::copy(&mut src, &mut t.file)
            .and_then(|n| t.file.flush().map(|()| n))
            .and_then(|n| {
                fchmod(t.file.as_fd(), Mode::from_bits_truncate(mode))?;
                Ok(n)
            });
        match copied {
            Ok(n) => self.commit(t, to, false).map(|_| n),
            Err(e) => {
                t.discard();
                Err(e)
            }
        }
    }
}

/// Why opening directory `comps` (its last component) failed, in words.
fn explain(parent: &OwnedFd, comps: &[&str], e: Errno) -> io::Error {
    if !matches!(e, Errno::ELOOP | Errno::ENOTDIR) {
        return e.into();
    }
    let last = comps.last().copied().unwrap_or_default();
    let what = match lstat_at(parent, OsStr::new(last)) {
        Ok(st) => EntryKind::of(&st).describe(),
        Err(_) => "not a directory",
    };
    refused(format!(
        "{} is {what}; the local remote never goes through it",
        comps.join("/")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_temp(b: &Beneath, body: &[u8]) -> Temp {
        let mut t = b.temp().unwrap();
        t.file.write_all(body).unwrap();
        t
    }

    #[test]
    fn a_create_only_write_never_replaces_an_existing_object_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Beneath::new(tmp.path().to_path_buf());
        b.commit(write_temp(&b, b"first"), "d/x", true).unwrap();
        let e = b
            .commit(write_temp(&b, b"second"), "d/x", true)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(tmp.path().join("d/x")).unwrap(), b"first");
        let temps = std::fs::read_dir(tmp.path().join(".coltec/tmp")).unwrap();
        assert_eq!(temps.count(), 0);
        // Without the condition, the object is replaced.
        b.commit(write_temp(&b, b"third"), "d/x", false).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("d/x")).unwrap(), b"third");
    }
}
