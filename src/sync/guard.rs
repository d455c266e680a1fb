//! The mass-delete guard: a pass that would delete more than
//! `safety.mass_delete_max_files` files AND more than
//! `safety.mass_delete_max_fraction` of a side's files stops before doing
//! anything ([`SyncError::MassDelete`]) unless the caller allows it; the
//! same thresholds stop a pass that would overwrite that many remote files
//! whose local side did not change since the base
//! ([`SyncError::MassOverwrite`]: a remote rewritten behind coltecd's back,
//! or a change invented from a field the server did not send).

use super::plan::Action;
use super::state::BaseMap;
use super::{PlanSummary, SyncError};
use crate::spec::SafetySettings;

/// How many files each side holds: the guard's denominators.
#[derive(Debug, Clone, Copy)]
pub(super) struct SideTotals {
    pub(super) remote: u64,
    pub(super) local: u64,
}

/// Refuse `plan` when it deletes too much on either side.
pub(super) fn check(
    safety: &SafetySettings,
    target: &str,
    plan: &PlanSummary,
    totals: SideTotals,
) -> Result<(), SyncError> {
    mass_delete(
        safety,
        target,
        plan.delete_remote.files,
        totals.remote,
        "remote",
    )?;
    mass_delete(
        safety,
        target,
        plan.delete_local.files,
        totals.local.max(plan.delete_local.files),
        "local",
    )
}

fn mass_delete(
    s: &SafetySettings,
    target: &str,
    count: u64,
    total: u64,
    side: &'static str,
) -> Result<(), SyncError> {
    if count > s.mass_delete_max_files && (count as f64) > s.mass_delete_max_fraction * total as f64
    {
        return Err(SyncError::MassDelete {
            target: target.to_string(),
            count,
            total,
            side,
            max_files: s.mass_delete_max_files,
            pct: format!("{:.0}", s.mass_delete_max_fraction * 100.0),
        });
    }
    Ok(())
}

/// Refuse a plan that overwrites more remote files than the mass-delete
/// thresholds allow (of `remote_total`) while their local side is what the
/// base recorded.
pub(super) fn check_overwrites(
    s: &SafetySettings,
    target: &str,
    actions: &[Action],
    base: &BaseMap,
    remote_total: u64,
) -> Result<(), SyncError> {
    let count = actions
        .iter()
        .filter(|a| match a {
            Action::Upload {
                rel,
                local,
                replaces: Some(_),
            } => base.get(rel).is_some_and(|b| b.matches_local(local)),
            _ => false,
        })
        .count() as u64;
    if count > s.mass_delete_max_files
        && (count as f64) > s.mass_delete_max_fraction * remote_total as f64
    {
        return Err(SyncError::MassOverwrite {
            target: target.to_string(),
            count,
            total: remote_total,
            max_files: s.mass_delete_max_files,
            pct: format!("{:.0}", s.mass_delete_max_fraction * 100.0),
        });
    }
    Ok(())
}
