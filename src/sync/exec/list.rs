//! Listing a target: one recursive LIST that never pages through the
//! trash, handed over entry by entry so a restore can act on the first
//! pages while the next are fetched (`streamed`).

use futures::TryStreamExt;
use opendal::ErrorKind;

use super::Exec;
use crate::sync::SyncError;
use crate::sync::layout::TRASH_PREFIX;

/// Trash keys read past before the listing jumps over the rest (one page).
const TRASH_SKIP_AFTER: usize = 1000;

/// Every key under [`TRASH_PREFIX`] sorts before this one ('/' < '0').
const TRASH_END: &str = ".coltec/trash0";

impl Exec<'_> {
    /// Every object of the target (one recursive LIST), except the trash.
    pub(super) async fn list_target(&self) -> Result<Vec<opendal::Entry>, SyncError> {
        let mut out = Vec::new();
        self.list_each(&mut |e| out.push(e)).await?;
        Ok(out)
    }

    /// Every object of the target except the trash, handed to `each` as the
    /// listing goes (page by page, so a caller can act on the first pages
    /// while the next are fetched). On S3 the listing skips past
    /// `.coltec/trash/` (`start-after`) instead of paging through every
    /// old version kept there.
    pub(super) async fn list_each(
        &self,
        each: &mut (dyn FnMut(opendal::Entry) + Send),
    ) -> Result<(), SyncError> {
        match self.list_skipping_trash(each).await? {
            Ok(()) => Ok(()),
            // A local remote whose directory does not exist yet is empty (on
            // S3 NotFound means the bucket is missing: an error).
            Err(e) if e.kind() == ErrorKind::NotFound && self.ctx.local_dir.is_some() => Ok(()),
            Err(e) => Err(self.remote_err("listing", e)),
        }
    }

    /// The recursive listing without trash keys; once a page's worth of
    /// them went by, resumed after the last key the trash prefix can hold
    /// (where the service can: not a local directory, which lists in no
    /// order).
    async fn list_skipping_trash(
        &self,
        each: &mut (dyn FnMut(opendal::Entry) + Send),
    ) -> Result<opendal::Result<()>, SyncError> {
        let can_skip =
            self.ctx.local_dir.is_none() && self.op.info().capability().list_with_start_after;
        let mut resumed = false;
        loop {
            let mut l = self.op.lister_with("").recursive(true);
            if resumed {
                l = l.start_after(TRASH_END);
            }
            let mut lister = match self.net(l).await? {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            };
            let (mut hit_trash, mut trash_seen) = (false, 0usize);
            loop {
                let entry = match self.cancellable(lister.try_next()).await? {
                    Ok(Some(e)) => e,
                    Ok(None) => break,
                    Err(e) => return Ok(Err(e)),
                };
                if entry.path().starts_with(TRASH_PREFIX) {
                    // A page's worth: skip the rest instead of paging on.
                    trash_seen += 1;
                    if can_skip && !resumed && trash_seen >= TRASH_SKIP_AFTER {
                        hit_trash = true;
                        break;
                    }
                    continue;
                }
                each(entry);
            }
            if !hit_trash {
                return Ok(Ok(()));
            }
            resumed = true;
        }
    }
}
