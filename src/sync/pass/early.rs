//! Stage 3 for a new container: the first pass of a target that was never
//! synced here, into a root it just created, starts downloading while it
//! still lists the remote (the `restore` machinery, `exec::streamed`).
//!
//! This is the pass `coltecd start` waits for before it reports ready on a
//! fresh container, and the only plan it can have is "fetch everything":
//! no local file, no base row, no journal row, nothing to protect. Any
//! other pass (a root that exists, a base to honour, a root the base does
//! not trust) lists first and plans the whole view, as before.

use super::{Pass, RemoteMap};
use crate::sync::SyncError;
use crate::sync::base::PassBase;
use crate::sync::local::LocalSide;
use crate::sync::scan;

impl Pass<'_> {
    /// Whether this pass fills a root it created for a target with no base
    /// and no journal.
    pub(super) fn fetches_early(&self, base: &PassBase, local: &LocalSide) -> bool {
        self.full
            && self.root_missing
            && self.suspect.is_none()
            && base.total == 0
            && self.pending.is_empty()
            && local.entries.is_empty()
            && !self.req.dry_run
            && self.st.target.direction.writes_local()
    }

    /// The remote view of a full reconcile whose downloads already ran
    /// while it listed: the paths fetched are left out of the view (there
    /// is nothing more to plan for them); what they did is kept for
    /// `execute`. If the listing fails, what was fetched is recorded
    /// before the error is told.
    pub(super) async fn remote_view_fetching(
        &mut self,
        base: &PassBase,
        local: &LocalSide,
    ) -> Result<RemoteMap, SyncError> {
        let t = &self.st.target;
        let fresh = |rel: &str| {
            !local.entries.contains_key(rel)
                && !scan::excluded_with_parents(&t.excludes, rel, false)
        };
        let (streamed, mut executed) = self
            .exec
            .fetch_while_listing(&base.map, &fresh, &self.pending, &mut self.report)
            .await;
        let streamed = match (streamed, executed.fatal.take()) {
            (Ok(s), None) => s,
            (Err(e), _) | (Ok(_), Some(e)) => {
                self.engine
                    .save_base(&t.name, &executed.changes, &executed.pending)
                    .await?;
                return Err(e);
            }
        };
        let (view, started) = (streamed.view, streamed.started);
        let mut remote = self.take_view(view);
        remote.retain(|rel, _| !started.contains(rel));
        self.early = Some(executed);
        Ok(remote)
    }
}
