//! Executing a plan against one target, and the remote-facing operations
//! of a pass (reconcile, manifest, trash).
//!
//! Every remote call first takes a slot from the shared request limiter and
//! races the pass's cancellation token; every remote write first checks the
//! write gate, and uploads abort when the gate closes mid-transfer.
//! Transfers run `transfers` at a time, remote checks `checkers` at a time.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt, stream};
use opendal::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::limits::Dir;
use super::plan::Action;
use super::remote::{
    self, DIRTY_KEY, HostileKey, LINK_SUFFIX, MANIFEST_KEY, Manifest, RemoteEntry, TRASH_PREFIX,
    key_for,
};
use super::scan::{Kind, LocalEntry};
use super::state::BaseEntry;
use super::{FailedFile, Inner, PassObserver, PassReport, SyncError, TargetCtx, localfs};

/// Multipart part size: S3 needs ≥ 5 MiB parts; memory per upload is
/// bounded by `CHUNK * UPLOAD_CONCURRENCY` plus one read buffer.
const CHUNK: usize = 8 * 1024 * 1024;
const UPLOAD_CONCURRENCY: usize = 2;
const READ_BUF: usize = 256 * 1024;
/// Base changes are committed every this many finished actions, so a crash
/// in a long pass does not forget what was already transferred.
const CHECKPOINT_EVERY: usize = 256;
/// How long aborting an upload may take.
const ABORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Symlink objects larger than this are not link targets.
const MAX_LINK: u64 = 4096;

/// How one action failed.
enum FileErr {
    /// Ends the pass (cancelled, fenced).
    Fatal(SyncError),
    /// Reported for this file; the pass goes on.
    File(String),
    /// Not started because the pass is stopping.
    Skipped,
}

impl From<SyncError> for FileErr {
    fn from(e: SyncError) -> Self {
        FileErr::Fatal(e)
    }
}

fn ferr(what: &str, e: impl std::fmt::Display) -> FileErr {
    FileErr::File(format!("{what}: {e}"))
}

/// What executing a plan changed.
pub(super) struct Outcome {
    pub changes: BTreeMap<String, Option<BaseEntry>>,
    pub remote_changed: bool,
    pub fatal: Option<SyncError>,
}

/// The remote view a full reconcile produced.
pub(super) struct RemoteView {
    pub entries: BTreeMap<String, RemoteEntry>,
    pub problems: Vec<FailedFile>,
    /// The manifest does not describe what is there (write a fresh one).
    pub manifest_stale: bool,
    /// Identity of the manifest object as listed.
    pub manifest_rid: Option<String>,
    /// `.coltec/manifest.dirty` is present.
    pub dirty_marker: bool,
}

#[derive(Default)]
struct Done {
    changes: Vec<(String, Option<BaseEntry>)>,
    uploaded: u64,
    downloaded: u64,
    deleted_remote: u64,
    deleted_local: u64,
    conflicts: Vec<String>,
    bytes_up: u64,
    bytes_down: u64,
    remote_changed: bool,
}

pub(super) struct Exec<'a> {
    inner: &'a Arc<Inner>,
    op: opendal::Operator,
    /// Persist base changes while the plan runs (not for restores elsewhere).
    persist: bool,
    ctx: &'a TargetCtx,
    root: PathBuf,
    cancel: &'a CancellationToken,
    observer: &'a dyn PassObserver,
    /// Timestamp of this pass (trash dir, conflict names).
    stamp: String,
}

impl<'a> Exec<'a> {
    pub(super) fn new(
        inner: &'a Arc<Inner>,
        ctx: &'a TargetCtx,
        op: opendal::Operator,
        root: PathBuf,
        persist: bool,
        cancel: &'a CancellationToken,
        observer: &'a dyn PassObserver,
    ) -> Exec<'a> {
        Exec {
            inner,
            op,
            persist,
            ctx,
            root,
            cancel,
            observer,
            stamp: remote::stamp(jiff::Timestamp::now()),
        }
    }

    fn name(&self) -> &str {
        &self.ctx.target.name
    }

    /// One remote call: a request slot, then the call raced against cancellation.
    async fn net<T>(
        &self,
        fut: impl IntoFuture<Output = opendal::Result<T>>,
    ) -> Result<opendal::Result<T>, SyncError> {
        self.request_slot().await?;
        self.cancellable(fut).await
    }

    /// A call that sends no request of its own (e.g. building a reader),
    /// raced against cancellation but not charged to the request budget.
    async fn cancellable<T>(
        &self,
        fut: impl IntoFuture<Output = opendal::Result<T>>,
    ) -> Result<opendal::Result<T>, SyncError> {
        tokio::select! {
            r = fut.into_future() => Ok(r),
            _ = self.cancel.cancelled() => Err(SyncError::Cancelled),
        }
    }

    /// The request-rate limit protects shared buckets; a local directory
    /// has no rate to protect.
    async fn request_slot(&self) -> Result<(), SyncError> {
        if self.ctx.local_dir.is_none() {
            self.inner.limits.request(self.cancel).await?;
        }
        Ok(())
    }

    fn gate(&self) -> Result<(), SyncError> {
        self.inner.gate.check().map_err(|f| SyncError::Fenced {
            target: self.name().to_string(),
            reason: f.reason,
        })
    }

    fn remote_err(&self, op: &str, source: opendal::Error) -> SyncError {
        SyncError::Remote {
            target: self.name().to_string(),
            op: op.to_string(),
            source: Box::new(source),
        }
    }

    // ----- reconcile -------------------------------------------------------

    /// LIST the target and build the remote view, using the manifest and the
    /// base to avoid per-object HEADs.
    pub(super) async fn reconcile(
        &self,
        base: &BTreeMap<String, BaseEntry>,
    ) -> Result<RemoteView, SyncError> {
        let op = &self.op;
        let manifest = match self.net(op.read(MANIFEST_KEY)).await? {
            Ok(buf) => serde_json::from_slice::<Manifest>(&buf.to_vec()).unwrap_or_else(|e| {
                tracing::warn!(
                    target_name = self.name(),
                    "ignoring unreadable manifest: {e}"
                );
                Manifest::default()
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(self.remote_err("reading the manifest", e)),
        };
        let listed = match self.net(op.list_with("").recursive(true)).await? {
            Ok(l) => l,
            // A local remote whose directory does not exist yet is empty (on
            // S3 NotFound means the bucket is missing: an error).
            Err(e) if e.kind() == ErrorKind::NotFound && self.ctx.local_dir.is_some() => Vec::new(),
            Err(e) => return Err(self.remote_err("listing", e)),
        };
        let mut view = RemoteView {
            entries: BTreeMap::new(),
            problems: Vec::new(),
            manifest_stale: false,
            manifest_rid: None,
            dirty_marker: false,
        };
        let mut unknown: Vec<(String, String, RemoteEntry, Option<i64>)> = Vec::new();
        let mut manifest_listed_without_etag = false;
        for entry in listed {
            let (key, meta) = entry.into_parts();
            if meta.is_dir() {
                continue;
            }
            if key == MANIFEST_KEY {
                view.manifest_rid = Some(object_rid(&meta));
                manifest_listed_without_etag = meta.etag().is_none();
                continue;
            }
            if key == DIRTY_KEY {
                view.dirty_marker = true;
                continue;
            }
            let (rel, kind) = match remote::rel_for_key(&key) {
                Ok(Some(x)) => x,
                Ok(None) => continue,
                Err(HostileKey(why)) => {
                    view.problems.push(FailedFile {
                        path: key.clone(),
                        reason: format!(
                            "refused remote key ({why}); it would land outside the sync root"
                        ),
                    });
                    continue;
                }
            };
            let size = meta.content_length();
            let lm = meta.last_modified().and_then(remote::opendal_ns);
            let rid = meta
                .etag()
                .map(str::to_string)
                .unwrap_or_else(|| remote::fallback_rid(size, lm));
            if view.entries.contains_key(&rel) {
                view.problems.push(FailedFile {
                    path: key.clone(),
                    reason: format!(
                        "both '{rel}' and '{rel}{LINK_SUFFIX}' exist on the remote; keeping one"
                    ),
                });
                continue;
            }
            let known = manifest
                .files
                .get(&rel)
                .filter(|m| m.rid == rid && m.kind == kind)
                .or_else(|| base.get(&rel).filter(|b| b.rid == rid && b.kind == kind));
            match known {
                Some(k) => {
                    view.entries.insert(rel, RemoteEntry::from_base(k));
                }
                None => {
                    unknown.push((
                        rel,
                        key,
                        RemoteEntry {
                            kind,
                            size,
                            rid,
                            mtime_ns: lm,
                            mode: None,
                            link: None,
                        },
                        lm,
                    ));
                }
            }
        }
        if manifest.files.len() != view.entries.len() + unknown.len() {
            view.manifest_stale = true;
        }
        // The manifest's identity is its ETag (what writing it and checking
        // it with a HEAD see); a listing without ETags (s3s-fs) needs a HEAD.
        if manifest_listed_without_etag && self.ctx.local_dir.is_none() {
            match self.net(op.stat(MANIFEST_KEY)).await? {
                Ok(m) => view.manifest_rid = Some(object_rid(&m)),
                Err(e) if e.kind() == ErrorKind::NotFound => view.manifest_rid = None,
                Err(e) => return Err(self.remote_err("reading the manifest's identity", e)),
            }
        }
        let checkers = self.ctx.target.checkers.max(1);
        // An object the listing could not identify (no ETag in the listing,
        // as on s3s-fs) is checked against the manifest and the base by what
        // the HEAD or GET tells: the same ETag, or the same link target, is
        // the same object. Only what still differs makes the manifest stale.
        let manifest = &manifest;
        let confirm = move |rel: &str, e: RemoteEntry| -> (RemoteEntry, bool) {
            let same = |k: &&BaseEntry| {
                k.kind == e.kind
                    && k.size == e.size
                    && match e.kind {
                        Kind::File => k.rid == e.rid,
                        Kind::Symlink => e.link.is_some() && k.link == e.link,
                    }
            };
            match manifest.files.get(rel).filter(same) {
                Some(k) => (RemoteEntry::from_base(k), true),
                None => match base.get(rel).filter(same) {
                    Some(k) => (RemoteEntry::from_base(k), false),
                    None => (e, false),
                },
            }
        };
        let checked: Vec<Result<(String, RemoteEntry), (String, String)>> = stream::iter(unknown)
            .map(|(rel, key, mut e, lm)| async move {
                match e.kind {
                    Kind::File if self.ctx.user_metadata => {
                        match self.net(self.op.stat(&key)).await {
                            Ok(Ok(m)) => {
                                if let Some(etag) = m.etag() {
                                    e.rid = etag.to_string();
                                }
                                if let Some(um) = m.user_metadata() {
                                    if let Some(t) = um.get("mtime").and_then(remote::parse_mtime) {
                                        e.mtime_ns = Some(t);
                                    }
                                    e.mode = um.get("mode").and_then(remote::parse_mode);
                                }
                                if e.mtime_ns.is_none() {
                                    e.mtime_ns = lm;
                                }
                                Ok((rel, e))
                            }
                            Ok(Err(err)) => Err((key, format!("cannot read metadata: {err}"))),
                            Err(_) => Err((key, "cancelled".into())),
                        }
                    }
                    Kind::File => Ok((rel, e)),
                    Kind::Symlink => {
                        if e.size > MAX_LINK {
                            return Err((
                                key,
                                "symlink object too large to be a link target".into(),
                            ));
                        }
                        match self.net(self.op.read(&key)).await {
                            Ok(Ok(buf)) => match String::from_utf8(buf.to_vec()) {
                                Ok(t) if !t.is_empty() && !t.contains('\0') => {
                                    e.link = Some(t);
                                    Ok((rel, e))
                                }
                                _ => Err((key, "symlink object is not a valid link target".into())),
                            },
                            Ok(Err(err)) => {
                                Err((key, format!("cannot read symlink object: {err}")))
                            }
                            Err(_) => Err((key, "cancelled".into())),
                        }
                    }
                }
            })
            .buffer_unordered(checkers)
            .collect()
            .await;
        if self.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        for c in checked {
            match c {
                Ok((rel, e)) => {
                    let (e, in_manifest) = confirm(&rel, e);
                    view.manifest_stale |= !in_manifest;
                    view.entries.insert(rel, e);
                }
                Err((path, reason)) => {
                    view.manifest_stale = true;
                    view.problems.push(FailedFile { path, reason });
                }
            }
        }
        Ok(view)
    }

    // ----- checking ----------------------------------------------------------

    /// Turn would-be conflicts whose two sides have the same content (e.g.
    /// a fresh checkout of files the remote already holds, with new mtimes)
    /// into adoptions, `checkers` at a time. Content is compared with the
    /// S3 ETag (MD5 of single-part objects) or byte by byte on local
    /// remotes; anything else stays a conflict (safe, never lossy).
    pub(super) async fn settle_equal(&self, actions: Vec<Action>) -> Vec<Action> {
        let checkers = self.ctx.target.checkers.max(1);
        stream::iter(actions)
            .map(|a| async move {
                let (rel, l, r) = match &a {
                    Action::Conflict { rel, local, remote }
                    | Action::Download {
                        rel,
                        remote,
                        local: Some(local),
                        keep_local: true,
                    } => (rel, local, remote),
                    _ => return a,
                };
                if l.kind != Kind::File || r.kind != Kind::File || l.size != r.size {
                    return a;
                }
                if self.same_content(rel, l, r).await {
                    Action::Adopt {
                        rel: rel.clone(),
                        local: l.clone(),
                        remote: r.clone(),
                    }
                } else {
                    a
                }
            })
            .buffered(checkers)
            .collect()
            .await
    }

    async fn same_content(&self, rel: &str, l: &LocalEntry, r: &RemoteEntry) -> bool {
        let path = self.root.join(rel);
        let expect = l.clone();
        if let Some(dir) = &self.ctx.local_dir {
            let other = dir.join(key_for(rel, Kind::File));
            return blocking(move || {
                let same = files_equal(&path, &other).unwrap_or(false);
                same && LocalEntry::read(&path).ok().flatten() == Some(expect)
            })
            .await
            .unwrap_or(false);
        }
        let etag = r.rid.trim_matches('"').to_ascii_lowercase();
        if etag.len() != 32 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        blocking(move || {
            let sum = md5_hex(&path).ok();
            sum.as_deref() == Some(etag.as_str())
                && LocalEntry::read(&path).ok().flatten() == Some(expect)
        })
        .await
        .unwrap_or(false)
    }

    // ----- executing -------------------------------------------------------

    pub(super) async fn run(&self, actions: Vec<Action>, report: &mut PassReport) -> Outcome {
        let transfers = self.ctx.target.transfers.max(1);
        // After a fatal error no new action starts, but those in flight are
        // drained (not dropped), so each aborts its own multipart upload or
        // temp file and whatever did finish is recorded.
        let stopping = std::sync::atomic::AtomicBool::new(false);
        let stopping = &stopping;
        let mut results = stream::iter(actions)
            .map(|a| async move {
                let rel = a.rel().to_string();
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return (rel, Err(FileErr::Skipped));
                }
                let r = self.action(a).await;
                self.observer.file_done();
                (rel, r)
            })
            .buffer_unordered(transfers);
        let mut out = Outcome {
            changes: BTreeMap::new(),
            remote_changed: false,
            fatal: None,
        };
        let mut unsaved: BTreeMap<String, Option<BaseEntry>> = BTreeMap::new();
        while let Some((rel, r)) = results.next().await {
            match r {
                Ok(d) => {
                    if self.persist {
                        unsaved.extend(d.changes.iter().cloned());
                        if unsaved.len() >= CHECKPOINT_EVERY {
                            self.checkpoint(std::mem::take(&mut unsaved)).await;
                        }
                    }
                    out.changes.extend(d.changes);
                    out.remote_changed |= d.remote_changed;
                    report.uploaded += d.uploaded;
                    report.downloaded += d.downloaded;
                    report.deleted_remote += d.deleted_remote;
                    report.deleted_local += d.deleted_local;
                    report.conflicts.extend(d.conflicts);
                    report.bytes_up += d.bytes_up;
                    report.bytes_down += d.bytes_down;
                }
                Err(FileErr::File(reason)) => report.failed.push(FailedFile { path: rel, reason }),
                Err(FileErr::Fatal(e)) => {
                    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                    if out.fatal.is_none() {
                        out.fatal = Some(e);
                    }
                }
                Err(FileErr::Skipped) => {}
            }
        }
        // Uploads that finished before a fatal error was seen may have
        // written; assume the manifest needs rewriting.
        if out.fatal.is_some() && !out.changes.is_empty() {
            out.remote_changed = true;
        }
        out
    }

    /// Commit finished changes early (the pass commits everything at its
    /// end anyway, so a failure here only costs re-checking after a crash).
    async fn checkpoint(&self, changes: BTreeMap<String, Option<BaseEntry>>) {
        let inner = self.inner.clone();
        let name = self.name().to_string();
        match blocking(move || inner.db.apply(&name, &changes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("checkpoint of sync state failed: {e}"),
            Err(e) => tracing::warn!("checkpoint of sync state failed: {e}"),
        }
    }

    async fn action(&self, a: Action) -> Result<Done, FileErr> {
        let mut d = Done::default();
        match a {
            Action::Upload {
                rel,
                local,
                replaces,
            } => {
                let b = self.upload(&rel, &local, replaces.as_ref(), &mut d).await?;
                d.changes.push((rel, Some(b)));
            }
            Action::Download {
                rel,
                remote,
                local,
                keep_local,
            } => {
                if keep_local && let Some(l) = &local {
                    let copy = self.keep_local_copy(&rel, l).await?;
                    // The old local version becomes a new file of its own.
                    if self.ctx.target.direction.writes_remote() {
                        let b = self
                            .upload(&copy, &self.read_local(&copy).await?, None, &mut d)
                            .await?;
                        d.changes.push((copy.clone(), Some(b)));
                    }
                    d.conflicts.push(copy);
                    let got = self.download(&rel, &rel, &remote, None, &mut d).await?;
                    d.changes
                        .push((rel, Some(BaseEntry::from_local(&got, remote.rid.clone()))));
                } else {
                    let got = self
                        .download(&rel, &rel, &remote, local.as_ref(), &mut d)
                        .await?;
                    d.changes
                        .push((rel, Some(BaseEntry::from_local(&got, remote.rid.clone()))));
                }
            }
            Action::DeleteRemote { rel, remote } => {
                self.delete_remote(&key_for(&rel, remote.kind)).await?;
                d.deleted_remote += 1;
                d.remote_changed = true;
                d.changes.push((rel, None));
            }
            Action::DeleteLocal { rel, local } => {
                self.delete_local(&rel, &local).await?;
                d.deleted_local += 1;
                d.changes.push((rel, None));
            }
            Action::Conflict { rel, local, remote } => {
                let copy = localfs::conflict_name(&rel, &self.inner.host, &self.stamp);
                let got = self.download(&copy, &rel, &remote, None, &mut d).await?;
                d.conflicts.push(copy.clone());
                if self.ctx.target.direction.writes_remote() {
                    let b = self.upload(&copy, &got, None, &mut d).await?;
                    d.changes.push((copy, Some(b)));
                    let b = self.upload(&rel, &local, Some(&remote), &mut d).await?;
                    d.changes.push((rel, Some(b)));
                }
            }
            Action::Adopt { rel, local, remote } => {
                d.changes
                    .push((rel, Some(BaseEntry::from_local(&local, remote.rid))));
                d.remote_changed = true;
            }
            Action::Forget { rel } => d.changes.push((rel, None)),
        }
        Ok(d)
    }

    async fn read_local(&self, rel: &str) -> Result<LocalEntry, FileErr> {
        let path = self.root.join(rel);
        match blocking(move || LocalEntry::read(&path)).await? {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(FileErr::File("vanished".into())),
            Err(e) => Err(ferr("cannot read", e)),
        }
    }

    /// Rename the local file aside as a conflict copy (when it still is
    /// what the plan saw).
    async fn keep_local_copy(&self, rel: &str, expect: &LocalEntry) -> Result<String, FileErr> {
        let copy = localfs::conflict_name(rel, &self.inner.host, &self.stamp);
        let from = self.root.join(rel);
        let to = self.root.join(&copy);
        let expect = expect.clone();
        blocking(move || -> Result<(), FileErr> {
            match LocalEntry::read(&from) {
                Ok(Some(now)) if now == expect => {}
                _ => {
                    return Err(FileErr::File(
                        "changed locally during the pass; retried next pass".into(),
                    ));
                }
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

    async fn delete_local(&self, rel: &str, expect: &LocalEntry) -> Result<(), FileErr> {
        let path = self.root.join(rel);
        let expect = expect.clone();
        blocking(move || -> Result<(), FileErr> {
            match LocalEntry::read(&path) {
                Ok(Some(now)) if now == expect => {
                    std::fs::remove_file(&path).map_err(|e| ferr("cannot delete", e))
                }
                Ok(None) => Ok(()),
                _ => Err(FileErr::File(
                    "changed locally during the pass; retried next pass".into(),
                )),
            }
        })
        .await?
    }

    /// Copy `key` into this pass's trash dir (if the trash is enabled).
    async fn trash(&self, key: &str) -> Result<(), FileErr> {
        if self.inner.spec.safety.trash_retention.is_zero() {
            return Ok(());
        }
        self.gate()?;
        let to = format!("{TRASH_PREFIX}{}/{key}", self.stamp);
        match self.net(self.op.copy(key, &to)).await? {
            Ok(_) => Ok(()),
            // Already gone behind our back: nothing to keep.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ferr("cannot move the old version to the trash", e)),
        }
    }

    async fn delete_remote(&self, key: &str) -> Result<(), FileErr> {
        self.trash(key).await?;
        self.gate()?;
        match self.net(self.op.delete(key)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ferr("cannot delete on the remote", e)),
        }
    }

    fn user_metadata(&self, l: &LocalEntry) -> Option<Vec<(String, String)>> {
        self.ctx.user_metadata.then(|| {
            vec![
                ("mtime".to_string(), remote::format_mtime(l.mtime_ns)),
                ("mode".to_string(), remote::format_mode(l.kind, l.mode)),
            ]
        })
    }

    /// Store one local entry as `rel`'s object; returns the new base.
    async fn upload(
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
            Kind::Symlink => {
                let target = l.link.clone().unwrap_or_default();
                let mut w = self.op.write_with(&key, target.clone().into_bytes());
                if let Some(um) = self.user_metadata(l) {
                    w = w.user_metadata(um);
                }
                let m = self.net(w).await?.map_err(|e| ferr("upload failed", e))?;
                d.bytes_up += target.len() as u64;
                self.observer.bytes(target.len() as u64);
                m
            }
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

    /// The identity of what was just stored. Local remotes get the file's
    /// real mtime and mode, which makes the identity `size:mtime`.
    async fn stored_rid(&self, key: &str, l: &LocalEntry, meta: &opendal::Metadata) -> String {
        if let Some(dir) = &self.ctx.local_dir {
            let path = dir.join(key);
            let (mtime, mode, kind) = (l.mtime_ns, l.mode, l.kind);
            let set = blocking(move || -> std::io::Result<Option<i64>> {
                // Read-only is enough: futimens needs ownership, not write access
                // (a stored 0444 file must still get its times).
                let f = std::fs::File::open(&path)?;
                f.set_modified(localfs::system_time(mtime))?;
                if kind == Kind::File {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                }
                Ok(f.metadata()?
                    .modified()
                    .ok()
                    .and_then(remote::system_time_ns))
            })
            .await;
            if let Ok(Ok(Some(m))) = set {
                return remote::fallback_rid(meta.content_length(), Some(m));
            }
        }
        meta.etag().map(str::to_string).unwrap_or_else(|| {
            remote::fallback_rid(
                meta.content_length(),
                meta.last_modified().and_then(remote::opendal_ns),
            )
        })
    }

    async fn upload_file(
        &self,
        rel: &str,
        key: &str,
        l: &LocalEntry,
        d: &mut Done,
    ) -> Result<opendal::Metadata, FileErr> {
        let path = self.root.join(rel);
        let changed = || FileErr::File("changed while being read; retried next pass".into());
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .await
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    changed()
                } else {
                    ferr("cannot open", e)
                }
            })?;
        let same = |md: &std::fs::Metadata| {
            use std::os::unix::fs::MetadataExt;
            md.is_file()
                && md.len() == l.size
                && md
                    .mtime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(md.mtime_nsec())
                    == l.mtime_ns
        };
        let md = file.metadata().await.map_err(|e| ferr("cannot stat", e))?;
        if !same(&md) {
            return Err(changed());
        }
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
        let mut sent: u64 = 0;
        let result: Result<(), FileErr> = async {
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
                    return Err(changed());
                }
                // Each new part is one more request.
                if sent / CHUNK as u64 != before {
                    self.request_slot().await?;
                }
                self.inner.limits.bytes(Dir::Up, n, self.cancel).await?;
                tokio::select! {
                    r = w.write(buf.freeze()) => r.map_err(|e| ferr("upload failed", e))?,
                    _ = self.cancel.cancelled() => return Err(SyncError::Cancelled.into()),
                    _ = self.inner.gate.closed() => return Err(self.gate().err().unwrap_or(SyncError::Cancelled).into()),
                }
                d.bytes_up += n as u64;
                self.observer.bytes(n as u64);
            }
            // Torn-read check: the file must still be exactly what was scanned.
            let md = file.metadata().await.map_err(|e| ferr("cannot stat", e))?;
            let path_md = tokio::fs::symlink_metadata(&path).await.map_err(|_| changed())?;
            if sent != l.size || !same(&md) || !same(&path_md) {
                return Err(changed());
            }
            self.gate()?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
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
                return Err(self.gate().err().unwrap_or(SyncError::Cancelled).into());
            }
        };
        closed.map_err(|e| ferr("upload failed", e))
    }

    /// Fetch `src_rel`'s remote entry into local `dest_rel`. `expect` is what
    /// must still be at `dest_rel` for it to be replaced.
    async fn download(
        &self,
        dest_rel: &str,
        src_rel: &str,
        r: &RemoteEntry,
        expect: Option<&LocalEntry>,
        d: &mut Done,
    ) -> Result<LocalEntry, FileErr> {
        let key = key_for(src_rel, r.kind);
        let root = self.root.clone();
        let rel_owned = dest_rel.to_string();
        let dest = blocking(move || localfs::prepare(&root, &rel_owned))
            .await?
            .map_err(|e| ferr("cannot write locally", e))?;
        let expect = expect.cloned();
        let check_unchanged = {
            let dest = dest.clone();
            move || -> Result<(), FileErr> {
                let now = LocalEntry::read(&dest).map_err(|e| ferr("cannot stat", e))?;
                if now != expect {
                    return Err(FileErr::File(
                        "changed locally during the pass; retried next pass".into(),
                    ));
                }
                Ok(())
            }
        };
        match r.kind {
            Kind::Symlink => {
                let target = match &r.link {
                    Some(t) => t.clone(),
                    None => {
                        let buf = self
                            .net(self.op.read(&key))
                            .await?
                            .map_err(|e| ferr("download failed", e))?;
                        String::from_utf8(buf.to_vec())
                            .map_err(|_| FileErr::File("symlink target is not UTF-8".into()))?
                    }
                };
                let dest2 = dest.clone();
                blocking(move || -> Result<(), FileErr> {
                    check_unchanged()?;
                    localfs::place_symlink(&dest2, &target)
                        .map_err(|e| ferr("cannot create symlink", e))
                })
                .await??;
                d.bytes_down += r.size;
            }
            Kind::File => {
                // Building the reader sends nothing; the GET below is the
                // one request to charge.
                let reader = self
                    .cancellable(self.op.reader_with(&key).content_length_hint(r.size))
                    .await?
                    .map_err(|e| ferr("download failed", e))?;
                let mut body = self
                    .net(reader.into_bytes_stream(..))
                    .await?
                    .map_err(|e| ferr("download failed", e))?;
                let tmp = localfs::temp_path(&dest);
                let tmp2 = tmp.clone();
                let std_file = blocking(move || localfs::create_temp(&tmp2))
                    .await?
                    .map_err(|e| ferr("cannot create temp file", e))?;
                let mut file = tokio::fs::File::from_std(std_file);
                let mut got: u64 = 0;
                let streamed: Result<(), FileErr> = async {
                    loop {
                        let next = tokio::select! {
                            n = body.try_next() => n,
                            _ = self.cancel.cancelled() => return Err(SyncError::Cancelled.into()),
                        };
                        let Some(chunk) = next.map_err(|e| ferr("download failed", e))? else {
                            break;
                        };
                        self.inner.limits.bytes(Dir::Down, chunk.len(), self.cancel).await?;
                        file.write_all(&chunk).await.map_err(|e| ferr("cannot write", e))?;
                        got += chunk.len() as u64;
                        d.bytes_down += chunk.len() as u64;
                        self.observer.bytes(chunk.len() as u64);
                    }
                    file.flush().await.map_err(|e| ferr("cannot write", e))?;
                    if got != r.size {
                        return Err(FileErr::File(format!(
                            "remote object changed during download ({got} bytes, expected {}); retried next pass",
                            r.size
                        )));
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = streamed {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
                let std_file = file.into_std().await;
                let mode = r.mode.unwrap_or(0o644);
                let mtime = r.mtime_ns.unwrap_or_else(|| {
                    remote::system_time_ns(std::time::SystemTime::now()).unwrap_or(0)
                });
                let dest2 = dest.clone();
                blocking(move || -> Result<(), FileErr> {
                    if let Err(e) = check_unchanged() {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e);
                    }
                    localfs::finish_file(std_file, &tmp, &dest2, mode, mtime)
                        .map_err(|e| ferr("cannot write", e))
                })
                .await??;
            }
        }
        d.downloaded += 1;
        match blocking(move || LocalEntry::read(&dest)).await? {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(FileErr::File("vanished right after download".into())),
            Err(e) => Err(ferr("cannot stat", e)),
        }
    }

    // ----- manifest and trash ---------------------------------------------

    /// Write the manifest; returns its identity.
    pub(super) async fn write_manifest(
        &self,
        base: &BTreeMap<String, BaseEntry>,
    ) -> Result<String, SyncError> {
        let m = remote::ManifestRef {
            version: Manifest::VERSION,
            writer: &self.inner.host,
            files: base,
        };
        let body = serde_json::to_vec(&m).map_err(|e| SyncError::Internal(e.to_string()))?;
        self.gate()?;
        let meta = self
            .net(self.op.write(MANIFEST_KEY, body))
            .await?
            .map_err(|e| self.remote_err("writing the manifest", e))?;
        Ok(object_rid(&meta))
    }

    /// Mark the manifest as not describing the remote (see [`DIRTY_KEY`]).
    pub(super) async fn write_dirty_marker(&self) -> Result<(), SyncError> {
        let body = serde_json::json!({
            "writer": self.inner.host,
            "since": jiff::Timestamp::now().to_string(),
        })
        .to_string();
        self.gate()?;
        self.net(self.op.write(DIRTY_KEY, body))
            .await?
            .map_err(|e| self.remote_err("writing the manifest's dirty marker", e))?;
        Ok(())
    }

    /// The manifest describes the remote again.
    pub(super) async fn delete_dirty_marker(&self) -> Result<(), SyncError> {
        self.gate()?;
        match self.net(self.op.delete(DIRTY_KEY)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.remote_err("removing the manifest's dirty marker", e)),
        }
    }

    /// Whether `.coltec/manifest.dirty` exists (one HEAD).
    pub(super) async fn dirty_marker_exists(&self) -> Result<bool, SyncError> {
        match self.net(self.op.stat(DIRTY_KEY)).await? {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.remote_err("checking the manifest's dirty marker", e)),
        }
    }

    /// Whether the manifest still has identity `rid` (one HEAD on S3, a
    /// stat of a local file on local remotes): then no other coltecd wrote
    /// this target since this host last saw it. Not a conditional GET: a
    /// server that ignores `If-None-Match` on GET (s3s-fs) answers 200 to
    /// an unchanged manifest, and a HEAD's ETag is compared on every server.
    pub(super) async fn manifest_unchanged(&self, rid: &str) -> Result<bool, SyncError> {
        let op = &self.op;
        match self.net(op.stat(MANIFEST_KEY)).await? {
            Ok(m) => Ok(object_rid(&m) == rid),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.remote_err("checking the manifest", e)),
        }
    }

    /// Delete trash generations older than the retention.
    pub(super) async fn prune_trash(&self, report: &mut PassReport) -> Result<(), SyncError> {
        let retention = self.inner.spec.safety.trash_retention;
        let op = &self.op;
        let dirs = match self.net(op.list(TRASH_PREFIX)).await? {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.remote_err("listing the trash", e)),
        };
        let now = jiff::Timestamp::now();
        for dir in dirs {
            let name = dir.name().trim_end_matches('/');
            let Some(at) = remote::parse_stamp(name) else {
                continue;
            };
            let age = now.duration_since(at);
            let keep = std::time::Duration::try_from(age)
                .map(|a| a < retention)
                .unwrap_or(true);
            if keep && !retention.is_zero() {
                continue;
            }
            let prefix = dir.path().to_string();
            if !prefix.starts_with(TRASH_PREFIX) || prefix.len() <= TRASH_PREFIX.len() {
                continue;
            }
            let keys = match self.net(op.list_with(&prefix).recursive(true)).await? {
                Ok(l) => l,
                Err(e) => {
                    report.failed.push(FailedFile {
                        path: prefix.clone(),
                        reason: format!("cannot list expired trash: {e}"),
                    });
                    continue;
                }
            };
            self.gate()?;
            let paths: Vec<String> = keys.into_iter().map(|e| e.path().to_string()).collect();
            if let Err(e) = self.net(op.delete_iter(paths)).await? {
                report.failed.push(FailedFile {
                    path: prefix.clone(),
                    reason: format!("cannot prune expired trash: {e}"),
                });
            }
            // Local remotes keep the emptied directories; drop them too.
            if let Some(root) = &self.ctx.local_dir {
                let dir = root.join(&prefix);
                let _ = blocking(move || std::fs::remove_dir_all(dir)).await;
            }
        }
        Ok(())
    }
}

fn files_equal(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<bool> {
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b)?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn md5_hex(path: &std::path::Path) -> std::io::Result<String> {
    use md5::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Abort an upload (removes its multipart parts), bounded in time: it runs
/// after cancellation or fencing, when the caller must not wait on a
/// network that may be gone (unfinished parts then expire by bucket policy).
async fn abort_writer(w: &mut opendal::Writer) {
    let _ = tokio::time::timeout(ABORT_TIMEOUT, w.abort()).await;
}

/// An object's identity: its ETag, else `size:mtime`.
fn object_rid(meta: &opendal::Metadata) -> String {
    meta.etag().map(str::to_string).unwrap_or_else(|| {
        remote::fallback_rid(
            meta.content_length(),
            meta.last_modified().and_then(remote::opendal_ns),
        )
    })
}

/// Run blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))
}
