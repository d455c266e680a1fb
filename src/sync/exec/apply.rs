//! Running a plan: its actions, `transfers` at a time (as one batch, or in
//! batches that arrive while a restore still lists); what each finished
//! action changed, folded into the pass's report, the base changes and
//! the journal of pending transfers (see [`crate::sync::pending`]): the
//! planned transfers are written ahead, and each outcome is committed with
//! its base row, at least every [`CHECKPOINT_EVERY`] actions or
//! [`CHECKPOINT_AFTER`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, stream};

use super::{Exec, FileErr, blocking, ferr};
use crate::sync::layout::key_for;
use crate::sync::names;
use crate::sync::pending::{self, PendingChanges, PendingMap};
use crate::sync::plan::{self, Action};
use crate::sync::scan::LocalEntry;
use crate::sync::state::BaseChanges;
use crate::sync::state::BaseEntry;
use crate::sync::{FailedFile, PassReport, PlanSummary, SyncError};

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

impl Executed {
    /// Add what a later run of the same pass did.
    pub(in crate::sync) fn absorb(&mut self, later: Executed) {
        self.changes.extend(later.changes);
        self.pending.extend(later.pending);
        self.remote_changed |= later.remote_changed;
        self.remote_stale |= later.remote_stale;
        if self.fatal.is_none() {
            self.fatal = later.fatal;
        }
    }
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

/// An action with the journal row written ahead of it, or why the batch
/// it came in could not be journaled.
enum Queued {
    Run(Action, Option<pending::Pending>),
    Fatal(SyncError),
}

/// An action's path, its journal row, its transfer and how it ended.
type Outcome = (
    String,
    Option<pending::Pending>,
    Option<pending::Transfer>,
    Result<Done, FileErr>,
);

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
    /// Run `actions`, a planned pass (the caller reported the plan).
    /// `prior` are the journal rows the pass found for its paths.
    pub(in crate::sync) async fn run(
        &self,
        actions: Vec<Action>,
        prior: &PendingMap,
        report: &mut PassReport,
    ) -> Executed {
        self.run_batches(stream::iter([actions]), prior, report, false)
            .await
    }

    /// Run actions as their batches arrive (a restore starts downloading
    /// while it still lists), `transfers` at a time across batches; each
    /// batch is journaled ahead before its first action starts. With
    /// `announce`, each batch is added to the report's plan and the
    /// observer hears the plan so far.
    pub(in crate::sync) async fn run_batches(
        &self,
        batches: impl Stream<Item = Vec<Action>>,
        prior: &PendingMap,
        report: &mut PassReport,
        announce: bool,
    ) -> Executed {
        let mut out = Executed {
            changes: BTreeMap::new(),
            pending: BTreeMap::new(),
            remote_changed: false,
            remote_stale: false,
            fatal: None,
        };
        let announced = &std::sync::Mutex::new(PlanSummary::default());
        // After a fatal error no new action starts, but those in flight are
        // drained (not dropped), so each aborts its own multipart upload or
        // temp file and whatever did finish is recorded.
        let stopping = &AtomicBool::new(false);
        let transfers = self.ctx.target.transfers.max(1);
        let (feed, queued) = futures::channel::mpsc::channel::<Queued>(transfers);
        let feeder = self.feed(batches, feed, prior, announce.then_some(announced));
        let results = queued
            .map(|q| async move {
                let (a, row) = match q {
                    Queued::Run(a, row) => (a, row),
                    Queued::Fatal(e) => return (String::new(), None, None, Err(FileErr::Fatal(e))),
                };
                let rel = a.rel().to_string();
                let transfer = pending::transfer_of(&a);
                if stopping.load(Ordering::SeqCst) {
                    return (rel, row, transfer, Err(FileErr::Skipped));
                }
                let r = self.action(a).await;
                self.observer.file_done();
                (rel, row, transfer, r)
            })
            .buffer_unordered(transfers);
        let consumer = self.collect(results, prior, stopping, &mut out, report);
        futures::join!(feeder, consumer);
        // The caller commits the rest of the base after this returns.
        if let Err(e) = self.durability_barrier().await
            && out.fatal.is_none()
        {
            out.fatal = Some(e);
        }
        if announce && let Ok(plan) = announced.lock() {
            report.plan.merge(plan.clone());
        }
        report.trashed += self.trashed.swap(0, Ordering::SeqCst);
        // Uploads that finished before a fatal error was seen may have
        // written; assume the manifest needs rewriting.
        if out.fatal.is_some() && !out.changes.is_empty() {
            out.remote_changed = true;
        }
        out
    }

    /// Journal each batch ahead and queue its actions for the executor;
    /// with `announced`, the plan so far is told first. Stops feeding at
    /// the first batch that cannot be journaled (its actions never start).
    async fn feed(
        &self,
        batches: impl Stream<Item = Vec<Action>>,
        mut queue: futures::channel::mpsc::Sender<Queued>,
        prior: &PendingMap,
        announced: Option<&std::sync::Mutex<PlanSummary>>,
    ) {
        use futures::SinkExt;
        let mut batches = std::pin::pin!(batches);
        while let Some(batch) = batches.next().await {
            if let Some(Ok(mut plan)) = announced.map(|a| a.lock()) {
                plan.merge(plan::summarize(&batch));
                self.observer.planned(self.name(), &plan);
            }
            let mut ahead = match self.write_ahead(&batch, prior).await {
                Ok(a) => a,
                Err(e) => {
                    let _ = queue.send(Queued::Fatal(e)).await;
                    return;
                }
            };
            for a in batch {
                let row = ahead.remove(a.rel());
                // The executor drains the queue to its end: a send fails
                // only if it is gone, and then nothing more is to run.
                if queue.send(Queued::Run(a, row)).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Fold each finished action into `out` and `report`, committing the
    /// base and the journal at checkpoints.
    async fn collect(
        &self,
        results: impl Stream<Item = Outcome>,
        prior: &PendingMap,
        stopping: &AtomicBool,
        out: &mut Executed,
        report: &mut PassReport,
    ) {
        let mut results = std::pin::pin!(results);
        let mut unsaved = Unsaved::default();
        while let Some((rel, ahead, transfer, r)) = results.next().await {
            let journaled = ahead.as_ref().or_else(|| prior.get(&rel));
            let row = match r {
                Ok(d) => {
                    if self.persist {
                        unsaved.base.extend(d.changes.iter().cloned());
                    }
                    d.add_to(out, report);
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
