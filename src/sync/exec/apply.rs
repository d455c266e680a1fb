//! Running a plan: its actions, `transfers` at a time; what each finished
//! action changed, folded into the pass's report and the base changes
//! (checkpointed to redb every [`CHECKPOINT_EVERY`] actions).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, stream};

use super::{Exec, FileErr, blocking, ferr};
use crate::sync::layout::{RemoteEntry, key_for};
use crate::sync::localfs;
use crate::sync::names;
use crate::sync::plan::Action;
use crate::sync::scan::LocalEntry;
use crate::sync::state::BaseChanges;
use crate::sync::state::BaseEntry;
use crate::sync::{FailedFile, PassReport, SyncError};

/// Base changes are committed every this many finished actions, so a crash
/// in a long pass does not forget what was already transferred.
const CHECKPOINT_EVERY: usize = 256;

/// What executing a plan changed.
pub(in crate::sync) struct Executed {
    pub(in crate::sync) changes: BaseChanges,
    pub(in crate::sync) remote_changed: bool,
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
}

impl Done {
    fn add_to(self, out: &mut Executed, report: &mut PassReport) {
        out.changes.extend(self.changes);
        out.remote_changed |= self.remote_changed;
        report.uploaded += self.uploaded;
        report.downloaded += self.downloaded;
        report.deleted_remote += self.deleted_remote;
        report.deleted_local += self.deleted_local;
        report.conflicts.extend(self.conflicts);
        report.bytes_up += self.bytes_up;
        report.bytes_down += self.bytes_down;
    }
}

impl Exec<'_> {
    pub(in crate::sync) async fn run(
        &self,
        actions: Vec<Action>,
        report: &mut PassReport,
    ) -> Executed {
        let transfers = self.ctx.target.transfers.max(1);
        // After a fatal error no new action starts, but those in flight are
        // drained (not dropped), so each aborts its own multipart upload or
        // temp file and whatever did finish is recorded.
        let stopping = &AtomicBool::new(false);
        let mut results = stream::iter(actions)
            .map(|a| async move {
                let rel = a.rel().to_string();
                if stopping.load(Ordering::SeqCst) {
                    return (rel, Err(FileErr::Skipped));
                }
                let r = self.action(a).await;
                self.observer.file_done();
                (rel, r)
            })
            .buffer_unordered(transfers);
        let mut out = Executed {
            changes: BTreeMap::new(),
            remote_changed: false,
            fatal: None,
        };
        let mut unsaved: BaseChanges = BTreeMap::new();
        while let Some((rel, r)) = results.next().await {
            match r {
                Ok(d) => {
                    if self.persist {
                        unsaved.extend(d.changes.iter().cloned());
                        if unsaved.len() >= CHECKPOINT_EVERY {
                            self.checkpoint(std::mem::take(&mut unsaved)).await;
                        }
                    }
                    d.add_to(&mut out, report);
                }
                Err(FileErr::File(reason)) => report.failed.push(FailedFile { path: rel, reason }),
                Err(FileErr::Fatal(e)) => {
                    stopping.store(true, Ordering::SeqCst);
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
    async fn checkpoint(&self, changes: BaseChanges) {
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
                self.download_action(rel, remote, local, keep_local, &mut d)
                    .await?
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
    async fn conflict_action(
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
    async fn read_local(&self, rel: &str) -> Result<LocalEntry, FileErr> {
        let path = names::local_path(&self.root, rel);
        match blocking(move || LocalEntry::read(&path)).await? {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(FileErr::File("vanished".into())),
            Err(e) => Err(ferr("cannot read", e)),
        }
    }
}
