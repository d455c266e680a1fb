//! Stage 4 of a pass: the 3-way plan (protective for an untrusted root),
//! settled, checked by the mass-delete guard; and which journal rows the
//! plan settles.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::{Pass, RemoteMap};
use crate::sync::base::PassBase;
use crate::sync::guard::{self, SideTotals};
use crate::sync::local::LocalSide;
use crate::sync::names;
use crate::sync::pending::{PendingChanges, Transfer};
use crate::sync::plan::{self, Action};
use crate::sync::root::{RootGuard, RootSuspect};
use crate::sync::scan;
use crate::sync::state::BaseMap;
use crate::sync::{PassScope, PlanSummary, SyncError};

impl Pass<'_> {
    /// Stage 4, plan and guard: the 3-way plan of the candidates, would-be
    /// conflicts of equal content settled, refused when it deletes too much.
    pub(super) async fn plan_and_guard(
        &mut self,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
    ) -> Result<Vec<Action>, SyncError> {
        let t = &self.st.target;
        let candidates = self.candidates(base, local, remote);
        let plan_base = self.plan_base(base, local);
        let mut actions = plan::plan(t.direction, &candidates, &local.entries, &plan_base, remote);
        actions.extend(forget_uncanonical(base));
        if self.suspect == Some(RootSuspect::Empty) {
            // An emptied root that the mass-delete guard refuses is
            // reported as that refusal, as before.
            self.guard(base, local, remote, &plan::summarize(&actions))?;
        }
        if let Some(reason) = self.suspect {
            // A missing, replaced or empty root says nothing about what
            // should be deleted: plan as a first sync (no base), which
            // never deletes.
            actions = plan::plan(
                t.direction,
                &candidates,
                &local.entries,
                &BTreeMap::new(),
                remote,
            );
            actions.extend(forget_uncanonical(base));
            self.report.root_guard = Some(RootGuard {
                reason,
                base_files: base.total,
            });
        }
        let actions = self.exec.settle_equal(actions).await;
        self.settled = self.settled_rows(&actions, &candidates, base, local, remote);
        // After what an early fetch (`early`) planned already, if anything.
        self.report.plan.merge(plan::summarize(&actions));
        self.guard(base, local, remote, &self.report.plan)?;
        if !self.req.allow_mass_delete {
            let remote_total = self.side_totals(base, local, remote).remote;
            let safety = &self.engine.inner.spec.safety;
            guard::check_overwrites(safety, &t.name, &actions, &base.map, remote_total)?;
        }
        Ok(actions)
    }

    /// The base to plan against: a path whose download is pending and
    /// that is absent locally was never there (a failed download is not a
    /// local delete), so it is planned without its base row.
    pub(super) fn plan_base<'b>(&self, base: &'b PassBase, local: &LocalSide) -> Cow<'b, BaseMap> {
        let undelivered: Vec<&String> = self
            .pending
            .iter()
            .filter(|(rel, p)| {
                p.transfer == Transfer::Down
                    && !local.entries.contains_key(*rel)
                    && base.map.contains_key(*rel)
            })
            .map(|(rel, _)| rel)
            .collect();
        if undelivered.is_empty() {
            return Cow::Borrowed(&*base.map);
        }
        let mut map = (*base.map).clone();
        for rel in undelivered {
            map.remove(rel);
        }
        Cow::Owned(map)
    }

    /// The mass-delete guard, unless the caller allows mass deletes.
    pub(super) fn guard(
        &self,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
        plan: &PlanSummary,
    ) -> Result<(), SyncError> {
        if self.req.allow_mass_delete {
            return Ok(());
        }
        let totals = self.side_totals(base, local, remote);
        guard::check(
            &self.engine.inner.spec.safety,
            &self.st.target.name,
            plan,
            totals,
        )
    }

    /// The paths to plan.
    pub(super) fn candidates(
        &self,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
    ) -> BTreeSet<String> {
        let mut candidates = local.candidates.clone();
        if self.full {
            candidates.extend(local.entries.keys().cloned());
            candidates.extend(base.map.keys().cloned());
            candidates.extend(remote.keys().cloned());
        }
        let excludes = &self.st.target.excludes;
        // Excluded paths are ignored on both sides (rclone semantics): an
        // exclude added later never deletes what was stored before.
        candidates.retain(|rel| !scan::excluded_with_parents(excludes, rel, false));
        // Paths under a directory we could not read are not "deleted".
        candidates.retain(|rel| local.entries.contains_key(rel) || !local.under_unreadable(rel));
        // Held by both a file and a symlink object on the remote: untouched.
        // Base rows of an earlier version under a name that has another form
        // now are never acted on (they are forgotten in `plan_and_guard`).
        candidates
            .retain(|rel| !self.memory.remote_conflicts.contains(rel) && names::is_canonical(rel));
        candidates
    }

    /// Journal rows that need no transfer any more: their path was planned
    /// without an action, is excluded now, or (full pass) is gone from
    /// every side.
    pub(super) fn settled_rows(
        &self,
        actions: &[Action],
        candidates: &BTreeSet<String>,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
    ) -> PendingChanges {
        let acted: BTreeSet<&str> = actions.iter().map(Action::rel).collect();
        let excludes = &self.st.target.excludes;
        self.pending
            .keys()
            .filter(|k| !acted.contains(k.as_str()))
            .filter(|k| {
                candidates.contains(*k)
                    || scan::excluded_with_parents(excludes, k, false)
                    || (self.full
                        && !local.entries.contains_key(*k)
                        && !remote.contains_key(*k)
                        && !base.map.contains_key(*k))
            })
            .map(|k| (k.clone(), None))
            .collect()
    }

    /// How many files each side holds, as far as this pass knows.
    pub(super) fn side_totals(
        &self,
        base: &PassBase,
        local: &LocalSide,
        remote: &RemoteMap,
    ) -> SideTotals {
        SideTotals {
            remote: if self.full {
                remote.len() as u64
            } else {
                base.total
            },
            local: if self.full || matches!(self.req.scope, PassScope::Full { .. }) {
                local.entries.len() as u64
            } else {
                base.total
            },
        }
    }
}

/// Base rows under a name that has another form now: forgotten, never
/// acted on.
fn forget_uncanonical(base: &PassBase) -> impl Iterator<Item = Action> + '_ {
    base.map
        .keys()
        .filter(|rel| !names::is_canonical(rel))
        .map(|rel| Action::Forget { rel: rel.clone() })
}
