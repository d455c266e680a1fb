//! Writing to the remote: storing a local file or symlink as its object
//! and deleting remote objects. Files up to [`snapshot::SNAPSHOT_MAX`] are
//! stored from a consistent in-memory copy (one PUT); larger ones are
//! streamed (multipart, aborted when the pass is cancelled or fenced, with
//! a torn-read check at the end). Every write carries the version it
//! expects (see `guard`). The old version of anything overwritten or
//! deleted goes to the trash right before the write that replaces it, so
//! an attempt that fails first (a file changed while being read, a refused
//! condition) leaves no trash copy.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use opendal::ErrorKind;
use tokio::io::AsyncReadExt;

use super::apply::Done;
use super::guard::{Expect, conditioned, refused};
use super::snapshot::{self, changed_while_read, entry_of};
use super::{Exec, FileErr, blocking, ferr, object_rid};
use crate::sync::SyncError;
use crate::sync::kind::Kind;
use crate::sync::layout::{self, RemoteEntry, key_for};
use crate::sync::limits::Dir;
use crate::sync::localfs;
use crate::sync::names;
use crate::sync::scan::LocalEntry;
use crate::sync::state::BaseEntry;

/// Multipart part size: S3 needs ≥ 5 MiB parts. opendal holds up to
/// `CHUNK * (UPLOAD_CONCURRENCY + 2)` per upload (the chunk being filled,
/// the last one held back until it is known not to be the final part, and
/// the parts in flight); `memory` reserves that before a stream starts.
/// Two parts in flight, not one: with one, opendal uploads each part
/// inside `write` itself, so a write dropped when the gate closes takes
/// the retry layer's writer with it and the abort never reaches the server.
/// Parts are S3's minimum size, so a stream holds 20 MiB: with 7 MiB parts
/// (28 MiB) the initial push of a 10k tree peaked above 50 MB (issue #12);
/// the cost is a few more part requests (13 instead of 10 for 64 MiB).
const CHUNK: usize = 5 * 1024 * 1024;
const UPLOAD_CONCURRENCY: usize = 2;
const READ_BUF: usize = 256 * 1024;
/// How long aborting an upload may take.
const ABORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a write interrupted by cancellation or fencing may take to
/// finish before the abort (see [`settle`]): a create's answer takes
/// milliseconds; a write waiting for a part slot is cut short.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `md` is still the regular file `l` describes.
fn same_as(md: &std::fs::Metadata, l: &LocalEntry) -> bool {
    md.is_file()
        && md.len() == l.size
        && md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec())
            == l.mtime_ns
}

/// The entry of an opened regular file.
/// One write about to be made: its key, what it expects there, and
/// whether it replaces an object whose old version goes to the trash.
struct Put<'a> {
    key: &'a str,
    expect: Expect,
    trash: bool,
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

    /// Store one local entry as `rel`'s object over `replaces` (what the
    /// pass believes the remote holds); returns the new base. The entry
    /// stored is the file as it is when read, which may be newer than `l`.
    pub(super) async fn upload(
        &self,
        rel: &str,
        l: &LocalEntry,
        replaces: Option<&RemoteEntry>,
        d: &mut Done,
    ) -> Result<BaseEntry, FileErr> {
        let key = key_for(rel, l.kind);
        let put = Put {
            key: &key,
            expect: self.expect_for(replaces, l.kind),
            trash: replaces.is_some_and(|r| r.kind == l.kind),
        };
        self.gate()?;
        let (meta, stored) = match l.kind {
            Kind::Symlink => (self.upload_symlink(&put, l, d).await?, l.clone()),
            Kind::File => {
                let stream_need = (CHUNK * (UPLOAD_CONCURRENCY + 2)) as u64;
                let _mem = self.reserve_upload_memory(l.size, stream_need).await?;
                // The wait may have been long: the gate may have closed.
                self.gate()?;
                self.upload_file(rel, &put, d).await?
            }
        };
        d.uploaded += 1;
        d.remote_changed = true;
        let rid = self.stored_rid(&key, &stored, &meta).await;
        // A kind change (file <-> symlink) leaves the old object behind.
        if let Some(r) = replaces
            && r.kind != l.kind
        {
            self.delete_remote(&key_for(rel, r.kind), Some(r)).await?;
        }
        Ok(BaseEntry::from_local(&stored, rid))
    }

    /// Right before the write that replaces `put.key`: check the version
    /// (local remotes) and keep the old one in the trash. Returns the trash
    /// copy made, to be dropped again if the write is refused.
    async fn before_replace(&self, put: &Put<'_>) -> Result<Option<String>, FileErr> {
        self.precheck(put.key, &put.expect).await?;
        let trashed = if put.trash {
            self.trash(put.key).await?
        } else {
            None
        };
        self.gate()?;
        Ok(trashed)
    }

    /// The outcome of a write: a refused condition drops the trash copy
    /// taken for it (nothing was replaced) and becomes
    /// [`FileErr::RemoteChanged`].
    async fn after_write(
        &self,
        put: &Put<'_>,
        trashed: Option<String>,
        r: opendal::Result<opendal::Metadata>,
    ) -> Result<opendal::Metadata, FileErr> {
        match r {
            Ok(m) => Ok(m),
            Err(e) if refused(&e, &put.expect) => {
                self.untrash(trashed).await;
                Err(FileErr::RemoteChanged)
            }
            Err(e) => Err(ferr("upload failed", e)),
        }
    }

    /// A symlink's object holds its target (what `rclone --links` writes).
    async fn upload_symlink(
        &self,
        put: &Put<'_>,
        l: &LocalEntry,
        d: &mut Done,
    ) -> Result<opendal::Metadata, FileErr> {
        let target = l.link.clone().unwrap_or_default();
        let trashed = self.before_replace(put).await?;
        let mut w = self.op.write_with(put.key, target.clone().into_bytes());
        if let Some(um) = self.user_metadata(l) {
            w = w.user_metadata(um);
        }
        let w = conditioned!(w, self, &put.expect);
        let r = self.net(w).await?;
        let m = self.after_write(put, trashed, r).await?;
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

    /// Store the file at `rel`: small files from a consistent snapshot,
    /// larger ones streamed. Returns what was stored.
    async fn upload_file(
        &self,
        rel: &str,
        put: &Put<'_>,
        d: &mut Done,
    ) -> Result<(opendal::Metadata, LocalEntry), FileErr> {
        let path = names::local_path(&self.root, rel);
        if let Some((body, now)) = snapshot::take(path.clone()).await? {
            let m = self.put_snapshot(put, body, &now, d).await?;
            return Ok((m, now));
        }
        self.stream_file(&path, put, d).await
    }

    /// One PUT of a snapshot.
    async fn put_snapshot(
        &self,
        put: &Put<'_>,
        body: Bytes,
        now: &LocalEntry,
        d: &mut Done,
    ) -> Result<opendal::Metadata, FileErr> {
        let n = body.len();
        self.inner.limits.bytes(Dir::Up, n, self.cancel).await?;
        let trashed = self.before_replace(put).await?;
        let mut w = self.op.write_with(put.key, body);
        if let Some(um) = self.user_metadata(now) {
            w = w.user_metadata(um);
        }
        let w = conditioned!(w, self, &put.expect);
        let r = self.net(w).await?;
        let m = self.after_write(put, trashed, r).await?;
        d.bytes_up += n as u64;
        self.observer.bytes(n as u64);
        Ok(m)
    }

    /// Stream a large file (multipart); the condition is checked when the
    /// upload completes.
    async fn stream_file(
        &self,
        path: &Path,
        put: &Put<'_>,
        d: &mut Done,
    ) -> Result<(opendal::Metadata, LocalEntry), FileErr> {
        let (mut file, now) = open_file(path).await?;
        let mut opts = self
            .op
            .writer_with(put.key)
            .chunk(CHUNK)
            .concurrent(UPLOAD_CONCURRENCY);
        if let Some(um) = self.user_metadata(&now) {
            opts = opts.user_metadata(um);
        }
        let opts = conditioned!(opts, self, &put.expect);
        let mut w = self
            .net(opts)
            .await?
            .map_err(|e| ferr("upload failed", e))?;
        let sent = self.send_file(&mut file, path, &mut w, &now, d).await;
        let trashed = match sent {
            Ok(()) => self.before_replace(put).await,
            Err(e) => Err(e),
        };
        let trashed = match trashed {
            Ok(t) => t,
            Err(e) => {
                // Nothing half-written stays: multipart uploads are aborted.
                abort_writer(&mut w).await;
                return Err(e);
            }
        };
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
        let m = self.after_write(put, trashed, closed).await?;
        Ok((m, now))
    }

    /// Stream `file` into `w` within the bandwidth and request budgets,
    /// then check the file is still exactly `l`, what was opened.
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
            let write = w.write(buf.freeze());
            tokio::pin!(write);
            let stopped = tokio::select! {
                r = &mut write => {
                    r.map_err(|e| ferr("upload failed", e))?;
                    None
                }
                _ = self.cancel.cancelled() => Some(SyncError::Cancelled),
                _ = self.inner.gate.closed() => Some(self.gate_closed()),
            };
            if let Some(e) = stopped {
                settle(write).await;
                return Err(e.into());
            }
            d.bytes_up += n as u64;
            self.observer.bytes(n as u64);
        }
        // Torn-read check: the file must still be exactly what was opened.
        let md = file.metadata().await.map_err(|e| ferr("cannot stat", e))?;
        let path_md = tokio::fs::symlink_metadata(path)
            .await
            .map_err(|_| changed_while_read())?;
        if sent != l.size || !same_as(&md, l) || !same_as(&path_md, l) {
            return Err(changed_while_read());
        }
        Ok(())
    }

    /// Delete a remote object that should still be `was` (compared just
    /// before; its old version goes to the trash first).
    pub(super) async fn delete_remote(
        &self,
        key: &str,
        was: Option<&RemoteEntry>,
    ) -> Result<(), FileErr> {
        let expect = match was {
            Some(r) => self.expect_for(Some(r), r.kind),
            None => Expect::Anything,
        };
        if let Expect::Version(v) = &expect {
            match self.found_rid(key).await? {
                // Already gone: nothing to delete.
                None => return Ok(()),
                Some(f) if f == *v => {}
                Some(_) => return Err(FileErr::RemoteChanged),
            }
        }
        self.trash(key).await?;
        self.gate()?;
        match self.net(self.op.delete(key)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ferr("cannot delete on the remote", e)),
        }
    }
}

/// Open the regular file at `path` (never through a final symlink) and
/// take its entry: what a streamed upload stores.
async fn open_file(path: &Path) -> Result<(tokio::fs::File, LocalEntry), FileErr> {
    let path = path.to_path_buf();
    let (file, md) = blocking(move || snapshot::open_regular(&path)).await??;
    Ok((tokio::fs::File::from_std(file), entry_of(&md)))
}

/// Let a write interrupted by cancellation or fencing finish (bounded by
/// [`SETTLE_TIMEOUT`]) instead of dropping it: a write may be creating the
/// multipart upload, and a create whose answer is dropped leaves an upload
/// the writer never learns the id of, so the abort that follows could not
/// remove it. Once the answer is in, the abort knows the upload.
async fn settle(write: impl std::future::Future<Output = opendal::Result<()>>) {
    let _ = tokio::time::timeout(SETTLE_TIMEOUT, write).await;
}

/// Abort an upload (removes its multipart parts), bounded in time: it runs
/// after cancellation or fencing, when the caller must not wait on a
/// network that may be gone (unfinished parts then expire by bucket policy).
async fn abort_writer(w: &mut opendal::Writer) {
    let why = match tokio::time::timeout(ABORT_TIMEOUT, w.abort()).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => crate::spec::mask_userinfo(&e.to_string()),
        Err(_) => "timed out".to_string(),
    };
    // Known gap: opendal's retry layer holds the writer inside a pending
    // `close()`; a `close()` dropped on fencing or cancellation takes it
    // along, and the abort then fails here ("retry layer is in bad state").
    tracing::warn!(
        "could not abort a multipart upload ({why}); its parts stay until the bucket's \
         lifecycle rule removes them"
    );
}
