//! Running a plan: its actions, `transfers` at a time; what each finished
//! action changed, folded into the pass's report, the base changes and
//! the journal of pending transfers (see [`crate::sync::pending`]): the
//! planned transfers are written ahead, and each outcome is committed with
//! its base row, at least every [`CHECKPOINT_EVERY`] actions or
//! [`CHECKPOINT_AFTER`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};

use super::{Exec, FileErr, blocking, ferr};
use crate::sync::layout::{RemoteEntry, key_for};
use crate::sync::localfs;
use crate::sync::names;
use crate::sync::pending::{self, PendingChanges, PendingMap};
use crate::sync::plan::Action;
use crate::sync::scan::LocalEntry;
use crate::sync::state::BaseChanges;
use crate::sync::state::BaseEntry;
use crate::sync::{FailedFile, PassReport, SyncError};

/// Finished actions are committed to redb at least this often...
const CHECKPOINT_EVERY: usize = 256;
/// ... and at least this soon after the first uncommitted one finished.
/// Either way a crash forgets nothing: a transfer whose row is not
/// committed is still in the journal and is reconciled from the remote.
const CHECKPOINT_AFTER: Duration = Duration::from_secs(1);

/// What executing a plan changed.
pub(in crate::sync) struct Executed {
    pub(in crate::sync) changes: BaseChanges,
    /// Journal changes: finished transfers cleared, failed ones recorded.
    pub(in crate::sync) pending: PendingChanges,
    pub(in crate::sync) remote_changed: bool,
    /// The remote was found to differ from what the pass believed: the
    /// next pass should list it.
    pub(in crate::sync) remote_stale: bool,
    pub(in crate::sync) fatal: Option<SyncError>,
}

/// What one action did.
#[derive(Default)]
pub(super) struct Done {
    pub(super) changes: Vec<(String, Option<BaseEntry>)>,
    pub(super) uploaded: u64,
    pub(super) downloaded: u64,
    pub(super) deleted_remote: u64,
    pub(super) deleted_local: u64,
    pub(super) conflicts: Vec<String>,
    pub(super) bytes_up: u64,
    pub(super) bytes_down: u64,
    pub(super) remote_changed: bool,
    pub(super) remote_stale: bool,
}

impl Done {
    fn add_to(self, out: &mut Executed, report: &mut PassReport) {
        out.changes.extend(self.changes);
        out.remote_changed |= self.remote_changed;
        out.remote_stale |= self.remote_stale;
        report.uploaded += self.uploaded;
        report.downloaded += self.downloaded;
        report.deleted_remote += self.deleted_remote;
        report.deleted_local += self.deleted_local;
        report.conflicts.extend(self.conflicts);
        report.bytes_up += self.bytes_up;
        report.bytes_down += self.bytes_down;
    }
}

/// Changes not committed yet.
#[derive(Default)]
struct Unsaved {
    base: BaseChanges,
    pending: PendingChanges,
    since: Option<Instant>,
}

impl Unsaved {
    fn due(&self) -> bool {
        self.base.len() + self.pending.len() >= CHECKPOINT_EVERY
            || self.since.is_some_and(|t| t.elapsed() >= CHECKPOINT_AFTER)
    }
}

impl Exec<'_> {
    /// Run `actions`. `prior` are the journal rows the pass found for its
    /// paths.
    pub(in crate::sync) async fn run(
        &self,
        actions: Vec<Action>,
        prior: &PendingMap,
        report: &mut PassReport,
    ) -> Executed {
        let mut out = Executed {
            changes: BTreeMap::new(),
            pending: BTreeMap::new(),
            remote_changed: false,
            remote_stale: false,
            fatal: None,
        };
        let ahead = match self.write_ahead(&actions, prior).await {
            Ok(a) => a,
            Err(e) => {
                out.fatal = Some(e);
                return out;
            }
        };
        let transfers = self.ctx.target.transfers.max(1);
        // After a fatal error no new action starts, but those in flight are
        // drained (not dropped), so each aborts its own multipart upload or
        // temp file and whatever did finish is recorded.
        let stopping = &AtomicBool::new(false);
        let mut results = stream::iter(actions)
            .map(|a| async move {
                let rel = a.rel().to_string();
                let transfer = pending::transfer_of(&a);
                if stopping.load(Ordering::SeqCst) {
                    return (rel, transfer, Err(FileErr::Skipped));
                }
                let r = self.action(a).await;
                self.observer.file_done();
                (rel, transfer, r)
            })
            .buffer_unordered(transfers);
        let mut unsaved = Unsaved::default();
        while let Some((rel, transfer, r)) = results.next().await {
            let journaled = ahead.get(&rel).or_else(|| prior.get(&rel));
            let row = match r {
                Ok(d) => {
                    if self.persist {
                        unsaved.base.extend(d.changes.iter().cloned());
                    }
                    d.add_to(&mut out, report);
                    journaled.map(|_| None)
                }
                Err(e @ (FileErr::File(_) | FileErr::RemoteChanged)) => {
                    let reason = match e {
                        FileErr::File(reason) => reason,
                        _ => {
                            out.remote_stale = true;
                            "the remote object changed since this host last saw it (another \
                             writer?); reconciled on the next pass"
                                .to_string()
                        }
                    };
                    let row = transfer.map(|t| Some(pending::failed(journaled, t, &reason)));
                    report.failed.push(FailedFile {
                        path: rel.clone(),
                        reason,
                    });
                    row
                }
                Err(FileErr::Fatal(e)) => {
                    stopping.store(true, Ordering::SeqCst);
                    if out.fatal.is_none() {
                        out.fatal = Some(e);
                    }
                    None
                }
                Err(FileErr::Skipped) => None,
            };
            if let Some(row) = row {
                out.pending.insert(rel.clone(), row.clone());
                if self.persist {
                    unsaved.pending.insert(rel, row);
                }
            }
            if self.persist {
                unsaved.since.get_or_insert_with(Instant::now);
                if unsaved.due() {
                    self.checkpoint(std::mem::take(&mut unsaved)).await;
                }
            }
        }
        // The caller commits the rest of the base after this returns.
        if let Err(e) = self.durability_barrier().await
            && out.fatal.is_none()
        {
            out.fatal = Some(e);
        }
        report.trashed += self.trashed.swap(0, Ordering::SeqCst);
        // Uploads that finished before a fatal error was seen may have
        // written; assume the manifest needs rewriting.
        if out.fatal.is_some() && !out.changes.is_empty() {
            out.remote_changed = true;
        }
        out
    }

    /// Journal the transfers about to run (one transaction): the rows a
    /// crash leaves behind (see [`crate::sync::pending`]).
    async fn write_ahead(
        &self,
        actions: &[Action],
        prior: &PendingMap,
    ) -> Result<PendingMap, SyncError> {
        if !self.persist {
            return Ok(PendingMap::new());
        }
        let ahead: PendingMap = actions
            .iter()
            .filter_map(|a| {
                let rel = a.rel();
                pending::intent(a, prior.get(rel)).map(|p| (rel.to_string(), p))
            })
            .collect();
        if ahead.is_empty() {
            return Ok(ahead);
        }
        let rows: PendingChanges = ahead
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let inner = self.inner.clone();
        let name = self.name().to_string();
        blocking(move || {
            inner
                .db
                .apply_with_pending(&name, &BaseChanges::new(), &rows)
        })
        .await??;
        Ok(ahead)
    }

    /// Commit finished changes early (the pass commits everything at its
    /// end anyway, so a failure here only costs re-checking after a crash).
    /// New local files first reach the disk (a row is never committed
    /// before its file is durable); if that fails nothing is committed.
    async fn checkpoint(&self, u: Unsaved) {
        if let Err(e) = self.durability_barrier().await {
            tracing::warn!("checkpoint of sync state skipped: {e}");
            return;
        }
        let inner = self.inner.clone();
        let name = self.name().to_string();
        match blocking(move || inner.db.apply_with_pending(&name, &u.base, &u.pending)).await {
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
            } => match self.upload(&rel, &local, replaces.as_ref(), &mut d).await {
                Ok(b) => d.changes.push((rel, Some(b))),
                Err(FileErr::RemoteChanged) => self.stale_upload(rel, &mut d).await?,
                Err(e) => return Err(e),
            },
            Action::Download {
                rel,
                remote,
                local,
                keep_local,
            } => {
                self.download_action(rel, remote, local, keep_local, &mut d)
                    .await?
            }
            Action::DeleteRemote { rel, remote } => {
                self.delete_remote(&key_for(&rel, remote.kind), Some(&remote))
                    .await?;
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
                self.conflict_action(rel, local, remote, &mut d).await?
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

    /// Fetch `rel`; with `keep_local`, the local version is first renamed
    /// aside as a conflict copy (and stored, when this target writes the
    /// remote).
    async fn download_action(
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

    /// Read a local entry that must exist.
    pub(super) async fn read_local(&self, rel: &str) -> Result<LocalEntry, FileErr> {
        let path = names::local_path(&self.root, rel);
        match blocking(move || LocalEntry::read(&path)).await? {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(FileErr::File("vanished".into())),
            Err(e) => Err(ferr("cannot read", e)),
        }
    }
}
