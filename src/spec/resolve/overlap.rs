//! Cross-target checks: unique names, and no two targets whose local
//! directories or remote locations nest. Remote locations are compared where
//! the bytes physically live ([`Phys`]): a crypt remote is followed to the
//! remote it wraps, an S3 location is (endpoint, bucket, key segments), a
//! local one a directory; nesting is by whole segments.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::Resolver;
use super::nesting::{Keyed, Pairing, nesting_pairs};
use super::targets::Draft;
use crate::spec::expand::normalize;
use crate::spec::model::*;
use crate::spec::raw::RawPersistence;

impl Resolver<'_> {
    /// Target names are unique across `sync[]` and volumes.
    pub(super) fn duplicate_names(&mut self, p: &RawPersistence) {
        let sync = p
            .sync
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("persistence.sync[{i}]"), s.name.as_str()));
        let vols = p.multi_scope_volumes.iter().flat_map(|v| {
            v.environment.iter().enumerate().map(|(i, e)| {
                (
                    format!("persistence.multi_scope_volumes.environment[{i}]"),
                    e.name.as_str(),
                )
            })
        });
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (origin, name) in sync.chain(vols) {
            if let Some(first) = seen.get(name) {
                self.err(
                    format!("{origin}.name"),
                    format!("target name `{name}` is already used by {first}"),
                    "give every sync entry and volume a unique name",
                );
            } else {
                seen.insert(name, origin);
            }
        }
    }

    /// The nesting checks: local directories against each other, remote
    /// locations against each other (by where the bytes physically live),
    /// local remote directories against synced directories, and every
    /// remote location against the workspace's `{org}/{project}/{env}`.
    pub(super) fn cross_checks(
        &mut self,
        drafts: &[Draft],
        remotes: &BTreeMap<String, Option<RemoteSpec>>,
        ws: Option<&Workspace>,
    ) {
        let phys: Vec<Option<Phys>> = drafts
            .iter()
            .map(|d| physical(&d.target, remotes))
            .collect();
        self.local_overlaps();
        self.remote_overlaps(drafts, &phys);
        self.remote_dirs_in_synced_dirs(drafts, &phys);
        for (d, p) in drafts.iter().zip(&phys) {
            self.outside_workspace(d, p.as_ref(), ws);
        }
    }

    /// Local directories that are equal or nest.
    fn local_overlaps(&mut self) {
        let locals = std::mem::take(&mut self.locals);
        let items: Vec<Keyed> = locals
            .iter()
            .map(|l| Keyed {
                segs: path_segments(&l.path),
                kind: 0,
            })
            .collect();
        for (x, y) in nesting_pairs(&items, Pairing::All) {
            let (a, b) = (&locals[x.min(y)], &locals[x.max(y)]);
            let (pa, pb) = (&a.path, &b.path);
            let rel = if pa == pb {
                "is the same directory as"
            } else if pb.starts_with(pa) {
                "is inside"
            } else {
                "contains"
            };
            self.err(
                &b.field,
                format!(
                    "{} {rel} {} of target `{}` ({})",
                    pb.display(),
                    pa.display(),
                    a.name,
                    a.origin
                ),
                "give every target its own directory; to leave a subdirectory out of a target, add it to that target's `exclude`",
            );
        }
    }

    /// Remote locations that are equal or nest, where the bytes live.
    fn remote_overlaps(&mut self, drafts: &[Draft], phys: &[Option<Phys>]) {
        let with_phys: Vec<usize> = (0..drafts.len()).filter(|&i| phys[i].is_some()).collect();
        let items: Vec<Keyed> = with_phys
            .iter()
            .filter_map(|&i| phys[i].as_ref())
            .map(|p| Keyed {
                segs: p.key(),
                kind: 0,
            })
            .collect();
        for (x, y) in nesting_pairs(&items, Pairing::All) {
            let (i, j) = (with_phys[x.min(y)], with_phys[x.max(y)]);
            let (a, b) = (&drafts[i], &drafts[j]);
            let (Some(pa), Some(pb)) = (&phys[i], &phys[j]) else {
                continue;
            };
            let Some(rel) = pa.overlap(pb) else { continue };
            self.err(
                format!("{}.remote_path", b.origin),
                format!(
                    "remote location {} {rel} {} of target `{}` ({})",
                    b.target.location(),
                    a.target.location(),
                    a.target.name,
                    a.origin
                ),
                "give every target its own remote prefix, e.g. `{org}/{project}/{env}/<name>`",
            );
        }
    }

    /// A local remote directory inside any synced directory (or around it)
    /// would sync into itself.
    fn remote_dirs_in_synced_dirs(&mut self, drafts: &[Draft], phys: &[Option<Phys>]) {
        // Kind 0: synced directories (index i); kind 1: remote directories (index n + i).
        let n = drafts.len();
        let mut items: Vec<Keyed> = drafts
            .iter()
            .map(|d| Keyed {
                segs: path_segments(&d.target.local_path),
                kind: 0,
            })
            .collect();
        let mut dir_of: Vec<usize> = Vec::new();
        for (i, p) in phys.iter().enumerate() {
            if let Some(Phys::Dir(dir)) = p {
                items.push(Keyed {
                    segs: path_segments(dir),
                    kind: 1,
                });
                dir_of.push(i);
            }
        }
        let mut found: Vec<(usize, usize)> = nesting_pairs(&items, Pairing::AcrossKinds)
            .into_iter()
            .map(|(x, y)| {
                let (local, remote) = if x < n { (x, y) } else { (y, x) };
                (dir_of[remote - n], local)
            })
            .collect();
        found.sort_unstable();
        for (j, local) in found {
            let (b, other) = (&drafts[j], &drafts[local]);
            let Some(Phys::Dir(dir)) = &phys[j] else {
                continue;
            };
            self.err(
                format!("{}.remote_path", b.origin),
                format!(
                    "remote directory {} overlaps the synced directory {} of target `{}`",
                    dir.display(),
                    other.target.local_path.display(),
                    other.target.name
                ),
                "put the local remote's `path_prefix` outside every synced directory",
            );
        }
    }

    /// A remote location outside the workspace's `{org}/{project}/{env}`
    /// could be written by another workspace: a warning.
    fn outside_workspace(&mut self, b: &Draft, p: Option<&Phys>, ws: Option<&Workspace>) {
        if let (Some(ws), Some(p)) = (ws, p) {
            let segs = p.segments();
            let want = [ws.org.as_str(), ws.project.as_str(), ws.env.as_str()];
            if !segs.windows(3).any(|w| w == want) {
                self.warn(
                    format!("{}.remote_path", b.origin),
                    format!(
                        "{} does not contain {}: another workspace could write the same prefix",
                        b.target.location(),
                        ws.slug()
                    ),
                    "include {org}/{project}/{env} in remote_path, e.g. `{org}/{project}/{env}/<name>`",
                );
            }
        }
    }
}

fn path_segments(p: &Path) -> Vec<String> {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect()
}

/// Where a target's bytes physically live, for the nesting checks: crypt
/// remotes are followed to the remote they wrap (using the plaintext path,
/// which is how rclone names directories when name encryption is off and a
/// conservative stand-in when it is on).
#[derive(Debug, Clone, PartialEq)]
enum Phys {
    /// An object store: identity (endpoint + bucket) and key segments.
    Store {
        store: String,
        segs: Vec<String>,
    },
    Dir(PathBuf),
}

impl Phys {
    fn overlap(&self, other: &Phys) -> Option<&'static str> {
        match (self, other) {
            (Phys::Store { store: a, segs: x }, Phys::Store { store: b, segs: y }) if a == b => {
                if x == y {
                    Some("is the same as")
                } else if y.starts_with(x) {
                    Some("is inside")
                } else if x.starts_with(y) {
                    Some("contains")
                } else {
                    None
                }
            }
            (Phys::Dir(a), Phys::Dir(b)) => {
                if a == b {
                    Some("is the same as")
                } else if b.starts_with(a) {
                    Some("is inside")
                } else if a.starts_with(b) {
                    Some("contains")
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A sort key in which nesting is a prefix: the store (or `dir`) first.
    fn key(&self) -> Vec<String> {
        match self {
            Phys::Store { store, segs } => std::iter::once(format!("store:{store}"))
                .chain(segs.iter().cloned())
                .collect(),
            Phys::Dir(p) => std::iter::once("dir:".to_string())
                .chain(path_segments(p))
                .collect(),
        }
    }

    fn segments(&self) -> Vec<String> {
        match self {
            Phys::Store { segs, .. } => segs.clone(),
            Phys::Dir(p) => p
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect(),
        }
    }
}

fn split_key(k: &str) -> Vec<String> {
    k.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn physical(t: &Target, remotes: &BTreeMap<String, Option<RemoteSpec>>) -> Option<Phys> {
    let mut remote = &t.remote;
    let mut tail = split_key(&t.remote_path);
    for _ in 0..32 {
        match &remote.kind {
            RemoteKind::S3(s3) => {
                let mut segs = split_key(&s3.path_prefix);
                segs.extend(tail);
                return Some(Phys::Store {
                    store: format!("{}|{}", s3.endpoint.as_deref().unwrap_or("aws"), s3.bucket),
                    segs,
                });
            }
            RemoteKind::Local(l) => {
                let rp = tail.join("/");
                let dir = if t.remote_path.starts_with('/') && std::ptr::eq(remote, &t.remote) {
                    PathBuf::from(&t.remote_path)
                } else {
                    l.root.join(rp)
                };
                return Some(Phys::Dir(normalize(&dir)));
            }
            RemoteKind::Crypt(c) => {
                let mut segs = split_key(&c.wrap_path);
                segs.extend(tail);
                tail = segs;
                remote = remotes.get(&c.wrap_remote)?.as_ref()?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(bucket: &str, key: &str) -> Phys {
        Phys::Store {
            store: format!("aws|{bucket}"),
            segs: split_key(key),
        }
    }

    #[test]
    fn overlap_is_by_whole_segments() {
        assert_eq!(
            store("b", "a/b").overlap(&store("b", "a/b")),
            Some("is the same as")
        );
        assert_eq!(
            store("b", "a").overlap(&store("b", "a/b")),
            Some("is inside")
        );
        assert_eq!(
            store("b", "a/b").overlap(&store("b", "a")),
            Some("contains")
        );
        // `a/bc` is not inside `a/b`.
        assert_eq!(store("b", "a/b").overlap(&store("b", "a/bc")), None);
        assert_eq!(store("b", "a").overlap(&store("c", "a")), None);
        let d = |p: &str| Phys::Dir(PathBuf::from(p));
        assert_eq!(d("/r/a").overlap(&d("/r/a/b")), Some("is inside"));
        assert_eq!(d("/r/a").overlap(&d("/r/ab")), None);
        assert_eq!(d("/r/a").overlap(&store("b", "r/a")), None);
    }
}
