//! Disk full during restore (issue 14): the local root sits on a small
//! tmpfs that fills up half-way through `coltecd restore` (and through a
//! `coltecd sync` starting on the half-restored root). The error names
//! `No space left on device` and the file, no temp file stays, and no
//! deletion follows from the half-restored tree: no remote object is
//! deleted or trashed. Once space is freed, the next `coltecd sync`
//! completes the tree with no remote deletion. Needs root (mount); a
//! failing mount fails the test.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cli::{coltecd_s3, described as text};
use crate::support::s3::S3Server;
use crate::support::s3_test;

const FILES: usize = 24;
const FILE_SIZE: usize = 256 * 1024;
/// Room for about half the tree.
const SMALL: &str = "size=3m";
const PREFIX: &str = "acme/widget/df/data/";

/// A tmpfs mounted at a directory; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, opts: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "mounting a tmpfs at {} failed (this test needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn body(i: usize) -> Vec<u8> {
    (0..FILE_SIZE)
        .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

fn write_spec(server: S3Server, dir: &Path, bucket: &str, local: &Path) -> PathBuf {
    let yaml = format!(
        "name: df-test
metadata: {{org: acme, project: widget, environment: df}}
persistence:
  enabled: true
  default_remote: s3
  remotes:
{remote}  sync:
    - name: data
      path: {local}
      remote_path: \"{{org}}/{{project}}/{{env}}/data\"
      direction: bidirectional
      interval: 60
  daemon:
    log_dir: {logs}
",
        remote = server.yaml_remote("s3", bucket, server.endpoint()),
        local = local.display(),
        logs = dir.join("logs").display(),
    );
    let path = dir.join("spec.yaml");
    fs::write(&path, yaml).unwrap();
    path
}

/// `coltecd <args>`, run to completion.
fn coltecd(spec: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    coltecd_s3(spec, state, args).output().unwrap()
}

/// Every key under the target's prefix (control objects included).
fn keys(server: S3Server, bucket: &str) -> Vec<String> {
    server
        .list_keys(bucket, PREFIX)
        .into_iter()
        .filter_map(|k| k.strip_prefix(PREFIX).map(str::to_string))
        .collect()
}

fn data_keys(server: S3Server, bucket: &str) -> Vec<String> {
    let mut k: Vec<String> = keys(server, bucket)
        .into_iter()
        .filter(|k| !k.starts_with(".coltec/"))
        .collect();
    k.sort();
    k
}

/// Files under `root` (outside `.coltec/`) by name, with their contents.
fn local(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".coltec")
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            (name, fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Whatever is on the half-full root is a complete file of the tree: no
/// temp file, nothing torn.
fn only_whole_files(root: &Path, names: &[String], when: &str) -> usize {
    let files = local(root);
    for (name, bytes) in &files {
        let i = names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{when}: temp or stray file {name} left"));
        assert!(*bytes == body(i), "{when}: {name} is torn");
    }
    files.len()
}

fn assert_remote_untouched(server: S3Server, bucket: &str, names: &[String], when: &str) {
    assert_eq!(
        data_keys(server, bucket),
        names,
        "{when}: a remote object was deleted"
    );
    let trashed: Vec<String> = keys(server, bucket)
        .into_iter()
        .filter(|k| k.starts_with(".coltec/trash/"))
        .collect();
    assert!(trashed.is_empty(), "{when}: trashed remotely: {trashed:?}");
}

/// Fill B's disk with `first` (`restore`, or `sync` on an empty root
/// with no state: a new container's first start), then sync.
fn disk_full(server: S3Server, first: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = server.bucket("disk-full");
    let names: Vec<String> = (0..FILES).map(|i| format!("f{i:02}.bin")).collect();

    // Host A pushes the tree.
    let a_root = tmp.path().join("a");
    fs::create_dir_all(&a_root).unwrap();
    for (i, n) in names.iter().enumerate() {
        fs::write(a_root.join(n), body(i)).unwrap();
    }
    let a_dir = tmp.path().join("a-conf");
    fs::create_dir_all(&a_dir).unwrap();
    let a_spec = write_spec(server, &a_dir, &bucket, &a_root);
    let o = coltecd(&a_spec, &a_dir.join("state"), &["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(data_keys(server, &bucket), names);

    // Host B: its root on a disk with room for about half the tree.
    let mnt = Tmpfs::mount(&tmp.path().join("mnt"), SMALL);
    let b_root = mnt.0.join("data");
    fs::create_dir_all(&b_root).unwrap();
    let b_dir = tmp.path().join("b-conf");
    fs::create_dir_all(&b_dir).unwrap();
    let b_spec = write_spec(server, &b_dir, &bucket, &b_root);
    let b_state = b_dir.join("state");

    let o = coltecd(&b_spec, &b_state, &[first]);
    let out = text(&o);
    assert_ne!(o.status.code(), Some(0), "the restore cannot fit: {out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(
        out.lines().any(|l| l.contains("No space left on device")
            && names.iter().any(|n| l.contains(n.as_str()))),
        "no error names the file it could not write: {out}"
    );
    let half = only_whole_files(&b_root, &names, "after the first run");
    assert!(
        half > 0 && half < FILES,
        "restored {half} of {FILES}: not half-way"
    );
    assert_remote_untouched(server, &bucket, &names, "after the first run");

    // A sync starting on the half-restored root, still full.
    let o = coltecd(&b_spec, &b_state, &["sync"]);
    assert_ne!(o.status.code(), Some(0), "still no room: {}", text(&o));
    only_whole_files(&b_root, &names, "after a sync on the full disk");
    assert_remote_untouched(server, &bucket, &names, "after a sync on the full disk");

    // Space freed: the next sync completes the tree, deleting nothing.
    mnt.resize("size=32m");
    let o = coltecd(&b_spec, &b_state, &["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        only_whole_files(&b_root, &names, "after space freed"),
        FILES
    );
    assert_remote_untouched(server, &bucket, &names, "after space freed");
}

s3_test! {
    #[test]
    fn disk_full_during_restore_deletes_nothing_and_the_next_sync_completes(server) {
        disk_full(server, "restore");
    }
}

s3_test! {
    #[test]
    fn disk_full_on_a_first_sync_into_an_empty_root_deletes_nothing(server) {
        disk_full(server, "sync");
    }
}
