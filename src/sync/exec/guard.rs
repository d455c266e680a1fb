//! Conditional data writes (see [`Guarding`]): every upload says which
//! version of its key it expects ([`Expect`]), sent as `If-None-Match: *`
//! or `If-Match: <etag>` on S3 (on the single PUT, or on
//! CompleteMultipartUpload) and checked with a stat just before the write
//! on local remotes. A delete compares the object (one HEAD) just before.
//!
//! A refused upload ([`FileErr::RemoteChanged`]) is never retried blindly:
//! the current object is looked at. Our own earlier write (a retried PUT
//! whose first response was lost) is adopted; otherwise the two versions
//! become a conflict: a bidirectional target keeps the other version as a
//! local conflict copy (uploaded too), a push-only target keeps it as a
//! conflict copy on the remote, and then stores the local version over
//! the one it has now seen. The next pass lists the remote, since the
//! base was found stale.

use opendal::ErrorKind;

use super::apply::Done;
use super::{Exec, FileErr, ferr, object_rid};
use crate::sync::kind::Kind;
use crate::sync::layout::{self, RemoteEntry, key_for};
use crate::sync::localfs;
use crate::sync::plan;
use crate::sync::state::BaseEntry;
use crate::sync::target::Guarding;

/// What a write expects to find at its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expect {
    /// Nothing: the writer believes the key is new.
    Absent,
    /// The object whose identity (`rid`) the writer last saw.
    Version(String),
    /// Anything: no condition can be expressed.
    Anything,
}

/// Whether `rid` is an ETag (not the `size:mtime` stand-in of backends
/// without one), i.e. usable in `If-Match`.
fn is_etag(rid: &str) -> bool {
    !rid.is_empty() && (rid.starts_with('"') || rid.starts_with("W/") || !rid.contains(':'))
}

/// Add `expect`'s condition to an opendal write or writer builder.
macro_rules! conditioned {
    ($w:expr, $exec:expr, $expect:expr) => {{
        let w = $w;
        match (&$exec.ctx.guarding, $expect) {
            (crate::sync::target::Guarding::Enforced, super::guard::Expect::Version(v)) => {
                w.if_match(v)
            }
            (
                crate::sync::target::Guarding::Enforced | crate::sync::target::Guarding::Checked,
                super::guard::Expect::Absent,
            ) => w.if_not_exists(true),
            _ => w,
        }
    }};
}
pub(super) use conditioned;

/// Whether a write with `expect` failed because its condition did not
/// hold: 412, 409 ConditionalRequestConflict (concurrent conditional
/// writes), or 404 for `If-Match` on a key that is gone.
pub(super) fn refused(e: &opendal::Error, expect: &Expect) -> bool {
    match expect {
        Expect::Anything => false,
        Expect::Absent => matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::Conflict),
        Expect::Version(_) => matches!(
            e.kind(),
            ErrorKind::ConditionNotMatch | ErrorKind::Conflict | ErrorKind::NotFound
        ),
    }
}

impl Exec<'_> {
    /// What a write of a `kind` entry over `replaces` (what this pass
    /// believes the remote holds for the path) expects at its key.
    pub(super) fn expect_for(&self, replaces: Option<&RemoteEntry>, kind: Kind) -> Expect {
        self.log_guarding();
        match (&self.ctx.guarding, replaces) {
            (Guarding::Off(_), _) => Expect::Anything,
            (Guarding::Enforced, Some(r)) if r.kind == kind && !is_etag(&r.rid) => Expect::Anything,
            (_, Some(r)) if r.kind == kind => Expect::Version(r.rid.clone()),
            _ => Expect::Absent,
        }
    }

    /// Say once per process what this target's writes are not protected
    /// against.
    fn log_guarding(&self) {
        let name = self.name();
        match &self.ctx.guarding {
            Guarding::Enforced => {}
            Guarding::Checked => self.ctx.guarding_logged.call_once(|| {
                tracing::info!(
                    target_name = name,
                    "local remote: each write is compared with the version last seen just before \
                     it is made (not atomic: only the lease keeps two writers apart)"
                )
            }),
            Guarding::Off(why) => self.ctx.guarding_logged.call_once(|| {
                tracing::warn!(
                    target_name = name,
                    "data writes carry no If-Match/If-None-Match ({why}): a host whose view of \
                     the remote is stale can overwrite another host's newer version, which is \
                     then kept only in the trash"
                )
            }),
        }
    }

    /// Local remotes, just before a write: fail when the object is not
    /// what `expect` says (S3 checks the condition itself).
    pub(super) async fn precheck(&self, key: &str, expect: &Expect) -> Result<(), FileErr> {
        if self.ctx.guarding != Guarding::Checked {
            return Ok(());
        }
        self.compare(key, expect).await
    }

    /// The identity of the object at `key`, if any (one HEAD or stat).
    pub(super) async fn found_rid(&self, key: &str) -> Result<Option<String>, FileErr> {
        match self.net(self.op.stat(key)).await? {
            Ok(m) => Ok(Some(object_rid(&m))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ferr("cannot check the remote version", e)),
        }
    }

    /// Compare the object at `key` with `expect`.
    async fn compare(&self, key: &str, expect: &Expect) -> Result<(), FileErr> {
        if *expect == Expect::Anything {
            return Ok(());
        }
        match (expect, self.found_rid(key).await?) {
            (Expect::Absent, None) => Ok(()),
            (Expect::Version(v), Some(f)) if *v == f => Ok(()),
            _ => Err(FileErr::RemoteChanged),
        }
    }

    /// What the remote holds for `rel` as a `kind` entry right now.
    async fn remote_now(&self, rel: &str, kind: Kind) -> Result<Option<RemoteEntry>, FileErr> {
        let key = key_for(rel, kind);
        let m = match self.net(self.op.stat(&key)).await? {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ferr("cannot check the remote version", e)),
        };
        let um = m.user_metadata();
        let mtime = um
            .and_then(|u| u.get("mtime"))
            .and_then(layout::parse_mtime)
            .or_else(|| m.last_modified().and_then(layout::opendal_ns));
        let mut r = RemoteEntry {
            kind,
            size: m.content_length(),
            rid: object_rid(&m),
            mtime_ns: mtime,
            mode: um.and_then(|u| u.get("mode")).and_then(layout::parse_mode),
            link: None,
        };
        if kind == Kind::Symlink {
            let buf = self
                .net(self.op.read(&key))
                .await?
                .map_err(|e| ferr("cannot read the remote version", e))?;
            r.link = String::from_utf8(buf.to_vec()).ok();
        }
        Ok(Some(r))
    }

    /// An upload of `rel` was refused: the remote is not the version this
    /// pass planned against. Decide from what it holds now.
    pub(super) async fn stale_upload(&self, rel: String, d: &mut Done) -> Result<(), FileErr> {
        d.remote_stale = true;
        let local = self.read_local(&rel).await?;
        let current = self.remote_now(&rel, local.kind).await?;
        tracing::warn!(
            target_name = self.name(),
            path = %rel,
            "the remote object changed since this host last saw it (another writer?); not overwriting it blindly"
        );
        let again = |e: FileErr| match e {
            FileErr::RemoteChanged => FileErr::File(
                "the remote object keeps changing (another writer?); retried next pass".into(),
            ),
            e => e,
        };
        match current {
            None => {
                let b = self.upload(&rel, &local, None, d).await.map_err(again)?;
                d.changes.push((rel, Some(b)));
            }
            // Our own write whose response was lost (the retry was refused).
            Some(r) if plan::same(&local, &r) => {
                d.remote_changed = true;
                d.changes
                    .push((rel, Some(BaseEntry::from_local(&local, r.rid))));
            }
            Some(r) if self.ctx.target.direction.writes_local() => self
                .conflict_action(rel, local, r, d)
                .await
                .map_err(again)?,
            Some(r) => {
                // Push-only: the other version stays on the remote as a
                // conflict copy; the local version (the target's truth)
                // then replaces the version now seen.
                let copy = localfs::conflict_name(&rel, &self.inner.host, &self.stamp);
                let key = key_for(&rel, r.kind);
                self.gate()?;
                self.net(self.op.copy(&key, &key_for(&copy, r.kind)))
                    .await?
                    .map_err(|e| ferr("cannot keep the other version as a conflict copy", e))?;
                d.conflicts.push(copy);
                let b = self
                    .upload(&rel, &local, Some(&r), d)
                    .await
                    .map_err(again)?;
                d.changes.push((rel, Some(b)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_told_from_the_size_mtime_stand_in() {
        assert!(is_etag("\"9b2cf535f27731c974343645a3985328\""));
        assert!(is_etag("\"9b2cf535f27731c974343645a3985328-3\""));
        assert!(is_etag("W/\"x\""));
        assert!(!is_etag("12:1700000000000000000"));
        assert!(!is_etag(""));
    }

    #[test]
    fn only_a_failed_condition_counts_as_refused() {
        let e = |k| opendal::Error::new(k, "x");
        let version = Expect::Version("\"e\"".into());
        assert!(refused(&e(ErrorKind::ConditionNotMatch), &version));
        assert!(refused(&e(ErrorKind::Conflict), &Expect::Absent));
        // If-Match on a key that is gone: S3 answers 404.
        assert!(refused(&e(ErrorKind::NotFound), &version));
        assert!(!refused(&e(ErrorKind::NotFound), &Expect::Absent));
        assert!(!refused(
            &e(ErrorKind::ConditionNotMatch),
            &Expect::Anything
        ));
        assert!(!refused(&e(ErrorKind::Unexpected), &version));
    }
}
