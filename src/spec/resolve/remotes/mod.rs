//! Remotes: `s3` (bucket, endpoint, region, credentials from options or the
//! environment), `local` (a directory) and `crypt` (wrapping another remote,
//! with the loop check). A remote with errors resolves to `None` so targets
//! using it do not pile up follow-on errors.
//!
//! This file dispatches by type and holds what all share (options, key
//! prefixes) and the local remote; [`s3`] and [`crypt`] hold theirs.

mod crypt;
mod s3;

use std::collections::BTreeMap;

use super::Resolver;
use crate::spec::model::*;
use crate::spec::raw::*;
use crypt::CryptLoops;

impl Resolver<'_> {
    /// Every remote, `None` where it had errors (so targets using it do not
    /// pile up follow-on errors).
    pub(super) fn remotes(
        &mut self,
        raw: &BTreeMap<String, RawRemote>,
    ) -> BTreeMap<String, Option<RemoteSpec>> {
        let mut out = BTreeMap::new();
        let loops = CryptLoops::new(raw);
        for (name, r) in raw {
            let before = self.errors.len();
            let field = format!("persistence.remotes.{name}");
            let kind = match r.kind.unwrap_or(RawRemoteType::S3) {
                RawRemoteType::S3 => self.s3_remote(&field, name, r).map(RemoteKind::S3),
                RawRemoteType::Local => self.local_remote(&field, r).map(RemoteKind::Local),
                RawRemoteType::Crypt => self
                    .crypt_remote(&field, name, r, raw, &loops)
                    .map(RemoteKind::Crypt),
            };
            let spec = kind
                .filter(|_| self.errors.len() == before)
                .map(|kind| RemoteSpec {
                    name: name.clone(),
                    kind,
                });
            out.insert(name.clone(), spec);
        }
        self.wire_crypt(&mut out);
        out
    }

    fn option(&mut self, field: &str, r: &RawRemote, key: &str) -> Option<String> {
        let v = r.options.0.get(key)?;
        let f = format!("{field}.options.{key}");
        let text = match v {
            NumOrStr::Str(s) => s.clone(),
            other => other.to_string(),
        };
        self.expand(&f, &text).filter(|s| !s.is_empty())
    }

    /// A `/`-separated key prefix: `${VAR}` expanded, no `..`, no empty segments.
    fn key_prefix(&mut self, field: &str, raw: Option<&str>) -> Option<String> {
        let raw = raw?;
        let v = self.expand(field, raw)?;
        self.clean_key(field, raw, &v)
    }

    /// `v` is the expanded value; messages quote `raw`, what the user wrote.
    pub(super) fn clean_key(&mut self, field: &str, raw: &str, v: &str) -> Option<String> {
        let segs: Vec<&str> = v
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        if segs.contains(&"..") {
            self.err(
                field,
                format!("`{raw}` contains `..`"),
                "remote paths cannot climb out of their prefix; remove the `..`",
            );
            return None;
        }
        Some(segs.join("/"))
    }

    fn local_remote(&mut self, field: &str, r: &RawRemote) -> Option<LocalRemote> {
        if r.bucket.is_some() || !r.options.0.is_empty() {
            self.warn(
                field,
                "`bucket` and `options` do not apply to a local remote and are ignored",
                "remove them; `path_prefix` is the remote's root directory",
            );
        }
        let root = match &r.path_prefix {
            Some(p) => self.local_path(&format!("{field}.path_prefix"), p)?,
            None => self.spec_dir.clone(),
        };
        Some(LocalRemote { root })
    }
}
