//! The `local` remote: an opendal service over a directory that never
//! follows a symlink below its root and never opens a special file.
//!
//! # Why not opendal's `Fs`
//!
//! `Fs` resolves `root/<key>` as one path string, so a symlink planted in
//! the remote directory is followed both ways: reading `innocent.txt ->
//! /etc/shadow` copies `/etc/shadow` into the synced directory, and writing
//! `dir/victim.txt` through `dir -> /outside` overwrites `/outside/victim.txt`.
//! It also opens FIFOs (a read blocks forever) and names its temp files
//! `<name>.<uuid>`, too long for a 255-byte name.
//!
//! # The guarantee
//!
//! Every operation starts from a descriptor of the root (the configured
//! path, resolved as the user wrote it) and walks down one component at a
//! time with `openat(O_NOFOLLOW | O_DIRECTORY)`; the last component is
//! examined with `fstatat(AT_SYMLINK_NOFOLLOW)` and opened with
//! `O_NOFOLLOW` (reads also `O_NONBLOCK`, then `fstat` must show the same
//! regular file). `..`, `.` and empty components are refused. So no
//! operation reaches anything outside the root through a symlink, whatever
//! is swapped in and when: the check and the use are the same descriptor,
//! with no path re-resolved in between. (`openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` would give the same in one call; the walk needs
//! no kernel newer than 2.6.39 and gives a precise error.)
//!
//! - Reads open regular files only: a symlink, FIFO, socket or device is
//!   refused without being opened for I/O.
//! - Writes land in a temp file `.coltec/tmp/w-<16 hex>` (short, so any
//!   object name up to NAME_MAX fits) and are renamed over the last
//!   component: a symlink there is replaced, never written through.
//! - Listings report symlinks and special files as entries of mode
//!   `Unknown` whose content type says what they are (`inode/symlink`,
//!   `inode/fifo`, ...), so the engine reports and skips them; symlinked
//!   directories are never descended. An unreadable directory fails the
//!   listing instead of shortening it (a shorter listing reads as deletes).
//! - Only interrupted or timed-out I/O is marked temporary (retried);
//!   `ENAMETOOLONG`, `EACCES` and refusals are permanent.
//!
//! Symlinks the engine stores are `.rclonelink` objects (regular files),
//! so they are unaffected.
//!
//! # Layout
//!
//! - `mod.rs`: the opendal builder and service, readers, writers, listers.
//! - `beneath`: the blocking descriptor walk and single-path operations.
//! - `walk`: the recursive ones (listing, removing a tree).

mod beneath;
mod walk;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Buf;
use opendal::raw::*;
use opendal::{
    Buffer, Builder, Capability, Configurator, Error, ErrorKind, Metadata, MetadataBuilder,
    OperationContext, Result,
};
use serde::{Deserialize, Serialize};

use beneath::{Beneath, EntryKind, Stat, Temp};

const SCHEME: &str = "coltec-local";

/// Open the regular file at `key` below `root` for reading, under the same
/// guarantee as the service (for the engine's fix-ups of stored files:
/// setting mtime and mode, comparing content).
pub fn open_file(root: &Path, key: &str) -> std::io::Result<File> {
    Beneath::new(root.to_path_buf()).open_file(key)
}

/// Remove the directory `prefix` below `root` and everything in it,
/// without following any symlink (symlinks inside are removed themselves).
pub fn remove_tree(root: &Path, prefix: &str) -> std::io::Result<()> {
    Beneath::new(root.to_path_buf()).remove_tree(prefix)
}

/// Builder of the guarded local service, rooted at a directory.
#[derive(Debug, Default)]
pub struct GuardedFs {
    root: PathBuf,
}

impl GuardedFs {
    pub fn new(root: PathBuf) -> GuardedFs {
        GuardedFs { root }
    }
}

/// Its configuration (opendal wants one per service).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GuardedFsConfig {
    pub root: Option<String>,
}

impl Configurator for GuardedFsConfig {
    type Builder = GuardedFs;

    fn into_builder(self) -> GuardedFs {
        GuardedFs::new(self.root.map(PathBuf::from).unwrap_or_default())
    }
}

impl Builder for GuardedFs {
    type Config = GuardedFsConfig;

    fn build(self) -> Result<impl Service> {
        if self.root.as_os_str().is_empty() {
            return Err(Error::new(
                ErrorKind::ConfigInvalid,
                "root is not specified",
            ));
        }
        Ok(Backend {
            info: ServiceInfo::new(SCHEME, self.root.to_string_lossy(), ""),
            core: Arc::new(Beneath::new(self.root)),
        })
    }
}

#[derive(Debug, Clone)]
struct Backend {
    info: ServiceInfo,
    core: Arc<Beneath>,
}

/// An I/O error as opendal's: only interrupted or timed-out I/O is worth
/// retrying.
fn io_err(e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    let (kind, temporary) = match e.kind() {
        K::NotFound => (ErrorKind::NotFound, false),
        K::PermissionDenied => (ErrorKind::PermissionDenied, false),
        K::AlreadyExists => (ErrorKind::AlreadyExists, false),
        K::Interrupted | K::TimedOut | K::WouldBlock => (ErrorKind::Unexpected, true),
        _ => (ErrorKind::Unexpected, false),
    };
    let err = Error::new(kind, e.to_string()).set_source(e);
    if temporary { err.set_temporary() } else { err }
}

/// Run blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(new_task_join_error)?
        .map_err(io_err)
}

fn metadata(s: &Stat) -> Result<Metadata> {
    let mut m = match s.kind {
        EntryKind::File => MetadataBuilder::file(s.size),
        EntryKind::Dir => MetadataBuilder::dir(),
        other => {
            let mut m = MetadataBuilder::unknown();
            m.content_type(other.content_type());
            m
        }
    };
    m.last_modified(Timestamp::try_from(s.mtime)?);
    Ok(m.build())
}

fn unsupported() -> Error {
    Error::new(ErrorKind::Unsupported, "operation is not supported")
}

impl Service for Backend {
    type Reader = oio::PositionReader<Reader>;
    type Writer = Writer;
    type Lister = Lister;
    type Deleter = oio::OneShotDeleter<Deleter>;
    type Copier = oio::OneShotCopier;
    type Composer = ();

    fn info(&self) -> ServiceInfo {
        self.info.clone()
    }

    fn capability(&self) -> Capability {
        Capability {
            stat: true,
            read: true,
            write: true,
            write_can_empty: true,
            write_can_multi: true,
            write_with_if_not_exists: true,
            create_dir: true,
            delete: true,
            list: true,
            list_with_recursive: true,
            copy: true,
            shared: true,
            ..Default::default()
        }
    }

    async fn create_dir(
        &self,
        _: &OperationContext,
        path: &str,
        _: OpCreateDir,
    ) -> Result<RpCreateDir> {
        let (core, path) = (self.core.clone(), path.to_string());
        blocking(move || core.create_dir(&path)).await?;
        Ok(RpCreateDir::default())
    }

    async fn stat(&self, _: &OperationContext, path: &str, _: OpStat) -> Result<RpStat> {
        let (core, p) = (self.core.clone(), path.to_string());
        let s = blocking(move || core.lstat(&p)).await?;
        if path.ends_with('/') && s.kind != EntryKind::Dir {
            return Err(Error::new(ErrorKind::NotFound, "not a directory"));
        }
        Ok(RpStat::new(metadata(&s)?))
    }

    fn read(&self, _: &OperationContext, path: &str, _: OpRead) -> Result<Self::Reader> {
        Ok(oio::PositionReader::new(Reader {
            core: self.core.clone(),
            path: path.to_string(),
        }))
    }

    fn write(&self, _: &OperationContext, path: &str, op: OpWrite) -> Result<Self::Writer> {
        Ok(Writer {
            core: self.core.clone(),
            path: path.to_string(),
            if_absent: op.if_not_exists(),
            temp: None,
        })
    }

    fn delete(&self, _: &OperationContext) -> Result<Self::Deleter> {
        Ok(oio::OneShotDeleter::new(Deleter(self.core.clone())))
    }

    fn list(&self, _: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        Ok(Lister {
            core: self.core.clone(),
            path: path.to_string(),
            recursive: args.recursive(),
            entries: None,
        })
    }

    fn copy(&self, _: &OperationContext, from: &str, to: &str, _: OpCopy) -> Result<Self::Copier> {
        let (core, from, to) = (self.core.clone(), from.to_string(), to.to_string());
        Ok(oio::OneShotCopier::new(async move {
            let n = blocking(move || core.copy(&from, &to)).await?;
            Ok(MetadataBuilder::file(n).build())
        }))
    }

    async fn rename(
        &self,
        _: &OperationContext,
        _: &str,
        _: &str,
        _: OpRename,
    ) -> Result<RpRename> {
        Err(unsupported())
    }

    async fn presign(&self, _: &OperationContext, _: &str, _: OpPresign) -> Result<RpPresign> {
        Err(unsupported())
    }
}

pub struct Reader {
    core: Arc<Beneath>,
    path: String,
}

impl oio::PositionRead for Reader {
    type Handle = Arc<File>;

    async fn open(&self) -> Result<Arc<File>> {
        let (core, path) = (self.core.clone(), self.path.clone());
        Ok(Arc::new(blocking(move || core.open_file(&path)).await?))
    }

    async fn read_at(handle: &Arc<File>, offset: u64, size: usize) -> Result<Buffer> {
        if size == 0 {
            return Ok(Buffer::new());
        }
        let f = handle.clone();
        let buf = blocking(move || {
            let mut buf = vec![0u8; size];
            let n = f.read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok(buf)
        })
        .await?;
        Ok(Buffer::from(buf))
    }
}

/// Writes into a temp file; `close` renames it into place.
pub struct Writer {
    core: Arc<Beneath>,
    path: String,
    /// `if_not_exists`: an existing object is a failed condition.
    if_absent: bool,
    temp: Option<Temp>,
}

impl Writer {
    async fn temp(&mut self) -> Result<Temp> {
        match self.temp.take() {
            Some(t) => Ok(t),
            None => {
                let core = self.core.clone();
                blocking(move || core.temp()).await
            }
        }
    }
}

impl oio::Write for Writer {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        let mut t = self.temp().await?;
        let (t, r) = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut bs = bs;
            let mut r = Ok(());
            while bs.has_remaining() && r.is_ok() {
                r = t.file.write_all(bs.chunk());
                bs.advance(bs.chunk().len());
            }
            (t, r)
        })
        .await
        .map_err(new_task_join_error)?;
        self.temp = Some(t);
        r.map_err(io_err)
    }

    async fn close(&mut self) -> Result<Metadata> {
        let t = self.temp().await?;
        let (core, path, if_absent) = (self.core.clone(), self.path.clone(), self.if_absent);
        let md = blocking(move || core.commit(t, &path, if_absent)?.metadata())
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists if if_absent => Error::new(
                    ErrorKind::ConditionNotMatch,
                    "the object exists, which fails the condition if_not_exists",
                ),
                _ => e,
            })?;
        let mut m = MetadataBuilder::file(md.len());
        if let Ok(t) = md.modified() {
            m.last_modified(Timestamp::try_from(t)?);
        }
        Ok(m.build())
    }

    async fn abort(&mut self) -> Result<()> {
        if let Some(t) = self.temp.take() {
            blocking(move || {
                t.discard();
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}

pub struct Deleter(Arc<Beneath>);

impl oio::OneShotDelete for Deleter {
    async fn delete_once(&self, path: String, _: OpDelete) -> Result<()> {
        let core = self.0.clone();
        blocking(move || core.remove(&path)).await
    }
}

/// Lists on the first `next` (one blocking walk), then hands out entries.
pub struct Lister {
    core: Arc<Beneath>,
    path: String,
    recursive: bool,
    entries: Option<std::vec::IntoIter<oio::Entry>>,
}

impl oio::List for Lister {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        if self.entries.is_none() {
            let (core, path, rec) = (self.core.clone(), self.path.clone(), self.recursive);
            let listed = blocking(move || core.list(&path, rec)).await?;
            let mut entries = Vec::with_capacity(listed.len());
            for l in listed {
                entries.push(oio::Entry::new(&l.path, metadata(&l.stat)?));
            }
            self.entries = Some(entries.into_iter());
        }
        Ok(self.entries.as_mut().and_then(Iterator::next))
    }
}
