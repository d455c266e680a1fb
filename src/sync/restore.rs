//! `restore`: pull a target's remote state into its directory (or another
//! one). It always lists the remote, plans pull-only with no base (so it
//! never deletes local files; files that differ are replaced) and never
//! writes the remote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::exec::{Exec, RemoteView};
use super::layout::RemoteEntry;
use super::local::{LocalSide, create_root, gather_local, root_is_dir};
use super::plan::{self, Action};
use super::report::NoObserver;
use super::scan;
use super::{Engine, PassObserver, PassReport, PassScope, SyncError};
use crate::spec::{Direction, Target};

impl Engine {
    /// Pull the target's remote state into `to` (default: the target's own
    /// path). Never deletes local files; files that differ are replaced.
    pub async fn restore(
        &self,
        target: &str,
        to: Option<&Path>,
        dry_run: bool,
        cancel: &CancellationToken,
    ) -> Result<PassReport, SyncError> {
        self.restore_observed(target, to, dry_run, cancel, &NoObserver)
            .await
    }

    /// [`Engine::restore`] with progress callbacks.
    pub async fn restore_observed(
        &self,
        target: &str,
        to: Option<&Path>,
        dry_run: bool,
        cancel: &CancellationToken,
        observer: &dyn PassObserver,
    ) -> Result<PassReport, SyncError> {
        let st = self.served(target)?;
        let op = st.operator()?;
        // A restore never writes the remote; it only holds the lock so no
        // pass of the same target runs meanwhile.
        let held = st.lock(cancel).await?;
        let t = &st.target;
        let root = to
            .map(Path::to_path_buf)
            .unwrap_or_else(|| t.local_path.clone());
        let own = root == t.local_path;
        let exists = root_is_dir(&root, &t.name).await?;
        if !exists && !dry_run {
            create_root(&root, &t.name).await?;
        }
        let base = Arc::new(self.load_base(&t.name).await?);
        let local = if exists {
            let scope = PassScope::Full { verify: true };
            gather_local(root.clone(), t.excludes.clone(), scope, base.clone()).await?
        } else {
            LocalSide::default()
        };
        let persist = own && !dry_run;
        let exec = Exec::new(&self.inner, &st, op, root, persist, cancel, observer);
        // A file with nothing local to compare needs no HEAD: its GET
        // tells its mtime and mode.
        let absent = |rel: &str| !local.entries.contains_key(rel);
        let mut report = PassReport::new(&t.name, true);
        report.failed.extend(local.problems.iter().cloned());
        if dry_run {
            let rv = exec.reconcile_deferring(&base, &absent).await?;
            let actions = restore_actions(t, &local, &rv.entries);
            report.plan = plan::summarize(&actions);
            take_view(&mut report, &local, rv);
            return Ok(report);
        }
        let prior = if persist {
            self.load_pending(&t.name).await?
        } else {
            Default::default()
        };
        // Objects with nothing local at their path start downloading while
        // the listing goes on (`exec::streamed`); the rest follow it.
        let fresh =
            |rel: &str| absent(rel) && !scan::excluded_with_parents(&t.excludes, rel, false);
        let (streamed, mut executed) = exec
            .fetch_while_listing(&base, &fresh, &prior, &mut report)
            .await;
        let (view, started) = match streamed {
            Ok(s) => (s.view, s.started),
            Err(e) => {
                // What was fetched is recorded before the error is told.
                if persist {
                    self.save_base(&t.name, &executed.changes, &executed.pending)
                        .await?;
                }
                return Err(e);
            }
        };
        let rest: BTreeMap<String, RemoteEntry> = view
            .entries
            .iter()
            .filter(|(rel, _)| !started.contains(*rel))
            .map(|(rel, e)| (rel.clone(), e.clone()))
            .collect();
        let actions = restore_actions(t, &local, &rest);
        report.plan.merge(plan::summarize(&actions));
        take_view(&mut report, &local, view);
        if executed.fatal.is_none() && !actions.is_empty() {
            observer.planned(&t.name, &report.plan);
            drop((local, rest));
            executed.absorb(exec.run(actions, &prior, &mut report).await);
        }
        if persist {
            self.save_base(&t.name, &executed.changes, &executed.pending)
                .await?;
        }
        drop(held);
        executed.fatal.map_or(Ok(()), Err)?;
        Ok(report)
    }
}

/// What the reconcile found besides the objects to fetch: files it could
/// not take, entries it skipped, names that do not decrypt.
fn take_view(report: &mut PassReport, local: &LocalSide, rv: RemoteView) {
    let name = report.target.clone();
    report.failed.extend(rv.problems);
    report.skipped = local.skipped.iter().chain(&rv.skipped).cloned().collect();
    report.skipped.sort();
    report.skipped.dedup();
    for s in &report.skipped {
        tracing::warn!(target_name = %name, path = ?s.path, "not synced: {}", s.reason);
    }
    report.undecryptable = crate::sync::Undecryptable::of(&rv.undecryptable);
    report.undecryptable.log(&name);
}

/// Pull-only with no base: every remote file not excluded, none deleted.
fn restore_actions(
    t: &Target,
    local: &LocalSide,
    remote: &BTreeMap<String, RemoteEntry>,
) -> Vec<Action> {
    let mut candidates: BTreeSet<String> = remote.keys().cloned().collect();
    candidates.retain(|rel| !scan::excluded_with_parents(&t.excludes, rel, false));
    plan::plan(
        Direction::PullOnly,
        &candidates,
        &local.entries,
        &BTreeMap::new(),
        remote,
    )
}
