//! A restore's reconcile that starts downloads while it lists.
//!
//! A restore into an empty directory (what `coltecd start` does on a new
//! container) used to list the whole target before its first GET: on a
//! 10k-file target that is ten or more LIST pages one after another, and
//! on a server that walks the prefix for every page (s3s-fs) seconds of
//! nothing else. Here every listed object with nothing local at its path
//! is planned the moment its page arrives (what the full plan would say
//! for it: fetch it, see [`plan::fetch_new`]) and handed to the executor,
//! which runs `transfers` downloads at once while the listing goes on.
//! Everything else (paths with a local file to compare; symlink objects,
//! whose target the manifest names once the whole listing shows it can
//! be trusted) waits for the whole listing and is reconciled as before
//! ([`Exec::complete`]).
//!
//! A path is only known to be held by both a file and its symlink object
//! once both were listed; if the file was already fetched, [`Exec::undo`]
//! removes it again (it was created by this restore; nothing was there).

use std::collections::BTreeSet;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;

use super::reconcile::{ListedBound, RemoteView, Unknown};
use super::{Exec, Executed};
use crate::sync::kind::Kind;
use crate::sync::layout;
use crate::sync::pending::PendingMap;
use crate::sync::plan::{self, Action};
use crate::sync::state::{BaseChanges, BaseMap};
use crate::sync::{PassReport, SyncError};

/// A reconcile whose first downloads already started.
pub(in crate::sync) struct Streamed {
    /// The whole remote view, as [`Exec::reconcile_deferring`] gives it.
    pub(in crate::sync) view: RemoteView,
    /// Paths whose download was sent to the executor while listing.
    pub(in crate::sync) started: BTreeSet<String>,
    /// Started paths the whole listing identified as the manifest's
    /// objects, with that identity (what their base rows must say, so the
    /// next reconcile, which identifies them the same way, sees no change).
    identified: Vec<(String, String)>,
}

/// Actions per batch the executor journals at once (about a LIST page).
const BATCH: usize = 256;

impl Exec<'_> {
    /// List the target and fetch each object `fresh` names as soon as it is
    /// listed, `transfers` at a time; then take back what a conflict
    /// forbids ([`Exec::undo`]). Returns the whole view (or why the listing
    /// failed) and what the downloads did, which the caller records even
    /// when the listing failed.
    pub(in crate::sync) async fn fetch_while_listing(
        &self,
        base: &BaseMap,
        fresh: &(dyn Fn(&str) -> bool + Sync),
        prior: &PendingMap,
        report: &mut PassReport,
    ) -> (Result<Streamed, SyncError>, Executed) {
        let (start, started) = futures::channel::mpsc::unbounded();
        let (streamed, mut executed) = tokio::join!(
            self.reconcile_streaming(base, fresh, start),
            self.run_batches(started.ready_chunks(BATCH), prior, report, true),
        );
        if let Ok(s) = &streamed {
            for (rel, rid) in &s.identified {
                if let Some(Some(row)) = executed.changes.get_mut(rel) {
                    row.rid.clone_from(rid);
                }
            }
            self.undo(
                &s.view.conflicted,
                &s.started,
                base,
                &mut executed.changes,
                report,
            )
            .await;
        }
        (streamed, executed)
    }

    /// List the target; each object `fresh` names (nothing local at its
    /// path, not excluded) is sent to `start` as its download when it is
    /// listed. Without the whole listing an object listed without an ETag
    /// is not matched to the manifest by its time (see `ListedBound`):
    /// such a file is fetched with its mtime and mode from the GET, as a
    /// restore does for every object it cannot identify.
    async fn reconcile_streaming(
        &self,
        base: &BaseMap,
        fresh: &(dyn Fn(&str) -> bool + Sync),
        start: UnboundedSender<Action>,
    ) -> Result<Streamed, SyncError> {
        let (manifest, read_rid) = self.read_manifest().await?;
        let mut view = RemoteView::default();
        let mut unknown: Vec<Unknown> = Vec::new();
        let mut held = Vec::new();
        let mut unmatched = Vec::new();
        let mut started = BTreeSet::new();
        let mut bound = ListedBound::default();
        let meta_from_get = self.ctx.user_metadata;
        self.list_each(&mut |entry| {
            bound.observe(&entry);
            // Symlink objects wait for the whole listing: the manifest
            // usually names their target (no GET), else their bounded read
            // (`check_one`) comes first.
            let rel = match layout::rel_for_key(entry.path()) {
                Ok(Some((rel, Kind::File))) if fresh(&rel) => rel,
                _ => return held.push(entry),
            };
            let untagged = entry.metadata().etag().is_none();
            if let Some(u) = view.add_listed(entry, &manifest, base, ListedBound::default()) {
                // Judged against the manifest once the bound is known.
                if untagged {
                    unmatched.push((u.rel.clone(), u.entry.size, u.listed_mtime));
                } else {
                    view.manifest_stale = true;
                }
                let mut e = u.entry;
                if meta_from_get {
                    (e.mtime_ns, e.mode) = (None, None);
                }
                view.entries.insert(u.rel, e);
            }
            if view.conflicted.contains(&rel) {
                return;
            }
            if let Some(e) = view.entries.get(&rel) {
                // The receiver lives until the listing ends (the executor
                // drains it); a send can only fail when it stopped early,
                // and then nothing more is to start.
                if start.unbounded_send(plan::fetch_new(&rel, e)).is_ok() {
                    started.insert(rel);
                }
            }
        })
        .await?;
        drop(start);
        for entry in held {
            unknown.extend(view.add_listed(entry, &manifest, base, bound));
        }
        // An object listed without an ETag is the one the manifest
        // describes when the whole listing's bound says so (`ListedBound`):
        // its identity is the manifest's, as a full reconcile would have
        // said. Any other the manifest does not describe: it is stale.
        let mut identified = Vec::new();
        for (rel, size, listed) in unmatched {
            match manifest.files.get(&rel).filter(|m| {
                m.kind == Kind::File && m.size == size && bound.predates_manifest(listed)
            }) {
                Some(m) => identified.push((rel, m.rid.clone())),
                None => view.manifest_stale = true,
            }
        }
        let view = self
            .complete(view, unknown, &manifest, read_rid, base, fresh)
            .await?;
        Ok(Streamed {
            view,
            started,
            identified,
        })
    }

    /// Take back the downloads of paths that turned out to be held by both
    /// a file and its symlink object (listed after the file was fetched):
    /// such a path is not synced at all (see `RemoteView::conflicted`). The
    /// file was created by this restore; it is removed only while it still
    /// is what was downloaded, and its base row goes back to what `base`
    /// says (a checkpoint may have committed the download's row already).
    async fn undo(
        &self,
        conflicted: &BTreeSet<String>,
        started: &BTreeSet<String>,
        base: &BaseMap,
        changes: &mut BaseChanges,
        report: &mut PassReport,
    ) {
        for rel in conflicted.intersection(started) {
            let Some(Some(got)) = changes.get(rel).cloned() else {
                continue;
            };
            changes.insert(rel.clone(), base.get(rel).cloned());
            report.downloaded = report.downloaded.saturating_sub(1);
            let removed = match self.read_local(rel).await {
                Ok(now) if got.matches_local(&now) => self.delete_local(rel, &now).await.is_ok(),
                _ => false,
            };
            if !removed {
                tracing::warn!(
                    target_name = self.name(),
                    path = rel.as_str(),
                    "a file fetched before its path turned out to be in conflict could not be removed again; it stays, and is not recorded as synced"
                );
            }
        }
    }
}
