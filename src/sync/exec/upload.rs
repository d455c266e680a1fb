//! Writing to the remote: storing a local file or symlink as its object
//! (multipart for files, aborted when the pass is cancelled or fenced, with
//! a torn-read check at the end) and deleting remote objects. The old
//! version of anything overwritten or deleted goes to the trash first.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::BytesMut;
use opendal::ErrorKind;
use tokio::io::AsyncReadExt;

use super::apply::Done;
use super::{Exec, FileErr, blocking, ferr, object_rid};
use crate::sync::SyncError;
use crate::sync::kind::Kind;
use crate::sync::layout::{self, RemoteEntry, key_for};
use crate::sync::limits::Dir;
use crate::sync::localfs;
use crate::sync::names;
use crate::sync::scan::LocalEntry;
use crate::sync::state::BaseEntry;

/// Multipart part size: S3 needs ≥ 5 MiB parts; memory per upload is
/// bounded by `CHUNK * UPLOAD_CONCURRENCY` plus one read buffer.
const CHUNK: usize = 8 * 1024 * 1024;
const UPLOAD_CONCURRENCY: usize = 2;
const READ_BUF: usize = 256 * 1024;
/// How long aborting an upload may take.
const ABORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn changed_while_read() -> FileErr {
    FileErr::File("changed while being read; retried next pass".into())
}

/// Whether `md` is still the regular file the scan saw as `l`.
fn same_as_scanned(md: &std::fs::Metadata, l: &LocalEntry) -> bool {
    md.is_file()
        && md.len() == l.size
        && md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec())
            == l.mtime_ns
}

impl Exec<'_> {
    fn user_metadata(&self, l: &LocalEntry) -> Option<Vec<(String, String)>> {
        self.ctx.user_metadata.then(|| {
            vec![
                ("mtime".to_string(), layout::format_mtime(l.mtime_ns)),
                ("mode".to_string(), layout::format_mode(l.kind, l.mode)),
            ]
        })
    }

    /// Store one local entry as `rel`'s object; returns the new base.
    pub(super) async fn upload(
        &self,
        rel: &str,
        l: &LocalEntry,
        replaces: Option<&RemoteEntry>,
        d: &mut Done,
    ) -> Result<BaseEntry, FileErr> {
        let key = key_for(rel, l.kind);
        if let Some(r) = replaces
            && r.kind == l.kind
        {
            self.trash(&key).await?;
        }
        self.gate()?;
        let meta = match l.kind {
            Kind::Symlink => self.upload_symlink(&key, l, d).await?,
            Kind::File => self.upload_file(rel, &key, l, d).await?,
        };
        d.uploaded += 1;
        d.remote_changed = true;
        let rid = self.stored_rid(&key, l, &meta).await;
        // A kind change (file <-> symlink) leaves the old object behind.
        if let Some(r) = replaces
            && r.kind != l.kind
        {
            self.delete_remote(&key_for(rel, r.kind)).await?;
        }
        Ok(BaseEntry::from_local(l, rid))
    }

    /// A symlink's object holds its target (what `rclone --links` writes).
    async fn upload_symlink(
        &self,
        key: &str,
        l: &LocalEntry,
        d: &mut Done,
    ) -> Result<opendal::Metadata, FileErr> {
        let target = l.link.clone().unwrap_or_default();
        let mut w = self.op.write_with(key, target.clone().into_bytes());
        if let Some(um) = self.user_metadata(l) {
            w = w.user_metadata(um);
        }
        let m = self.net(w).await?.map_err(|e| ferr("upload failed", e))?;
        d.bytes_up += target.len() as u64;
        self.observer.bytes(target.len() as u64);
        Ok(m)
    }

    /// The identity of what was just stored. Local remotes get the file's
    /// real mtime and mode, which makes the identity `size:mtime`.
    async fn stored_rid(&self, key: &str, l: &LocalEntry, meta: &opendal::Metadata) -> String {
        if let Some(dir) = &self.ctx.local_dir {
            let (dir, key) = (dir.clone(), key.to_string());
            let (mtime, mode, kind) = (l.mtime_ns, l.mode, l.kind);
            let set = blocking(move || -> std::io::Result<Option<i64>> {
                // Read-only is enough: futimens needs ownership, not write access
                // (a stored 0444 file must still get its times). Never
                // through a symlink in the remote directory.
                let f = crate::remote::local_guard::open_file(&dir, &key)?;
                f.set_modified(localfs::system_time(mtime))?;
                if kind == Kind::File {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                }
                Ok(f.metadata()?
                    .modified()
                    .ok()
                    .and_then(layout::system_time_ns))
            })
            .await;
            if let Ok(Ok(Some(m))) = set {
                return layout::fallback_rid(meta.content_length(), Some(m));
            }
        }
        object_rid(meta)
    }

    async fn upload_file(
        &self,
        rel: &str,
        key: &str,
        l: &LocalEntry,
        d: &mut Done,
    ) -> Result<opendal::Metadata, FileErr> {
        let path = names::local_path(&self.root, rel);
        let mut file = open_unchanged(&path, l).await?;
        let mut opts = self
            .op
            .writer_with(key)
            .chunk(CHUNK)
            .concurrent(UPLOAD_CONCURRENCY);
        if let Some(um) = self.user_metadata(l) {
            opts = opts.user_metadata(um);
        }
        let mut w = self
            .net(opts)
            .await?
            .map_err(|e| ferr("upload failed", e))?;
        if let Err(e) = self.send_file(&mut file, &path, &mut w, l, d).await {
            // Nothing half-written stays: multipart uploads are aborted.
            abort_writer(&mut w).await;
            return Err(e);
        }
        let closed = tokio::select! {
            r = w.close() => r,
            _ = self.cancel.cancelled() => {
                abort_writer(&mut w).await;
                return Err(SyncError::Cancelled.into());
            }
            _ = self.inner.gate.closed() => {
                abort_writer(&mut w).await;
                return Err(self.gate_closed().into());
            }
        };
        closed.map_err(|e| ferr("upload failed", e))
    }

    /// Stream `file` into `w` within the bandwidth and request budgets,
    /// then check the file is still exactly what was scanned.
    async fn send_file(
        &self,
        file: &mut tokio::fs::File,
        path: &Path,
        w: &mut opendal::Writer,
        l: &LocalEntry,
        d: &mut Done,
    ) -> Result<(), FileErr> {
        let mut sent: u64 = 0;
        loop {
            let mut buf = BytesMut::with_capacity(READ_BUF);
            let n = file
                .read_buf(&mut buf)
                .await
                .map_err(|e| ferr("read failed", e))?;
            if n == 0 {
                break;
            }
            let before = sent / CHUNK as u64;
            sent += n as u64;
            if sent > l.size {
                return Err(changed_while_read());
            }
            // Each new part is one more request.
            if sent / CHUNK as u64 != before {
                self.request_slot().await?;
            }
            self.inner.limits.bytes(Dir::Up, n, self.cancel).await?;
            tokio::select! {
                r = w.write(buf.freeze()) => r.map_err(|e| ferr("upload failed", e))?,
                _ = self.cancel.cancelled() => return Err(SyncError::Cancelled.into()),
                _ = self.inner.gate.closed() => return Err(self.gate_closed().into()),
            }
            d.bytes_up += n as u64;
            self.observer.bytes(n as u64);
        }
        // Torn-read check: the file must still be exactly what was scanned.
        let md = file.metadata().await.map_err(|e| ferr("cannot stat", e))?;
        let path_md = tokio::fs::symlink_metadata(path)
            .await
            .map_err(|_| changed_while_read())?;
        if sent != l.size || !same_as_scanned(&md, l) || !same_as_scanned(&path_md, l) {
            return Err(changed_while_read());
        }
        self.gate()?;
        Ok(())
    }

    /// Delete a remote object (its old version goes to the trash first).
    pub(super) async fn delete_remote(&self, key: &str) -> Result<(), FileErr> {
        self.trash(key).await?;
        self.gate()?;
        match self.net(self.op.delete(key)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ferr("cannot delete on the remote", e)),
        }
    }
}

/// Open `path` (never through a final symlink) when it still is what the
/// scan saw as `l`.
async fn open_unchanged(path: &Path, l: &LocalEntry) -> Result<tokio::fs::File, FileErr> {
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                changed_while_read()
            } else {
                ferr("cannot open", e)
            }
        })?;
    let md = file.metadata().await.map_err(|e| ferr("cannot stat", e))?;
    if !same_as_scanned(&md, l) {
        return Err(changed_while_read());
    }
    Ok(file)
}

/// Abort an upload (removes its multipart parts), bounded in time: it runs
/// after cancellation or fencing, when the caller must not wait on a
/// network that may be gone (unfinished parts then expire by bucket policy).
async fn abort_writer(w: &mut opendal::Writer) {
    let _ = tokio::time::timeout(ABORT_TIMEOUT, w.abort()).await;
}
