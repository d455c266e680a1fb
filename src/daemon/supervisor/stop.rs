//! The supervisor's part of the stop, each step bounded by the stop budget
//! ([`StopBudget`]): the deferred manifests, the workers, what was not
//! flushed (named in the log, the exit, and, after a lost lease, the status
//! file and the record the next start keeps as conflict copies), the lease
//! release and the final status.

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::super::scheduler::{Board, Unflushed};
use super::super::seam::{Seams, error_chain, fail, fail_from};
use super::super::status::{self, StopNote};
use super::super::stop_budget::StopBudget;
use super::super::unpushed;
use super::super::workers::{WorkerEnd, WorkerKind};
use super::Watch;
use crate::error::ExitStatus;
use crate::state_dir::StateDir;

/// Release the lease whatever happened (after a flush, after a failed
/// start, after a lost lease: the keeper frees the prefixes it still
/// holds) within what is left of the stop budget, then leave the final
/// status for `coltecd status`.
pub(super) async fn release_and_record(
    seams: &Seams,
    board: &Board,
    state: &StateDir,
    budget: StopBudget,
) {
    match tokio::time::timeout_at(budget.end(), seams.lease.release()).await {
        Ok(Ok(())) => tracing::info!("lease released"),
        Ok(Err(e)) => {
            tracing::warn!(error = %error_chain(&e), "releasing the lease failed; it will expire after its TTL")
        }
        Err(_) => tracing::warn!(
            budget = ?budget.total(),
            "stop budget: no time left to release the lease; it will expire after its TTL"
        ),
    }
    let mut last = board.snapshot().as_stopped(crate::clock::unix_now());
    last.updated_at = crate::clock::unix_now();
    if let Err(e) = status::write_file(state.path(), &last) {
        tracing::warn!(error = %e, "cannot write the final status file");
    }
}

/// Join the workers until the budget's manifest slice ends; abort those
/// still running then (the control socket's drain of slow clients).
pub(super) async fn join_workers(
    workers: &mut JoinSet<WorkerEnd>,
    w: &mut Watch,
    budget: StopBudget,
) {
    let mut record = |end: Result<WorkerEnd, tokio::task::JoinError>| {
        if let Ok((kind, Err(e))) = end {
            tracing::warn!(worker = %kind, error = %error_chain(&e), "worker ended with an error during shutdown");
            if kind == WorkerKind::Lease {
                w.lost_lease = true;
                w.failed(fail_from(&e));
            }
        }
    };
    let joined = tokio::time::timeout_at(budget.manifests_until(), async {
        while let Some(end) = workers.join_next().await {
            record(end);
        }
    })
    .await;
    if joined.is_err() {
        tracing::warn!("stop budget: workers still stopping; cutting them off");
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }
}

/// Name what was not flushed: in the log, the exit (6, or the lease's own
/// exit with the files named) and, when the lease was lost, the status
/// file and the record the next start keeps as conflict copies.
pub(super) fn report_unflushed(
    w: &mut Watch,
    unflushed: &Unflushed,
    state: &StateDir,
    board: &Board,
) {
    let lost = w.lost_lease;
    log_unflushed(unflushed, lost);
    let files = unpushed::as_files(unflushed);
    let n: usize = unflushed.iter().map(|(_, p)| p.len()).sum();
    if lost {
        if n > 0
            && let Err(e) = unpushed::record(state.path(), &lease_reason(w), &files)
        {
            tracing::error!(error = %e, "cannot record the unpushed changes for the next start");
        }
        let (code, reason) = (
            w.outcome.as_ref().err().map_or(1, |f| f.status.code()),
            lease_reason(w),
        );
        board.update(|s| {
            s.stop = Some(StopNote {
                exit_code: code,
                reason,
                unpushed: files.clone(),
            })
        });
        if n > 0
            && let Err(f) = &mut w.outcome
        {
            let named: Vec<String> = files
                .iter()
                .map(|u| format!("{}: {}", u.target, status::name_paths(&u.paths)))
                .collect();
            f.report = anyhow::anyhow!(
                "{:#}; {n} local change(s) were NOT pushed and exist only on this disk ({}); \
                 the next start keeps them as conflict copies",
                f.report,
                named.join("; ")
            );
        }
        return;
    }
    if n > 0 {
        w.failed(fail(
            ExitStatus::PartialFailure,
            format!(
                "{n} changed file(s) could not be flushed within the stop budget (listed in the log)"
            ),
        ));
    }
}

/// Why the daemon stopped without flushing (the lease's error), for the
/// status file and the record.
fn lease_reason(w: &Watch) -> String {
    match &w.outcome {
        Err(f) => format!("{:#}", f.report),
        Ok(_) => "the lease was lost".to_string(),
    }
}

/// The lease is still renewed here (its worker stops later), so the gate is
/// open for the deferred manifest writes. Bounded by the budget's manifest
/// slice: running out of time (the future is dropped) only leaves the dirty
/// marker, never a manifest that would be trusted while wrong.
pub(super) async fn finish_manifests(seams: &Seams, budget: StopBudget) {
    let finish = seams.sync.finish(CancellationToken::new());
    match tokio::time::timeout_at(budget.manifests_until(), finish).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %error_chain(&e), "deferred manifest write failed; the remote keeps its dirty marker")
        }
        Err(_) => {
            tracing::warn!(
                "stop budget: no time left for the deferred manifest write; the remote keeps its dirty marker"
            )
        }
    }
}

/// Each file not flushed, by path; loud (an error) when the lease was lost:
/// those changes exist only on this disk.
fn log_unflushed(unflushed: &Unflushed, lease_lost: bool) {
    for (target, paths) in unflushed {
        if lease_lost {
            tracing::error!(
                target_name = %target,
                files = paths.len(),
                "the lease was lost: these local changes were NOT pushed and exist only on \
                 this disk; the next start keeps them as conflict copies"
            );
        } else {
            tracing::warn!(target_name = %target, files = paths.len(), "changes NOT flushed before exit");
        }
        for p in paths {
            if lease_lost {
                tracing::error!(target_name = %target, path = %p.display(), "not pushed");
            } else {
                tracing::warn!(target_name = %target, path = %p.display(), "not flushed");
            }
        }
    }
}
