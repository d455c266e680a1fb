//! The published fault matrix (issue 14, tests/FAULT_MATRIX.md): a tree of
//! small files plus a few multipart-sized ones is pushed with the real
//! binary (`coltecd sync`) through a proxy injecting seeded random faults
//! on every request (data and `.coltec/` alike: 500, SlowDown, resets
//! before and after forwarding, stalls, truncated GET bodies), re-run
//! until it exits 0 (a bounded number of times), then restored with
//! `coltecd restore` into an empty directory through the same faults.
//! Every file's sha256 must match, nothing may be lost, and no temporary
//! file or object may be left. The figures go to
//! `target/fault-matrix/<server>.md`.
//!
//! Knobs (env): `COLTEC_FAULT_SEED` (printed), `COLTEC_FAULT_FILES`
//! (small files, default 500), `COLTEC_FAULT_PERCENT` (default 25),
//! `COLTEC_FAULT_STALL_MS` (default 1000; coltecd's own I/O timeout is
//! 30 s, set 31000 to trip it), `COLTEC_FAULT_LARGE` (multipart files,
//! default 2).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::cli::coltecd_s3;
use crate::support::proxy::{Fault, FaultCounts, FaultPlan, Proxy};
use crate::support::s3::S3Server;
use crate::support::{repo_root, s3_test};

const PREFIX: &str = "acme/widget/fm/data/";
/// Runs of one command before the test gives up.
const MAX_RUNS: usize = 12;
/// Above `SNAPSHOT_MAX` (16 MiB, src/sync/exec/snapshot.rs): streamed
/// as multipart uploads.
const LARGE: usize = 17 * 1024 * 1024;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: the tree is reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Write the tree under `root`; its files' sha256 by relative path.
fn make_tree(root: &Path, rng: &mut Rng, small: usize, large: usize) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    for i in 0..small {
        let rel = format!("d{:02}/f{i:05}.txt", i % 40);
        let len = 64 + (rng.next() % 4096) as usize;
        let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        put(root, &rel, &body, &mut want);
    }
    for i in 0..large {
        let rel = format!("big/large{i}.bin");
        let len = LARGE + (rng.next() % (2 * 1024 * 1024)) as usize;
        let mut body = vec![0u8; len];
        for chunk in body.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        put(root, &rel, &body, &mut want);
    }
    want
}

fn put(root: &Path, rel: &str, body: &[u8], want: &mut BTreeMap<String, String>) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, body).unwrap();
    want.insert(rel.to_string(), sha256(body));
}

/// Every file under `root` (outside `.coltec/`) with its sha256.
fn hashes(root: &Path) -> BTreeMap<String, String> {
    fn go(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            if rel.is_empty() && name == ".coltec" {
                continue;
            }
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                go(&e.path(), &r, out);
            } else {
                out.insert(r, sha256(&fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, "", &mut out);
    out
}

fn write_spec(dir: &Path, server: S3Server, bucket: &str, endpoint: &str, local: &Path) -> PathBuf {
    let yaml = format!(
        "name: fm-test
metadata: {{org: acme, project: widget, environment: fm}}
persistence:
  enabled: true
  default_remote: s3
  remotes:
{remote}  sync:
    - name: data
      path: {local}
      remote_path: \"{{org}}/{{project}}/{{env}}/data\"
      direction: push-only
      interval: 60
  daemon:
    log_dir: {logs}
",
        remote = server.yaml_remote("s3", bucket, endpoint),
        local = local.display(),
        logs = dir.join("logs").display(),
    );
    let path = dir.join("spec.yaml");
    fs::write(&path, yaml).unwrap();
    path
}

/// What running one command until it succeeded took.
#[derive(Default)]
struct Runs {
    invocations: usize,
    retries: usize,
    faults: FaultCounts,
    wall: Duration,
}

/// Run `args` through the faults until it exits 0 (at most [`MAX_RUNS`]).
fn until_ok(proxy: &Proxy, plan: FaultPlan, spec: &Path, state: &Path, args: &[&str]) -> Runs {
    let started = Instant::now();
    let mut runs = Runs::default();
    proxy.inject(plan);
    let ok = loop {
        let o: Output = coltecd_s3(spec, state, args).output().unwrap();
        runs.invocations += 1;
        let err = String::from_utf8_lossy(&o.stderr);
        runs.retries += err.matches("will retry").count();
        if o.status.success() {
            break true;
        }
        eprintln!(
            "{args:?} run {} exited {:?}: {}",
            runs.invocations,
            o.status.code(),
            err.lines()
                .filter(|l| !l.contains("will retry"))
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        // A bad spec or usage is no fault to retry through.
        assert!(!matches!(o.status.code(), Some(2 | 3)), "{args:?}: {err}");
        if runs.invocations >= MAX_RUNS {
            break false;
        }
    };
    runs.faults = proxy.stop_faults();
    runs.wall = started.elapsed();
    assert!(
        ok,
        "{args:?} never exited 0 in {MAX_RUNS} runs through the faults"
    );
    runs
}

/// What the run ran on and the figures of both phases (markdown).
struct Setup {
    server: S3Server,
    seed: u64,
    percent: u64,
    stall: u64,
}

fn report(k: &Setup, push: &Runs, restore: &Runs, lost: usize) -> String {
    let Setup {
        server,
        seed,
        percent,
        stall,
    } = k;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## {server:?}\n\nseed {seed}, {percent}% of requests faulted, stall {stall} ms\n"
    );
    let _ = writeln!(
        s,
        "| phase | invocations | retries logged | requests | faults | 500 | 503 SlowDown | reset before | reset after | stall | truncated GET | wall time |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [
        ("push (`coltecd sync`)", push),
        ("restore (`coltecd restore`)", restore),
    ] {
        let f = &r.faults;
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            r.invocations,
            r.retries,
            f.requests,
            f.total(),
            f.of(Fault::Error500),
            f.of(Fault::SlowDown),
            f.of(Fault::ResetBefore),
            f.of(Fault::ResetAfter),
            f.of(Fault::Stall),
            f.of(Fault::Truncate),
            r.wall.as_secs_f64()
        );
    }
    let _ = writeln!(s, "\nfiles lost: {lost}");
    s
}

fn matrix(server: S3Server) {
    let seed = knob("COLTEC_FAULT_SEED", {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_secs() ^ u64::from(t.subsec_nanos())
    });
    let percent = knob("COLTEC_FAULT_PERCENT", 25);
    let stall = knob("COLTEC_FAULT_STALL_MS", 1000);
    let small = knob("COLTEC_FAULT_FILES", 500) as usize;
    let large = knob("COLTEC_FAULT_LARGE", 2) as usize;
    eprintln!("fault matrix on {server:?}: seed {seed} (COLTEC_FAULT_SEED to replay), {percent}%");

    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let want = make_tree(&local, &mut rng, small, large);
    let bytes: u64 = want
        .keys()
        .map(|k| fs::metadata(local.join(k)).unwrap().len())
        .sum();
    let bucket = server.bucket("fault-matrix");
    let proxy = Proxy::start(server.endpoint());
    let spec = write_spec(tmp.path(), server, &bucket, &proxy.endpoint, &local);
    let stall_d = Duration::from_millis(stall);

    let push = until_ok(
        &proxy,
        FaultPlan::new(seed, percent, stall_d),
        &spec,
        &tmp.path().join("state"),
        &["sync"],
    );
    // Exactly the tree on the bucket: nothing lost, no stray object.
    let stored: Vec<String> = server
        .list_keys(&bucket, PREFIX)
        .into_iter()
        .filter_map(|k| k.strip_prefix(PREFIX).map(str::to_string))
        .filter(|k| !k.starts_with(".coltec/"))
        .collect();
    assert_eq!(
        stored,
        want.keys().cloned().collect::<Vec<_>>(),
        "seed {seed}: the bucket is not the tree"
    );

    let into = tmp.path().join("restored");
    fs::create_dir_all(&into).unwrap();
    let to = into.display().to_string();
    let restore = until_ok(
        &proxy,
        FaultPlan::new(seed.wrapping_add(1), percent, stall_d),
        &spec,
        &tmp.path().join("state2"),
        &["restore", "--to", &to],
    );
    let got = hashes(&into);
    let lost = want.keys().filter(|k| got.get(*k) != want.get(*k)).count();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert_eq!(
        lost, 0,
        "seed {seed}: {lost} file(s) missing or different after restore"
    );
    assert!(
        extra.is_empty(),
        "seed {seed}: temp or stray files left: {extra:?}"
    );
    assert_eq!(hashes(&local), want, "seed {seed}: the pushed tree changed");
    assert!(
        push.faults.total() > 0 && restore.faults.total() > 0,
        "no fault injected"
    );

    let setup = Setup {
        server,
        seed,
        percent,
        stall,
    };
    let mut text = report(&setup, &push, &restore, lost);
    text.insert_str(
        0,
        &format!(
            "files: {} ({} multipart), {bytes} bytes\n\n",
            want.len(),
            large
        ),
    );
    let out = repo_root().join("target/fault-matrix");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join(format!("{server:?}.md").to_lowercase()), &text).unwrap();
    eprintln!("{text}");
}

s3_test! {
    #[test]
    fn pushed_and_restored_through_random_faults_every_sha256_equal(server) {
        matrix(server);
    }
}
