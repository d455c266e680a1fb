//! The `crypt` remote: what it wraps (`wrap_remote`, `wrap_path`), its
//! password variables, the loop check among crypt remotes, and the wiring
//! that gives each crypt remote a resolved copy of the remote it wraps.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::super::{Resolver, unknown_remote_hint};
use crate::spec::defaults::MAX_CRYPT_NESTING;
use crate::spec::model::*;
use crate::spec::raw::*;

impl Resolver<'_> {
    /// Give each crypt remote a copy of the remote it wraps, innermost
    /// first: one walk down each chain, each remote filled once (not one
    /// pass over every remote per remote, which was quadratic). Loops were
    /// refused above; a chain deeper than [`MAX_CRYPT_NESTING`] is refused
    /// here, which also bounds the nested copies.
    pub(super) fn wire_crypt(&mut self, out: &mut BTreeMap<String, Option<RemoteSpec>>) {
        fn inner_of(out: &BTreeMap<String, Option<RemoteSpec>>, name: &str) -> Option<String> {
            match out.get(name) {
                Some(Some(RemoteSpec {
                    kind: RemoteKind::Crypt(c),
                    ..
                })) => Some(c.wrap_remote.clone()),
                _ => None,
            }
        }
        let mut depth: HashMap<String, usize> = HashMap::new();
        let names: Vec<String> = out.keys().cloned().collect();
        for start in &names {
            let mut chain: Vec<String> = Vec::new();
            let mut cur = start.clone();
            while !depth.contains_key(&cur) && chain.len() <= names.len() {
                match inner_of(out, &cur) {
                    Some(inner) => {
                        chain.push(cur);
                        cur = inner;
                    }
                    None => {
                        depth.insert(cur, 0);
                        break;
                    }
                }
            }
            for name in chain.iter().rev() {
                let Some(inner) = inner_of(out, name) else {
                    continue;
                };
                let d = depth.get(&inner).copied().unwrap_or(0) + 1;
                depth.insert(name.clone(), d);
                if d > MAX_CRYPT_NESTING {
                    if d == MAX_CRYPT_NESTING + 1 {
                        self.err(
                            format!("persistence.remotes.{name}.wrap_remote"),
                            format!(
                                "crypt remotes wrap each other more than {MAX_CRYPT_NESTING} deep"
                            ),
                            "wrap the s3 or local remote directly; one crypt layer encrypts everything",
                        );
                    }
                    out.insert(name.clone(), None);
                    continue;
                }
                let wrapped = out.get(&inner).cloned().flatten().map(Box::new);
                if let Some(Some(RemoteSpec {
                    kind: RemoteKind::Crypt(c),
                    ..
                })) = out.get_mut(name)
                {
                    c.wrapped = wrapped;
                }
            }
        }
    }

    pub(super) fn crypt_remote(
        &mut self,
        field: &str,
        name: &str,
        r: &RawRemote,
        all: &BTreeMap<String, RawRemote>,
        loops: &CryptLoops<'_>,
    ) -> Option<CryptRemote> {
        let wrap = self.crypt_wrap(field, name, r, all, loops);
        let Some(c) = &r.crypt else {
            self.err(
                format!("{field}.crypt"),
                format!("crypt remote `{name}` has no crypt settings"),
                "add `crypt: {password_env: <VAR holding the password>, password2_env: <VAR holding the salt>}`",
            );
            return None;
        };
        if let Some(enc) = &c.filename_encoding
            && !enc.eq_ignore_ascii_case("base32")
        {
            self.err(
                format!("{field}.crypt.filename_encoding"),
                format!(
                    "crypt remote `{name}` uses filename_encoding `{enc}`; coltecd reads and writes only rclone's default, base32"
                ),
                "a tree rclone wrote with another encoding cannot be served by coltecd; keep syncing it with rclone, or copy it into a crypt remote with `filename_encoding: base32` (remove the key)",
            );
            return None;
        }
        let wrap_path = match &r.wrap_path {
            Some(p) => self.key_prefix(&format!("{field}.wrap_path"), Some(p))?,
            None => String::new(),
        };
        let password = (self.env)(&c.password_env)
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        if password.is_none() {
            self.warn(
                format!("{field}.crypt.password_env"),
                format!(
                    "{} is not set, so targets on crypt remote `{name}` cannot be synced",
                    c.password_env
                ),
                format!("set {} in the container's environment", c.password_env),
            );
        }
        let salt = c
            .password2_env
            .as_ref()
            .and_then(|v| (self.env)(v))
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        Some(CryptRemote {
            wrap_remote: wrap?,
            wrapped: None,
            wrap_path,
            password_env: c.password_env.clone(),
            password2_env: c.password2_env.clone(),
            password,
            salt,
            filename_encryption: match c
                .filename_encryption
                .unwrap_or(RawFilenameEncryption::Standard)
            {
                RawFilenameEncryption::Standard => "standard",
                RawFilenameEncryption::Obfuscate => "obfuscate",
                RawFilenameEncryption::Off => "off",
            }
            .to_string(),
            directory_name_encryption: c.directory_name_encryption.unwrap_or(true),
        })
    }

    /// The remote a crypt remote wraps: it must exist, and the chain of
    /// crypt remotes must end (a loop is reported once, at its smallest member).
    fn crypt_wrap(
        &mut self,
        field: &str,
        name: &str,
        r: &RawRemote,
        all: &BTreeMap<String, RawRemote>,
        loops: &CryptLoops<'_>,
    ) -> Option<String> {
        match &r.wrap_remote {
            None => {
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("crypt remote `{name}` has no wrap_remote"),
                    "set `wrap_remote:` to the name of the s3 or local remote it stores its encrypted files in",
                );
                None
            }
            Some(w) if w == name => {
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("crypt remote `{name}` wraps itself"),
                    "point `wrap_remote:` at an s3 or local remote",
                );
                None
            }
            Some(w) if !all.contains_key(w) => {
                let names: Vec<&str> = all.keys().map(String::as_str).collect();
                self.err(
                    format!("{field}.wrap_remote"),
                    format!("remote `{w}` is not defined in persistence.remotes"),
                    unknown_remote_hint(w, &names),
                );
                None
            }
            Some(w) => match loops.cycle_of(name) {
                None => Some(w.clone()),
                Some(cycle) => {
                    // Reported once, at the loop's smallest member.
                    if cycle.iter().min().is_some_and(|m| *m == name) {
                        let at = cycle.iter().position(|m| *m == name).unwrap_or(0);
                        let mut chain: Vec<&str> =
                            cycle[at..].iter().chain(&cycle[..at]).copied().collect();
                        chain.push(name);
                        self.err(
                            format!("{field}.wrap_remote"),
                            format!(
                                "crypt remotes wrap each other in a loop: {}",
                                chain.join(" -> ")
                            ),
                            "make the innermost crypt remote wrap an s3 or local remote",
                        );
                    }
                    None
                }
            },
        }
    }
}

/// The loops among crypt remotes (`a` wraps `b` wraps `a`), found in one
/// pass over the chains (each remote is visited once), so a spec with
/// thousands of remotes is checked in linear time.
pub(super) struct CryptLoops<'a> {
    /// Loop members -> index into `cycles`.
    member: HashMap<&'a str, usize>,
    /// Each loop's members in wrapping order.
    cycles: Vec<Vec<&'a str>>,
}

impl<'a> CryptLoops<'a> {
    pub(super) fn new(all: &'a BTreeMap<String, RawRemote>) -> Self {
        // What a crypt remote wraps (a self-wrap is reported on its own).
        let next = |name: &str| -> Option<&'a str> {
            let (key, r) = all.get_key_value(name)?;
            match (r.kind, r.wrap_remote.as_deref()) {
                (Some(RawRemoteType::Crypt), Some(w)) if w != key.as_str() => {
                    all.get_key_value(w).map(|(k, _)| k.as_str())
                }
                _ => None,
            }
        };
        let mut done: HashSet<&str> = HashSet::new();
        let mut out = CryptLoops {
            member: HashMap::new(),
            cycles: Vec::new(),
        };
        for start in all.keys() {
            let mut path: Vec<&str> = Vec::new();
            let mut on_path: HashMap<&str, usize> = HashMap::new();
            let mut cur = Some(start.as_str());
            while let Some(c) = cur {
                if done.contains(c) {
                    break;
                }
                if let Some(&at) = on_path.get(c) {
                    let cycle = path[at..].to_vec();
                    for m in &cycle {
                        out.member.insert(m, out.cycles.len());
                    }
                    out.cycles.push(cycle);
                    break;
                }
                on_path.insert(c, path.len());
                path.push(c);
                cur = next(c);
            }
            done.extend(path);
        }
        out
    }

    fn cycle_of(&self, name: &str) -> Option<&[&'a str]> {
        self.member.get(name).map(|&i| self.cycles[i].as_slice())
    }
}
