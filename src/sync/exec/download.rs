//! Writing to the local root: a download action (with its conflict copy
//! when both sides changed); fetching a remote object into a temp file
//! that is renamed into place (through [`localfs`]), only when the
//! destination still is what the plan saw (new files are made durable in
//! batches: [`Exec::durability_barrier`]); local deletes and renaming a
//! local version aside as a conflict copy, under the same check.
//!
//! A small file (up to [`SMALL_FILE`]) is received into memory and
//! written by one blocking call (directories, temp file, write, check,
//! rename, stat): a restore of 10,000 small files spent most of its CPU
//! on the half-dozen thread-pool round trips per file of the streamed
//! path, on a 2-core host where the S3 server needs that CPU too.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;

use super::apply::Done;
use super::{Exec, FileErr, blocking, changed_locally, ferr};
use crate::sync::SyncError;
use crate::sync::kind::Kind;
use crate::sync::layout::{self, RemoteEntry, key_for};
use crate::sync::limits::Dir;
use crate::sync::localfs;
use crate::sync::names;
use crate::sync::scan::LocalEntry;
use crate::sync::state::BaseEntry;

/// Files up to this size are downloaded whole into memory (at most
/// `transfers` of them at once) and written in one blocking call.
const SMALL_FILE: u64 = 1024 * 1024;

/// Fail unless `dest` still holds `expect` (`None`: nothing).
fn check_unchanged(dest: &Path, expect: &Option<LocalEntry>) -> Result<(), FileErr> {
    let now = LocalEntry::read(dest).map_err(|e| ferr("cannot stat", e))?;
    if now != *expect {
        return Err(changed_locally());
    }
    Ok(())
}

/// What a download just placed at `dest`.
fn read_back(dest: &Path) -> Result<LocalEntry, FileErr> {
    match LocalEntry::read(dest) {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(FileErr::File("vanished right after download".into())),
        Err(e) => Err(ferr("cannot stat", e)),
    }
}

/// The object's body is not the size the plan saw (`got`: what arrived;
/// `None`: more than expected, cut short).
fn size_changed(r: &RemoteEntry, got: Option<u64>) -> FileErr {
    let got = got.map_or_else(|| "more bytes".to_string(), |g| format!("{g} bytes"));
    FileErr::File(format!(
        "remote object changed during download ({got}, expected {}); retried next pass",
        r.size
    ))
}

impl Exec<'_> {
    /// Fetch `src_rel`'s remote entry into local `dest_rel`. `expect` is what
    /// must still be at `dest_rel` for it to be replaced.
    pub(super) async fn download(
        &self,
        dest_rel: &str,
        src_rel: &str,
        r: &RemoteEntry,
        expect: Option<&LocalEntry>,
        d: &mut Done,
    ) -> Result<LocalEntry, FileErr> {
        let key = key_for(src_rel, r.kind);
        if r.kind == Kind::File && r.size <= SMALL_FILE {
            let got = self
                .download_small(&key, dest_rel, r, expect.cloned(), d)
                .await?;
            d.downloaded += 1;
            return Ok(got);
        }
        let root = self.root.clone();
        let rel_owned = dest_rel.to_string();
        let dest = blocking(move || localfs::prepare(&root, &rel_owned))
            .await?
            .map_err(|e| ferr("cannot write locally", e))?;
        let expect = expect.cloned();
        match r.kind {
            Kind::Symlink => {
                self.download_symlink(&key, r, dest.clone(), expect).await?;
                d.bytes_down += r.size;
            }
            Kind::File => self.download_file(&key, r, dest.clone(), expect, d).await?,
        }
        d.downloaded += 1;
        blocking(move || read_back(&dest)).await?
    }

    async fn download_symlink(
        &self,
        key: &str,
        r: &RemoteEntry,
        dest: PathBuf,
        expect: Option<LocalEntry>,
    ) -> Result<(), FileErr> {
        let target = match &r.link {
            Some(t) => t.clone(),
            None => {
                let buf = self
                    .net(self.op.read(key))
                    .await?
                    .map_err(|e| ferr("download failed", e))?;
                String::from_utf8(buf.to_vec())
                    .map_err(|_| FileErr::File("symlink target is not UTF-8".into()))?
            }
        };
        blocking(move || -> Result<(), FileErr> {
            check_unchanged(&dest, &expect)?;
            localfs::place_symlink(&dest, &target).map_err(|e| ferr("cannot create symlink", e))
        })
        .await?
    }

    /// [`Exec::download`] of a file of at most [`SMALL_FILE`] bytes: the
    /// body is received into memory, then one blocking call creates the
    /// directories, writes the temp file, checks the destination and
    /// renames into place, and reads back what is there.
    async fn download_small(
        &self,
        key: &str,
        dest_rel: &str,
        r: &RemoteEntry,
        expect: Option<LocalEntry>,
        d: &mut Done,
    ) -> Result<LocalEntry, FileErr> {
        let mut body = self.get(key, r).await?;
        let (mode, mtime) = self.mode_and_mtime(key, r, &mut body).await?;
        // `r.size` is at most SMALL_FILE: the capacity is bounded.
        let mut buf = Vec::with_capacity(usize::try_from(r.size).unwrap_or(0));
        while let Some(chunk) = self.next_chunk(&mut body, d).await? {
            // Never hold more than the listing promised (a hostile or
            // changing remote cannot make this grow).
            if (buf.len() as u64).saturating_add(chunk.len() as u64) > r.size {
                return Err(size_changed(r, None));
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() as u64 != r.size {
            return Err(size_changed(r, Some(buf.len() as u64)));
        }
        let root = self.root.clone();
        let rel = dest_rel.to_string();
        let durable = expect.is_some();
        let got = blocking(move || -> Result<LocalEntry, FileErr> {
            let dest =
                localfs::prepare(&root, &rel).map_err(|e| ferr("cannot write locally", e))?;
            let tmp = localfs::temp_path(&dest);
            let mut file =
                localfs::create_temp(&tmp).map_err(|e| ferr("cannot create temp file", e))?;
            let written = file
                .write_all(&buf)
                .map_err(|e| ferr("cannot write", e))
                .and_then(|()| check_unchanged(&dest, &expect));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            localfs::finish_file(file, &tmp, &dest, mode, mtime, durable)
                .map_err(|e| ferr("cannot write", e))?;
            read_back(&dest)
        })
        .await??;
        self.placed(durable);
        Ok(got)
    }

    /// Send the GET for `key` and return its body stream.
    async fn get(
        &self,
        key: &str,
        r: &RemoteEntry,
    ) -> Result<opendal::FuturesBytesStream, FileErr> {
        // Building the reader sends nothing; the GET below is the
        // one request to charge.
        let reader = self
            .cancellable(self.op.reader_with(key).content_length_hint(r.size))
            .await?
            .map_err(|e| ferr("download failed", e))?;
        self.net(reader.into_bytes_stream(..))
            .await?
            .map_err(|e| ferr("download failed", e))
    }

    /// The body's next chunk, once the bandwidth budget allows it.
    async fn next_chunk(
        &self,
        body: &mut opendal::FuturesBytesStream,
        d: &mut Done,
    ) -> Result<Option<bytes::Bytes>, FileErr> {
        let next = tokio::select! {
            n = body.try_next() => n,
            _ = self.cancel.cancelled() => return Err(SyncError::Cancelled.into()),
        };
        let Some(chunk) = next.map_err(|e| ferr("download failed", e))? else {
            return Ok(None);
        };
        self.inner
            .limits
            .bytes(Dir::Down, chunk.len(), self.cancel)
            .await?;
        d.bytes_down += chunk.len() as u64;
        self.observer.bytes(chunk.len() as u64);
        Ok(Some(chunk))
    }

    async fn download_file(
        &self,
        key: &str,
        r: &RemoteEntry,
        dest: PathBuf,
        expect: Option<LocalEntry>,
        d: &mut Done,
    ) -> Result<(), FileErr> {
        let mut body = self.get(key, r).await?;
        let (mode, mtime) = self.mode_and_mtime(key, r, &mut body).await?;
        let tmp = localfs::temp_path(&dest);
        let tmp2 = tmp.clone();
        let std_file = blocking(move || localfs::create_temp(&tmp2))
            .await?
            .map_err(|e| ferr("cannot create temp file", e))?;
        let mut file = tokio::fs::File::from_std(std_file);
        if let Err(e) = self.receive(&mut body, &mut file, r, d).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let std_file = file.into_std().await;
        // A new file is made durable by the pass's barrier (one syncfs
        // before its base row is committed: `apply`); one that replaces a
        // local file is fsynced here (see `localfs::finish_file`).
        let durable = expect.is_some();
        blocking(move || -> Result<(), FileErr> {
            if let Err(e) = check_unchanged(&dest, &expect) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            localfs::finish_file(std_file, &tmp, &dest, mode, mtime, durable)
                .map_err(|e| ferr("cannot write", e))
        })
        .await??;
        self.placed(durable);
        Ok(())
    }

    /// The mode and mtime to give the downloaded file: the view's, else
    /// what the GET's response headers say (rclone's `X-Amz-Meta-Mtime`,
    /// coltecd's mode, the server's Last-Modified): no HEAD of its own.
    async fn mode_and_mtime(
        &self,
        key: &str,
        r: &RemoteEntry,
        body: &mut opendal::FuturesBytesStream,
    ) -> Result<(u32, i64), FileErr> {
        let (mut mode, mut mtime) = (r.mode, r.mtime_ns);
        if mode.is_none() || mtime.is_none() {
            let meta = match self.cancellable(body.metadata()).await? {
                Ok(meta) => meta,
                // A service without response metadata (the guarded local
                // remote): ask it directly, which there is a local stat.
                Err(e) if e.kind() == opendal::ErrorKind::Unsupported => self
                    .net(self.op.stat(key))
                    .await?
                    .map_err(|e| ferr("download failed", e))?,
                Err(e) => return Err(ferr("download failed", e)),
            };
            let um = meta.user_metadata();
            mode = mode.or_else(|| um.and_then(|m| m.get("mode")).and_then(layout::parse_mode));
            mtime = mtime
                .or_else(|| {
                    um.and_then(|m| m.get("mtime"))
                        .and_then(layout::parse_mtime)
                })
                .or_else(|| meta.last_modified().and_then(layout::opendal_ns));
        }
        let now = || layout::system_time_ns(std::time::SystemTime::now()).unwrap_or(0);
        Ok((mode.unwrap_or(0o644), mtime.unwrap_or_else(now)))
    }

    /// Stream the object's body into the temp file within the bandwidth
    /// budget; fails when it is not the size the plan saw.
    async fn receive(
        &self,
        body: &mut opendal::FuturesBytesStream,
        file: &mut tokio::fs::File,
        r: &RemoteEntry,
        d: &mut Done,
    ) -> Result<(), FileErr> {
        let mut got: u64 = 0;
        while let Some(chunk) = self.next_chunk(body, d).await? {
            file.write_all(&chunk)
                .await
                .map_err(|e| ferr("cannot write", e))?;
            got = got.saturating_add(chunk.len() as u64);
        }
        file.flush().await.map_err(|e| ferr("cannot write", e))?;
        if got != r.size {
            return Err(size_changed(r, Some(got)));
        }
        Ok(())
    }

    /// A file was renamed into place; one that was not fsynced waits for
    /// the next [`Exec::durability_barrier`].
    fn placed(&self, durable: bool) {
        if !durable {
            self.unsynced
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Make the files this run created durable before their base rows are
    /// committed: one `syncfs` of the root's filesystem for the whole
    /// batch instead of two fsyncs per file (see `localfs::finish_file`).
    /// Nothing to do when no new file was written since the last barrier.
    pub(super) async fn durability_barrier(&self) -> Result<(), SyncError> {
        if !self
            .unsynced
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let root = self.root.clone();
        blocking(move || crate::fsutil::sync_filesystem(&root))
            .await?
            .map_err(|e| {
                // Not recorded: the next barrier tries again.
                self.unsynced
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                SyncError::Internal(format!(
                    "cannot flush downloaded files to disk ({}): {e}",
                    self.root.display()
                ))
            })
    }

    /// Rename the local file aside as a conflict copy (when it still is
    /// what the plan saw).
    pub(super) async fn keep_local_copy(
        &self,
        rel: &str,
        expect: &LocalEntry,
    ) -> Result<String, FileErr> {
        let copy = localfs::conflict_name(rel, &self.inner.host, &self.stamp);
        let from = names::local_path(&self.root, rel);
        let to = names::local_path(&self.root, &copy);
        let expect = expect.clone();
        blocking(move || -> Result<(), FileErr> {
            match LocalEntry::read(&from) {
                Ok(Some(now)) if now == expect => {}
                _ => return Err(changed_locally()),
            }
            if std::fs::symlink_metadata(&to).is_ok() {
                return Err(FileErr::File(format!(
                    "conflict copy {} already exists",
                    to.display()
                )));
            }
            std::fs::rename(&from, &to).map_err(|e| ferr("cannot keep the local version", e))
        })
        .await??;
        Ok(copy)
    }

    /// Delete a local file (when it still is what the plan saw).
    pub(super) async fn delete_local(&self, rel: &str, expect: &LocalEntry) -> Result<(), FileErr> {
        let path = names::local_path(&self.root, rel);
        let expect = expect.clone();
        blocking(move || -> Result<(), FileErr> {
            match LocalEntry::read(&path) {
                Ok(Some(now)) if now == expect => {
                    std::fs::remove_file(&path).map_err(|e| ferr("cannot delete", e))
                }
                Ok(None) => Ok(()),
                _ => Err(changed_locally()),
            }
        })
        .await?
    }

    /// Fetch `rel`; with `keep_local`, the local version is first renamed
    /// aside as a conflict copy (and stored, when this target writes the
    /// remote).
    pub(super) async fn download_action(
        &self,
        rel: String,
        remote: RemoteEntry,
        local: Option<LocalEntry>,
        keep_local: bool,
        d: &mut Done,
    ) -> Result<(), FileErr> {
        let expect = if keep_local && let Some(l) = &local {
            let copy = self.keep_local_copy(&rel, l).await?;
            // The old local version becomes a new file of its own.
            if self.ctx.target.direction.writes_remote() {
                let b = self
                    .upload(&copy, &self.read_local(&copy).await?, None, d)
                    .await?;
                d.changes.push((copy.clone(), Some(b)));
            }
            d.conflicts.push(copy);
            None
        } else {
            local
        };
        let got = self
            .download(&rel, &rel, &remote, expect.as_ref(), d)
            .await?;
        d.changes
            .push((rel, Some(BaseEntry::from_local(&got, remote.rid.clone()))));
        Ok(())
    }

    /// Both sides changed: the remote version lands as a conflict copy next
    /// to the local one; a target that writes the remote stores both.
    pub(super) async fn conflict_action(
        &self,
        rel: String,
        local: LocalEntry,
        remote: RemoteEntry,
        d: &mut Done,
    ) -> Result<(), FileErr> {
        let copy = localfs::conflict_name(&rel, &self.inner.host, &self.stamp);
        let got = self.download(&copy, &rel, &remote, None, d).await?;
        d.conflicts.push(copy.clone());
        if self.ctx.target.direction.writes_remote() {
            let b = self.upload(&copy, &got, None, d).await?;
            d.changes.push((copy, Some(b)));
            let b = self.upload(&rel, &local, Some(&remote), d).await?;
            d.changes.push((rel, Some(b)));
        }
        Ok(())
    }
}
