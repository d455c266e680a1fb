//! Upgrades and downgrades across format versions (#16 item 5): a newer
//! coltecd reads every older format; an older one refuses a newer lease
//! record, manifest or state database with a message naming the object and
//! the fix, and writes nothing over it. "Newer" is simulated by raising the
//! version field of what this build wrote, exactly what a future writer
//! would leave behind.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::daemon::{World, text};

/// The table `sync.redb` keeps its format tag in (src/sync/state.rs).
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

fn synced_world() -> World {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    std::fs::write(w.path("notes/a.txt"), "alpha").unwrap();
    let o = w.run(&["sync"]);
    assert!(o.status.success(), "{}", text(&o));
    w
}

/// The one file named `name` under `dir` (the remote's layout is not this
/// test's business, only that coltecd wrote the object).
fn find(dir: &Path, name: &str) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    assert_eq!(found.len(), 1, "{name} under {}: {found:?}", dir.display());
    found.remove(0)
}

fn bump_json_field(path: &Path, field: &str, to: u64) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v[field] = to.into();
    let bytes = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn a_lease_record_from_a_newer_coltecd_is_refused_and_left_untouched() {
    let w = synced_world();
    // A newer coltecd holds the lease: its record, with a field this build
    // does not know. (The one-shot sync above released and deleted ours.)
    let lease = w
        .remote()
        .join("acme/widget/dev-a/notes/.coltec/lease.json");
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    let record = serde_json::json!({
        "format": 2, "lease_id": "0123456789abcdef0123456789abcdef",
        "host": "newer-host", "container_id": "c", "pid": 7,
        "coltecd_version": "9.0.0", "workspace": "acme/widget/dev-a",
        "location": "local", "acquired_at": "2026-01-01T00:00:00Z",
        "renewed_at": "2026-01-01T00:00:00Z", "ttl_ms": 60000,
        "session": "s", "seq": 1, "released": false,
        "a_field_from_the_future": {"x": 1}
    });
    let bytes = serde_json::to_vec_pretty(&record).unwrap();
    std::fs::write(&lease, &bytes).unwrap();
    std::fs::write(w.path("notes/b.txt"), "beta").unwrap();

    for args in [&["sync"][..], &["lease", "break", "--force"][..]] {
        let o = w.run(args);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}");
        assert!(
            out.contains("has format 2, newer than this coltecd")
                && out.contains("lease")
                && out.contains("install that version"),
            "{args:?}: {out}"
        );
    }
    assert_eq!(
        std::fs::read(&lease).unwrap(),
        bytes,
        "the record was rewritten"
    );
    let pushed: Vec<_> = std::fs::read_dir(find(&w.remote(), "a.txt").parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !pushed.iter().any(|n| n == "b.txt"),
        "pushed under a newer holder's lease: {pushed:?}"
    );
}

#[test]
fn a_manifest_from_a_newer_coltecd_is_refused_not_trusted_or_overwritten() {
    let w = synced_world();
    let manifest = find(&w.remote(), "manifest.json");
    let bytes = bump_json_field(&manifest, "version", 2);
    // A fresh state dir forces the manifest to be read (a known manifest
    // identity would let the pass skip it).
    std::fs::remove_dir_all(w.state()).unwrap();
    std::fs::write(w.path("notes/b.txt"), "beta").unwrap();
    let o = w.run(&["sync"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("the manifest of target 'notes' has format 2, newer than this coltecd"),
        "{out}"
    );
    assert_eq!(std::fs::read(&manifest).unwrap(), bytes);
}

#[test]
fn a_state_database_from_a_newer_coltecd_is_refused_by_name() {
    let w = synced_world();
    let db_path = find(&w.state(), "sync.redb");
    {
        let db = Database::open(&db_path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 2).unwrap();
        txn.commit().unwrap();
    }
    std::fs::write(w.path("notes/b.txt"), "beta").unwrap();
    let o = w.run(&["sync"]);
    let out = text(&o);
    assert_ne!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "the sync state database {} has format 2, newer than this coltecd",
            db_path.display()
        )),
        "{out}"
    );
}

#[test]
fn a_state_database_from_before_format_tags_is_read_and_tagged_without_resyncing() {
    let w = synced_world();
    let db_path = find(&w.state(), "sync.redb");
    {
        // What coltecd wrote before the tag existed: the same tables, no meta.
        let db = Database::open(&db_path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(
            txn.delete_table(META).unwrap(),
            "this build tags its database"
        );
        txn.commit().unwrap();
    }
    let o = w.run(&["sync", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report[0]["target"], "notes", "{report}");
    assert_eq!(
        (&report[0]["uploaded"], &report[0]["plan"]["adopt"]["files"]),
        (&0.into(), &0.into()),
        "an untagged database was not trusted as the base: {report}"
    );
    let db = Database::open(&db_path).unwrap();
    let txn = db.begin_read().unwrap();
    let tag = txn
        .open_table(META)
        .unwrap()
        .get("format")
        .unwrap()
        .map(|v| v.value());
    assert_eq!(tag, Some(1));
}

/// Found while hardening (#12 item 6): a spec edited to point a target at
/// another bucket or directory, with the same state dir, read the new empty
/// remote against the old base as "deleted there" and deleted the local
/// file. The base now records which remote it describes.
#[test]
fn pointing_a_target_at_another_remote_never_deletes_local_files() {
    let w = World::new();
    let spec_for = |remote: &Path| {
        format!(
            "  default_remote: local\n  remotes:\n    local: {{type: local, path_prefix: {}}}\n  sync:\n    - {{name: notes, path: {}, direction: bidirectional}}\n",
            remote.display(),
            w.path("notes").display()
        )
    };
    std::fs::create_dir_all(w.path("notes")).unwrap();
    std::fs::write(w.path("notes/keep.txt"), "precious").unwrap();
    w.write_spec(&spec_for(&w.path("old-remote")), "");
    let o = w.run(&["sync"]);
    assert!(o.status.success(), "{}", text(&o));

    w.write_spec(&spec_for(&w.path("new-remote")), "");
    let o = w.run(&["sync"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(
        std::fs::read_to_string(w.path("notes/keep.txt")).unwrap(),
        "precious",
        "the local file was deleted: {t}"
    );
    assert!(
        w.path("new-remote/acme/widget/dev-a/notes/keep.txt")
            .is_file(),
        "the file was not pushed to the new remote: {t}"
    );
    // And back again: the old remote still has it, nothing is lost either way.
    w.write_spec(&spec_for(&w.path("old-remote")), "");
    let o = w.run(&["sync"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(w.path("notes/keep.txt").is_file());
}
