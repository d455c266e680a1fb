//! The recursive walks of the guarded local remote: listing a directory
//! tree and removing one. Both go down by descriptor only (each directory
//! opened from its parent with `O_NOFOLLOW | O_DIRECTORY`), so a symlink is
//! listed or removed as itself, never entered.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::stat::fstat;
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::beneath::{
    Beneath, EntryKind, Listed, Stat, components, lstat_at, open_dir_at, refused,
};

impl Beneath {
    /// Remove the directory `path` and its contents, descending only
    /// through real directories (by descriptor). Missing is fine.
    pub(super) fn remove_tree(&self, path: &str) -> io::Result<()> {
        let comps = components(path)?;
        let Some((last, dirs)) = comps.split_last() else {
            return Err(refused("refusing to remove the root".into()));
        };
        let parent = match self.dir(dirs, false) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_below(&parent, OsStr::new(last))
    }

    /// The directory `path` and what is in it (everything below it with
    /// `recursive`), never following a symlink: symlinks and special files
    /// are listed as what they are, not descended into or opened. A
    /// missing directory lists as empty; an unreadable one is an error
    /// (never a silently shorter listing). Order: descending by path.
    pub(super) fn list(&self, path: &str, recursive: bool) -> io::Result<Vec<Listed>> {
        let comps = components(path)?;
        let top = match self.dir(&comps, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let prefix = if comps.is_empty() {
            String::new()
        } else {
            format!("{}/", comps.join("/"))
        };
        let mut out = vec![Listed {
            path: if prefix.is_empty() {
                "/".into()
            } else {
                prefix.clone()
            },
            stat: Stat::of(&fstat(&top)?),
        }];
        let mut stack = vec![(top, prefix)];
        while let Some((fd, prefix)) = stack.pop() {
            let mut dir = nix::dir::Dir::from_fd(fd.try_clone()?)?;
            for ent in dir.iter() {
                let ent = ent?;
                let name = ent.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let os = OsStr::from_bytes(name);
                let st = match lstat_at(&fd, os) {
                    Ok(st) => st,
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                let mut stat = Stat::of(&st);
                let Ok(name) = std::str::from_utf8(name) else {
                    stat.kind = EntryKind::BadName;
                    out.push(Listed {
                        path: format!("{prefix}{}", String::from_utf8_lossy(name)),
                        stat,
                    });
                    continue;
                };
                if stat.kind != EntryKind::Dir {
                    out.push(Listed {
                        path: format!("{prefix}{name}"),
                        stat,
                    });
                    continue;
                }
                let p = format!("{prefix}{name}/");
                if recursive {
                    let child = open_dir_at(&fd, os).map_err(|e| {
                        refused(format!("cannot list {p} (changed while listed?): {e}"))
                    })?;
                    stack.push((child, p.clone()));
                }
                out.push(Listed { path: p, stat });
            }
        }
        // Every directory after everything in it (descending order), so
        // deleting what a listing returned, in order, empties a directory
        // before removing it.
        out.sort_unstable_by(|a, b| b.path.cmp(&a.path));
        Ok(out)
    }
}

/// Remove `name` in `parent`: a directory with its contents (entered by
/// descriptor, `O_NOFOLLOW`), anything else as itself.
fn remove_below(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = match open_dir_at(parent, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for ent in nix::dir::Dir::from_fd(fd.try_clone()?)?.iter() {
        let n = ent?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(n);
        }
    }
    for n in names {
        remove_below(&fd, OsStr::from_bytes(&n))?;
    }
    match unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
