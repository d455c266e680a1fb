//! Where a lease object lives inside its store: a key as path segments,
//! derived from a target's location, with the nesting questions the lease
//! set asks (ancestors, strictly inside).

use std::path::Component;

use crate::spec::Location;

/// A prefix inside a store, as path segments (empty = the store root).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(pub Vec<String>);

impl Prefix {
    /// Every enclosing prefix, nearest first, down to the store root.
    pub fn ancestors(&self) -> Vec<Prefix> {
        (0..self.0.len())
            .rev()
            .map(|n| Prefix(self.0[..n].to_vec()))
            .collect()
    }

    pub fn child(&self, names: &[&str]) -> Prefix {
        let mut v = self.0.clone();
        v.extend(names.iter().map(|s| s.to_string()));
        Prefix(v)
    }

    pub fn is_strictly_inside(&self, other: &Prefix) -> bool {
        self.0.len() > other.0.len() && self.0.starts_with(&other.0)
    }

    /// The prefix a target location leases.
    pub fn of(location: &Location) -> Prefix {
        match location {
            Location::S3 { key_prefix, .. } | Location::Crypt { key_prefix, .. } => Prefix(
                key_prefix
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            Location::Local { dir } => {
                let abs = if dir.is_absolute() {
                    dir.clone()
                } else {
                    std::env::current_dir().unwrap_or_default().join(dir)
                };
                let mut segs: Vec<String> = Vec::new();
                for c in abs.components() {
                    match c {
                        Component::Normal(s) => segs.push(s.to_string_lossy().into_owned()),
                        Component::ParentDir => {
                            segs.pop();
                        }
                        _ => {}
                    }
                }
                Prefix(segs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn prefixes_and_ancestors() {
        let p = Prefix(vec!["a".into(), "b".into(), "c%d".into()]);
        let anc = p.ancestors();
        assert_eq!(anc.len(), 3);
        assert_eq!(anc[0], Prefix(vec!["a".into(), "b".into()]));
        assert_eq!(anc[2], Prefix(vec![]));
        assert!(p.is_strictly_inside(&anc[2]));
        assert!(!p.is_strictly_inside(&p));
        let local = Prefix::of(&Location::Local {
            dir: PathBuf::from("/x/./y/../z"),
        });
        assert_eq!(local, Prefix(vec!["x".into(), "z".into()]));
    }
}
