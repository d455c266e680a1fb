//! `kill -9` right after uploads, then local deletes: the next `coltecd
//! sync` knows what the killed run pushed, deletes those files remotely,
//! resurrects nothing and makes no conflict copy. Seeded trials (kill
//! point, deleted files, direction), through the binary.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::cli::{coltecd_s3 as coltecd, described as text};
use crate::support::s3::S3Server;
use crate::support::s3_test;

const FILES: usize = 16;
const FILE_SIZE: usize = 96 * 1024;
const PREFIX: &str = "acme/widget/k9/data/";

/// xorshift64*: the trials are reproducible from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn write_spec(
    server: S3Server,
    dir: &Path,
    bucket: &str,
    direction: &str,
    local: &Path,
) -> PathBuf {
    let yaml = format!(
        "name: k9-test
metadata: {{org: acme, project: widget, environment: k9}}
persistence:
  enabled: true
  default_remote: s3
  remotes:
{remote}  sync:
    - name: data
      path: {local}
      remote_path: \"{{org}}/{{project}}/{{env}}/data\"
      direction: {direction}
      interval: 60
      bwlimit: 384k
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

/// The target's data objects on the bucket.
fn stored(server: S3Server, bucket: &str) -> BTreeSet<String> {
    server
        .list_keys(bucket, PREFIX)
        .into_iter()
        .filter_map(|k| k.strip_prefix(PREFIX).map(str::to_string))
        .filter(|k| !k.starts_with(".coltec/"))
        .collect()
}

fn local_files(root: &Path) -> BTreeSet<String> {
    fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != ".coltec")
        .collect()
}

/// One trial; returns how many files the killed run had stored.
fn trial(server: S3Server, seed: u64) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let direction = if seed.is_multiple_of(2) {
        "bidirectional"
    } else {
        "push-only"
    };
    let tmp = tempfile::tempdir().unwrap();
    let bucket = server.bucket("k9");
    let local = tmp.path().join("data");
    fs::create_dir_all(&local).unwrap();
    let all: Vec<String> = (0..FILES).map(|i| format!("f{i:02}.bin")).collect();
    for (i, n) in all.iter().enumerate() {
        let body: Vec<u8> = (0..FILE_SIZE)
            .map(|j| (j as u8).wrapping_mul(13).wrapping_add(i as u8))
            .collect();
        fs::write(local.join(n), body).unwrap();
    }
    let spec = write_spec(server, tmp.path(), &bucket, direction, &local);
    let state = tmp.path().join("state");

    // Kill the first run once `at` files are stored (throttled, so the
    // run is still going).
    let at = 1 + rng.below(FILES - 4);
    let mut child = coltecd(&spec, &state, &["sync"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored(server, &bucket).len() < at && Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "seed {seed}: the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let pushed = stored(server, &bucket).len();
    assert!(
        pushed < FILES,
        "seed {seed}: the run finished before the kill"
    );

    // Delete some files locally: stored ones and not-yet-stored ones.
    let mut deleted = BTreeSet::new();
    while deleted.len() < 5 {
        deleted.insert(all[rng.below(FILES)].clone());
    }
    for n in &deleted {
        fs::remove_file(local.join(n)).unwrap();
    }
    let kept: BTreeSet<String> = all
        .iter()
        .filter(|n| !deleted.contains(*n))
        .cloned()
        .collect();

    let o = coltecd(&spec, &state, &["sync"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "seed {seed}: {}", text(&o));
    assert_eq!(
        local_files(&local),
        kept,
        "seed {seed} ({direction}, killed at {pushed}): resurrected or lost locally"
    );
    assert_eq!(
        stored(server, &bucket),
        kept,
        "seed {seed} ({direction}, killed at {pushed}): the remote does not mirror the local side"
    );
    // Settled: a further run has nothing to do.
    let o = coltecd(&spec, &state, &["sync"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "seed {seed}: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("up to date")
            || String::from_utf8_lossy(&o.stderr).contains("up to date"),
        "seed {seed}: {}",
        text(&o)
    );
    pushed
}

s3_test! {
    #[test]
    fn kill_9_after_uploads_then_local_deletes_resurrects_nothing_and_makes_no_conflict_copy(server) {
        let kill_points: Vec<usize> = (1..=4).map(|seed| trial(server, seed)).collect();
        // The trials did interrupt the runs part way.
        assert!(
            kill_points.iter().all(|&k| k > 0 && k < FILES),
            "{kill_points:?}"
        );
    }
}
