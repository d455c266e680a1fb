//! The full reconcile: one GET of the manifest and one LIST of the target
//! build the [`RemoteView`]; the manifest and the base stand in for the
//! per-object HEAD, which is sent only for objects neither knows (written
//! by rclone or another tool). Hostile keys are refused here.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use opendal::{EntryMode, ErrorKind};

use super::{Exec, object_rid};
use crate::sync::kind::Kind;
use crate::sync::layout::{self, DIRTY_KEY, HostileKey, MANIFEST_KEY, Manifest, RemoteEntry};
use crate::sync::state::BaseMap;
use crate::sync::{FailedFile, SkippedFile, SyncError};

/// Symlink objects larger than this are not link targets.
const MAX_LINK: u64 = 4096;

/// The remote view a full reconcile produced.
#[derive(Default)]
pub(in crate::sync) struct RemoteView {
    pub(in crate::sync) entries: BTreeMap<String, RemoteEntry>,
    pub(in crate::sync) problems: Vec<FailedFile>,
    /// Entries that are not objects coltecd syncs (in a local remote:
    /// special files and symlinks it did not write).
    pub(in crate::sync) skipped: Vec<SkippedFile>,
    /// Raw keys of crypt objects whose names do not decrypt (reported,
    /// never touched).
    pub(in crate::sync) undecryptable: Vec<String>,
    /// Paths held by both a file and a symlink object (`x`, `x.rclonelink`):
    /// not synced at all until one is removed.
    pub(in crate::sync) conflicted: BTreeSet<String>,
    /// Paths of every listed object, to find the pairs above.
    listed: BTreeSet<String>,
    /// The manifest does not describe what is there (write a fresh one).
    pub(in crate::sync) manifest_stale: bool,
    /// Identity of the manifest object as listed.
    pub(in crate::sync) manifest_rid: Option<String>,
    /// `.coltec/manifest.dirty` is present.
    pub(in crate::sync) dirty_marker: bool,
    /// The listing gave the manifest no ETag (s3s-fs): its identity needs a HEAD.
    manifest_listed_without_etag: bool,
}

/// What the listing tells about the manifest before any user object is
/// judged: an object listed without an ETag whose size is the one the
/// manifest (or the base) records, and that the server last wrote no later
/// than the manifest, is the object the manifest describes: every writer
/// of this layout writes its objects before the manifest that lists them.
/// Only a later write (or one in the manifest's own second while the dirty
/// marker says a pass may have written after it) is undecidable: a HEAD.
#[derive(Clone, Copy, Default)]
pub(super) struct ListedBound {
    /// The manifest's Last-Modified in the listing (server clock).
    manifest_ns: Option<i64>,
    /// `.coltec/manifest.dirty` is present: a pass wrote after the manifest.
    dirty: bool,
}

impl ListedBound {
    fn scan(listed: &[opendal::Entry]) -> ListedBound {
        let mut b = ListedBound::default();
        for e in listed {
            b.observe(e);
        }
        b
    }

    /// Take what one listed entry tells (the bound is complete once every
    /// entry was observed).
    pub(super) fn observe(&mut self, e: &opendal::Entry) {
        match e.path() {
            MANIFEST_KEY => {
                self.manifest_ns = e.metadata().last_modified().and_then(layout::opendal_ns);
            }
            DIRTY_KEY => self.dirty = true,
            _ => {}
        }
    }

    /// Whether an object the server last wrote at `listed_ns` predates the manifest.
    pub(super) fn predates_manifest(&self, listed_ns: Option<i64>) -> bool {
        match (listed_ns, self.manifest_ns) {
            (Some(o), Some(m)) if self.dirty => o < m,
            (Some(o), Some(m)) => o <= m,
            _ => false,
        }
    }
}

/// A listed object neither the manifest nor the base knows.
pub(super) struct Unknown {
    pub(super) rel: String,
    key: String,
    pub(super) entry: RemoteEntry,
    /// The backend's own mtime from the listing.
    pub(super) listed_mtime: Option<i64>,
}

/// A checked unknown object, or (its key, why it could not be checked).
type Checked = Result<(String, RemoteEntry), (String, String)>;

impl RemoteView {
    /// Take one listed object into the view; returns it when it needs a
    /// request of its own to be known.
    pub(super) fn add_listed(
        &mut self,
        entry: opendal::Entry,
        manifest: &Manifest,
        base: &BaseMap,
        bound: ListedBound,
    ) -> Option<Unknown> {
        let (key, meta) = entry.into_parts();
        if meta.is_dir() {
            return None;
        }
        if key == MANIFEST_KEY {
            self.manifest_rid = Some(object_rid(&meta));
            self.manifest_listed_without_etag = meta.etag().is_none();
            return None;
        }
        if key == DIRTY_KEY {
            self.dirty_marker = true;
            return None;
        }
        if let Some(raw) = key.strip_prefix(crate::remote::crypt::UNDECRYPTABLE_PREFIX)
            && meta.content_type() == Some(crate::remote::crypt::UNDECRYPTABLE)
        {
            self.undecryptable.push(raw.to_string());
            return None;
        }
        if meta.mode() == EntryMode::Unknown {
            let what = match meta.content_type() {
                Some("inode/symlink") => "a symlink coltecd did not write (never followed)",
                Some("inode/fifo") => "a FIFO",
                Some("inode/socket") => "a socket",
                Some("inode/chardevice" | "inode/blockdevice") => "a device",
                _ => "not a regular file",
            };
            if !key.starts_with(".coltec/") {
                self.skipped.push(SkippedFile {
                    path: key,
                    reason: format!("remote entry is {what}; skipped"),
                });
            }
            return None;
        }
        let (rel, kind) = match layout::rel_for_key(&key) {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(HostileKey(why)) => {
                self.problems.push(FailedFile {
                    path: key,
                    reason: format!("refused remote key: {why}"),
                });
                return None;
            }
        };
        if !self.listed.insert(rel.clone()) {
            self.conflicted.insert(rel);
            return None;
        }
        let size = meta.content_length();
        let lm = meta.last_modified().and_then(layout::opendal_ns);
        let rid = meta
            .etag()
            .map(str::to_string)
            .unwrap_or_else(|| layout::fallback_rid(size, lm));
        // No ETag listed: the same size, written before the manifest, is
        // the described object (see `ListedBound`); "unknown" is never "changed".
        let untagged = meta.etag().is_none() && bound.predates_manifest(lm);
        let known = manifest
            .files
            .get(&rel)
            .filter(|m| m.kind == kind && (m.rid == rid || (untagged && m.size == size)))
            .or_else(|| base.get(&rel).filter(|b| b.rid == rid && b.kind == kind));
        if let Some(k) = known {
            self.entries.insert(rel, RemoteEntry::from_base(k));
            return None;
        }
        // Not stale yet: an object the listing could not identify (no ETag)
        // may still be the one the manifest lists (see `confirm_unknown`).
        Some(Unknown {
            rel,
            key,
            entry: RemoteEntry {
                kind,
                size,
                rid,
                mtime_ns: lm,
                mode: None,
                link: None,
            },
            listed_mtime: lm,
        })
    }
}

/// An object the listing could not identify (no ETag in the listing, as on
/// s3s-fs), checked against the manifest and the base by what the HEAD or
/// GET told: the same ETag, or the same link target, is the same object.
/// Returns the entry to use and whether the manifest already lists it; only
/// what still differs makes the manifest stale.
fn confirm_unknown(
    manifest: &Manifest,
    base: &BaseMap,
    rel: &str,
    e: RemoteEntry,
) -> (RemoteEntry, bool) {
    let same = |k: &&crate::sync::state::BaseEntry| {
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
}

impl Exec<'_> {
    /// LIST the target and build the remote view, using the manifest and the
    /// base to avoid per-object HEADs.
    pub(in crate::sync) async fn reconcile(&self, base: &BaseMap) -> Result<RemoteView, SyncError> {
        self.reconcile_deferring(base, &|_| false).await
    }

    /// [`Exec::reconcile`], leaving the mtime and mode of the unknown files
    /// `defer` names to their download (the GET's headers carry them), so
    /// they cost no HEAD: a restore's files with nothing local to compare.
    pub(in crate::sync) async fn reconcile_deferring(
        &self,
        base: &BaseMap,
        defer: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<RemoteView, SyncError> {
        let (manifest, read_rid) = self.read_manifest().await?;
        let listed = self.list_target().await?;
        let mut view = RemoteView::default();
        let mut unknown = Vec::new();
        let bound = ListedBound::scan(&listed);
        for entry in listed {
            unknown.extend(view.add_listed(entry, &manifest, base, bound));
        }
        self.complete(view, unknown, &manifest, read_rid, base, defer)
            .await
    }

    /// The rest of a reconcile once every object was listed and taken into
    /// `view`: conflicting pairs, the manifest's identity, the unknown
    /// objects (deferred to their download, or asked about).
    pub(super) async fn complete(
        &self,
        mut view: RemoteView,
        mut unknown: Vec<Unknown>,
        manifest: &Manifest,
        read_rid: Option<String>,
        base: &BaseMap,
        defer: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<RemoteView, SyncError> {
        if manifest.files.len() != view.entries.len() + unknown.len() {
            view.manifest_stale = true;
        }
        // A path with both a file and a symlink object: neither is synced
        // (keeping one would flip the local path between them every pass).
        unknown.retain(|u| !view.conflicted.contains(&u.rel));
        for rel in &view.conflicted {
            view.entries.remove(rel);
            view.problems.push(FailedFile {
                path: rel.clone(),
                reason: format!(
                    "conflict: the remote holds both '{rel}' and its symlink object '{}'; remove one of them (this path is not synced until then)",
                    layout::key_for(rel, Kind::Symlink)
                ),
            });
        }
        // The manifest's identity is its ETag (what writing it and checking
        // it with a HEAD see); a listing without ETags (s3s-fs) needs a HEAD.
        // The GET that read it told its ETag already (the identity of the
        // very bytes read, even if it was rewritten since).
        if view.manifest_listed_without_etag
            && let Some(rid) = read_rid
        {
            view.manifest_rid = Some(rid);
        } else if view.manifest_listed_without_etag && self.ctx.local_dir.is_none() {
            match self.net(self.op.stat(MANIFEST_KEY)).await? {
                Ok(m) => view.manifest_rid = Some(object_rid(&m)),
                Err(e) if e.kind() == ErrorKind::NotFound => view.manifest_rid = None,
                Err(e) => return Err(self.remote_err("reading the manifest's identity", e)),
            }
        }
        let (deferred, unknown): (Vec<Unknown>, Vec<Unknown>) = unknown
            .into_iter()
            .partition(|u| u.entry.kind == Kind::File && self.ctx.user_metadata && defer(&u.rel));
        for u in deferred {
            view.manifest_stale = true;
            let mut e = u.entry;
            (e.mtime_ns, e.mode) = (None, None);
            view.entries.insert(u.rel, e);
        }
        for c in self.check_unknown(unknown).await? {
            match c {
                Ok((rel, e)) => {
                    let (e, in_manifest) = confirm_unknown(manifest, base, &rel, e);
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

    /// The manifest (or an empty one when it is missing or unreadable) and
    /// the ETag its GET answered with.
    pub(super) async fn read_manifest(&self) -> Result<(Manifest, Option<String>), SyncError> {
        let reader = match self.cancellable(self.op.reader(MANIFEST_KEY)).await? {
            Ok(r) => r,
            Err(e) => return Err(self.remote_err("reading the manifest", e)),
        };
        match self.net(reader.read(..)).await? {
            Ok(buf) => {
                let rid = reader.metadata().and_then(|m| m.etag()).map(str::to_string);
                let manifest =
                    serde_json::from_slice::<Manifest>(&buf.to_vec()).unwrap_or_else(|e| {
                        tracing::warn!(
                            target_name = self.name(),
                            "ignoring unreadable manifest: {e}"
                        );
                        Manifest::default()
                    });
                // A newer coltecd's manifest may mean something this one
                // cannot tell; never trust it, never overwrite it with ours.
                crate::version::check_format(
                    format!("the manifest of target '{}'", self.name()),
                    manifest.version,
                    Manifest::VERSION,
                )?;
                Ok((manifest, rid))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok((Manifest::default(), None)),
            Err(e) => Err(self.remote_err("reading the manifest", e)),
        }
    }

    /// Complete the unknown objects, `checkers` at a time.
    async fn check_unknown(&self, unknown: Vec<Unknown>) -> Result<Vec<Checked>, SyncError> {
        let checkers = self.ctx.target.checkers.max(1);
        let checked: Vec<Checked> = stream::iter(unknown)
            .map(|u| self.check_one(u))
            .buffer_unordered(checkers)
            .collect()
            .await;
        if self.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        Ok(checked)
    }

    /// S3 files: mtime and mode from a HEAD's user metadata; symlinks:
    /// the link target from a GET; anything else is known from the listing.
    async fn check_one(&self, u: Unknown) -> Checked {
        let Unknown {
            rel,
            key,
            mut entry,
            listed_mtime,
        } = u;
        match entry.kind {
            Kind::File if self.ctx.user_metadata => match self.net(self.op.stat(&key)).await {
                Ok(Ok(m)) => {
                    if let Some(etag) = m.etag() {
                        entry.rid = etag.to_string();
                    }
                    if let Some(um) = m.user_metadata() {
                        if let Some(t) = um.get("mtime").and_then(layout::parse_mtime) {
                            entry.mtime_ns = Some(t);
                        }
                        entry.mode = um.get("mode").and_then(layout::parse_mode);
                    }
                    if entry.mtime_ns.is_none() {
                        entry.mtime_ns = listed_mtime;
                    }
                    Ok((rel, entry))
                }
                Ok(Err(err)) => Err((key, format!("cannot read metadata: {err}"))),
                Err(_) => Err((key, "cancelled".into())),
            },
            Kind::File => Ok((rel, entry)),
            Kind::Symlink => {
                if entry.size > MAX_LINK {
                    return Err((key, "symlink object too large to be a link target".into()));
                }
                match self.net(self.op.read(&key)).await {
                    Ok(Ok(buf)) => match String::from_utf8(buf.to_vec()) {
                        Ok(t) if !t.is_empty() && !t.contains('\0') => {
                            entry.link = Some(t);
                            Ok((rel, entry))
                        }
                        _ => Err((key, "symlink object is not a valid link target".into())),
                    },
                    Ok(Err(err)) => Err((key, format!("cannot read symlink object: {err}"))),
                    Err(_) => Err((key, "cancelled".into())),
                }
            }
        }
    }
}
