//! Per-file sync state in redb (`<state_dir>/sync.redb`).
//!
//! For every target, table `files/<target>` maps a relative path to the
//! [`BaseEntry`] both sides agreed on after the last successful transfer: the
//! local metadata (size, mtime, mode, link target) and the remote object's
//! identity (`rid`: its ETag, or `size:mtime` where a backend has none). The
//! 3-way planner compares the local scan and the remote view against it.
//! Values are JSON (small, debuggable, forward compatible).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::kind::Kind;
use super::scan::LocalEntry;
use crate::version::{FormatTooNew, check_format};

/// A target's base: relative path -> what both sides last agreed on.
pub type BaseMap = BTreeMap<String, BaseEntry>;

/// Base changes a pass made: `None` removes the row.
pub type BaseChanges = BTreeMap<String, Option<BaseEntry>>;

/// What both sides held after the last sync of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseEntry {
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Identity of the remote object (ETag, or `size:mtime_ns`).
    pub rid: String,
}

impl BaseEntry {
    pub fn from_local(l: &LocalEntry, rid: String) -> BaseEntry {
        BaseEntry {
            kind: l.kind,
            size: l.size,
            mtime_ns: l.mtime_ns,
            mode: l.mode,
            link: l.link.clone(),
            rid,
        }
    }

    /// Whether the local entry is unchanged since this base.
    pub fn matches_local(&self, l: &LocalEntry) -> bool {
        if self.kind != l.kind {
            return false;
        }
        match self.kind {
            Kind::File => self.size == l.size && self.mtime_ns == l.mtime_ns && self.mode == l.mode,
            Kind::Symlink => self.link == l.link,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sync state database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    /// Written by a newer coltecd (see [`crate::version`]'s format rule).
    #[error(transparent)]
    TooNew(#[from] FormatTooNew),
}

/// The layout of `sync.redb` this build writes. A database without the tag
/// predates tagging and is format 1; a newer one is refused, never
/// reinterpreted (an older binary after a downgrade would otherwise read
/// rows it does not understand as "unknown" and re-transfer everything).
pub const STATE_FORMAT: u32 = 1;

/// Table `meta`: `format` -> [`STATE_FORMAT`] of the writer.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// The opened database.
pub struct StateDb {
    pub(super) db: Database,
    path: PathBuf,
}

/// Per-target facts kept between processes (table `targets`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMeta {
    /// Identity of the remote manifest as of the last pass that saw or wrote
    /// it: while it is unchanged, no other coltecd changed the remote.
    #[serde(default)]
    pub manifest_rid: Option<String>,
    /// Device and inode of the local root as of the last pass: a root that
    /// is not this directory any more (an unmounted volume, a rebuilt
    /// container) is not trusted to say what was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<super::root::RootId>,
    /// Which remote the base describes (a digest of the target's location
    /// and endpoint, see [`super::target::remote_identity`]): a spec edited
    /// to point the target elsewhere must not read the new, empty remote
    /// as "everything was deleted there".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

const TARGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("targets");

/// redb's page cache (its default is 1 GiB). Passes read a target's rows
/// once per full scan, or a handful for an event-driven pass; the OS page
/// cache serves re-reads, so a large private cache would only keep an idle
/// daemon's memory at the size of its biggest table.
const CACHE_BYTES: usize = 256 * 1024;

pub(super) fn table_name(target: &str) -> String {
    format!("files/{target}")
}

/// An undecodable row is treated as unknown (the path is then reconciled
/// like a first sync), never as a delete.
fn insert_row(out: &mut BaseMap, key: &str, value: &[u8]) {
    if let Ok(entry) = serde_json::from_slice::<BaseEntry>(value) {
        out.insert(key.to_string(), entry);
    }
}

impl StateDb {
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StateError::Db {
                path: path.to_path_buf(),
                source: e.into(),
            })?;
        let state = StateDb {
            db,
            path: path.to_path_buf(),
        };
        state.check_format()?;
        Ok(state)
    }

    /// Refuse a database written by a newer coltecd; tag an untagged one.
    fn check_format(&self) -> Result<(), StateError> {
        let found = {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            match txn.open_table(META) {
                Ok(t) => t.get("format").map_err(|e| self.err(e))?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.err(e)),
            }
        };
        match found {
            Some(found) => Ok(check_format(
                format!("the sync state database {}", self.path.display()),
                found,
                STATE_FORMAT,
            )?),
            None => {
                let txn = self.db.begin_write().map_err(|e| self.err(e))?;
                {
                    let mut t = txn.open_table(META).map_err(|e| self.err(e))?;
                    t.insert("format", STATE_FORMAT).map_err(|e| self.err(e))?;
                }
                txn.commit().map_err(|e| self.err(e))
            }
        }
    }

    pub(super) fn err(&self, e: impl Into<redb::Error>) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// All base entries of a target.
    pub fn load(&self, target: &str) -> Result<BaseMap, StateError> {
        let mut out = BTreeMap::new();
        self.for_each_row(&table_name(target), |k, v| insert_row(&mut out, k, v))?;
        Ok(out)
    }

    /// Every row of the table `name` (none when it does not exist yet), in
    /// key order, in one read transaction.
    pub(super) fn for_each_row(
        &self,
        name: &str,
        mut row_fn: impl FnMut(&str, &[u8]),
    ) -> Result<(), StateError> {
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.err(e)),
        };
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            row_fn(k.value(), v.value());
        }
        Ok(())
    }

    /// The base entries of `paths` and of everything under them (a path
    /// may be a directory), plus the number of entries the target has in
    /// all: what an event-driven pass needs, without reading the rest.
    pub fn load_under(
        &self,
        target: &str,
        paths: &BTreeSet<String>,
    ) -> Result<(BaseMap, u64), StateError> {
        let name = table_name(target);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((BTreeMap::new(), 0)),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = BTreeMap::new();
        for p in paths {
            if let Some(v) = table.get(p.as_str()).map_err(|e| self.err(e))? {
                insert_row(&mut out, p, v.value());
            }
            let prefix = format!("{p}/");
            for row in table.range(prefix.as_str()..).map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                insert_row(&mut out, k.value(), v.value());
            }
        }
        let total = table.len().map_err(|e| self.err(e))?;
        Ok((out, total))
    }

    pub fn load_meta(&self, target: &str) -> Result<TargetMeta, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match txn.open_table(TARGETS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(TargetMeta::default()),
            Err(e) => return Err(self.err(e)),
        };
        Ok(table
            .get(target)
            .map_err(|e| self.err(e))?
            .and_then(|v| serde_json::from_slice(v.value()).ok())
            .unwrap_or_default())
    }

    pub fn save_meta(&self, target: &str, meta: &TargetMeta) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(meta).unwrap_or_default();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(TARGETS).map_err(|e| self.err(e))?;
            table
                .insert(target, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Apply changes in one transaction: `Some` upserts, `None` removes.
    pub fn apply(&self, target: &str, changes: &BaseChanges) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        self.apply_in(&txn, target, changes)?;
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// [`StateDb::apply`] inside an open transaction.
    pub(super) fn apply_in(
        &self,
        txn: &redb::WriteTransaction,
        target: &str,
        changes: &BaseChanges,
    ) -> Result<(), StateError> {
        self.write_rows(txn, &table_name(target), changes)
    }

    /// Upsert (`Some`, as JSON) or remove (`None`) rows of table `name`
    /// inside an open transaction: the one writer of per-path tables (the
    /// base and the journal of pending transfers).
    pub(super) fn write_rows<T: Serialize>(
        &self,
        txn: &redb::WriteTransaction,
        name: &str,
        changes: &BTreeMap<String, Option<T>>,
    ) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
        let mut table = txn.open_table(def).map_err(|e| self.err(e))?;
        for (k, v) in changes {
            match v {
                Some(row) => {
                    let bytes = serde_json::to_vec(row).unwrap_or_default();
                    table
                        .insert(k.as_str(), bytes.as_slice())
                        .map_err(|e| self.err(e))?;
                }
                None => {
                    table.remove(k.as_str()).map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(())
    }

    /// Forget every base row of `target` and store `meta`, in one
    /// transaction: the local root is not the directory the base
    /// describes (a missing or replaced root, see `sync::root`).
    pub fn void_base(&self, target: &str, meta: &TargetMeta) -> Result<(), StateError> {
        let name = table_name(target);
        let def: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        match txn.delete_table(def) {
            Ok(_) => {}
            Err(e) => return Err(self.err(e)),
        }
        {
            let bytes = serde_json::to_vec(meta).unwrap_or_default();
            let mut table = txn.open_table(TARGETS).map_err(|e| self.err(e))?;
            table
                .insert(target, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_and_load_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let db = StateDb::open(&tmp.path().join("s.redb")).unwrap();
        assert!(db.load("t").unwrap().is_empty());
        let e = BaseEntry {
            kind: Kind::File,
            size: 3,
            mtime_ns: 5,
            mode: 0o600,
            link: None,
            rid: "\"etag\"".into(),
        };
        let mut ch = BTreeMap::new();
        ch.insert("a/b".to_string(), Some(e.clone()));
        ch.insert("c".to_string(), Some(e.clone()));
        db.apply("t", &ch).unwrap();
        let mut ch = BTreeMap::new();
        ch.insert("c".to_string(), None);
        db.apply("t", &ch).unwrap();
        let got = db.load("t").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got["a/b"], e);
        assert!(db.load("other").unwrap().is_empty());
        assert_eq!(db.load_meta("t").unwrap(), TargetMeta::default());
        let m = TargetMeta {
            manifest_rid: Some("x".into()),
            root: None,
            remote: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
        };
        db.save_meta("t", &m).unwrap();
        assert_eq!(db.load_meta("t").unwrap(), m);
    }

    #[test]
    fn load_under_reads_paths_and_their_subtrees_only() {
        let tmp = tempfile::tempdir().unwrap();
        let db = StateDb::open(&tmp.path().join("s.redb")).unwrap();
        let e = BaseEntry {
            kind: Kind::File,
            size: 1,
            mtime_ns: 1,
            mode: 0o644,
            link: None,
            rid: "r".into(),
        };
        let mut ch = BTreeMap::new();
        // "a-b" and "a.b" sort between "a" and "a/", "ab/c" after: none is under "a".
        for k in ["a", "a-b", "a.b", "a/x", "a/y/z", "ab/c", "b/q", "c"] {
            ch.insert(k.to_string(), Some(e.clone()));
        }
        db.apply("t", &ch).unwrap();
        let want: BTreeSet<String> =
            ["a".to_string(), "c".to_string(), "missing".to_string()].into();
        let (got, total) = db.load_under("t", &want).unwrap();
        assert_eq!(total, 8);
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a", "a/x", "a/y/z", "c"]
        );
        let (none, total) = db.load_under("other", &want).unwrap();
        assert!(none.is_empty());
        assert_eq!(total, 0);
    }
}
