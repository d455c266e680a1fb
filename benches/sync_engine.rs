//! Criterion benches for the sync engine's local hot paths on a generated
//! tree: the walk (`sync::scan::walk`), the 3-way planner (`sync::plan::plan`)
//! and whole idle passes (`Engine::pass`) against a local-directory remote.
//!
//! Tree size: under `cargo bench` (criterion gets `--bench`) the tree has
//! 100k files; under `cargo test --all-targets` (test mode: every bench runs
//! once) it has 2k files so the suite stays fast. `COLTEC_BENCH_FILES=N`
//! overrides both. The tree is generated once per process into a tempdir,
//! lazily, so `--list` and filtered runs only pay for what they use.
//!
//! The engine benches need a first sync of the whole tree to the local
//! remote (every file copied once); that setup runs once, untimed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use coltecd::remote::WriteGate;
use coltecd::spec::{Direction, Excludes, Spec};
use coltecd::state_dir::StateDir;
use coltecd::sync::layout::RemoteEntry;
use coltecd::sync::plan::plan;
use coltecd::sync::scan::{LocalEntry, walk};
use coltecd::sync::state::{BaseEntry, StateDb};
use coltecd::sync::{Engine, PassRequest, PassScope};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;

const EXCLUDES: [&str; 3] = ["node_modules/**", "target/**", ".git/**"];

/// Whether criterion runs real measurements (`cargo bench`), not test mode.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn tree_files() -> usize {
    if let Some(n) = std::env::var("COLTEC_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if measuring() { 100_000 } else { 2_000 }
}

fn excludes() -> Excludes {
    Excludes::new(EXCLUDES.iter().map(|s| s.to_string()).collect()).unwrap()
}

/// The generated tree, shared by every bench of the process.
struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    files: usize,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let files = tree_files();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let t0 = Instant::now();
        generate(&root, files);
        eprintln!(
            "bench tree: {files} files (+ excluded dirs) generated in {:.1?} at {}",
            t0.elapsed(),
            root.display()
        );
        Tree {
            _tmp: tmp,
            root,
            files,
        }
    })
}

/// `files` small files (0..1 KiB, contents don't matter to scan/plan) in a
/// 3-level tree of ~100 files per directory, plus 3 excluded directories of
/// 1000 files each that a correct walk never reads.
fn generate(root: &Path, files: usize) {
    let per_dir = 100;
    let mut buf = Vec::with_capacity(1024);
    for i in 0..files {
        let d = i / per_dir;
        let dir = root.join(format!(
            "a{:02}/b{:02}/c{:03}",
            d % 10,
            (d / 10) % 10,
            d / 100
        ));
        if i % per_dir == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        buf.clear();
        buf.resize(i * 7919 % 1024, b'x');
        fs::write(dir.join(format!("f{i:06}.txt")), &buf).unwrap();
    }
    for ex in ["node_modules/pkg", "target/debug", ".git/objects"] {
        let dir = root.join(ex);
        fs::create_dir_all(&dir).unwrap();
        for i in 0..1000 {
            fs::write(dir.join(format!("x{i}")), b"x").unwrap();
        }
    }
}

fn bench_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let ex = excludes();
    g.bench_function("walk", |b| {
        let t = tree();
        b.iter(|| {
            let s = walk(black_box(&t.root), "", &ex);
            assert_eq!(s.entries.len(), t.files);
            s
        })
    });
    g.finish();
}

/// local, base and remote views where every path is in sync.
struct Views {
    paths: BTreeSet<String>,
    local: BTreeMap<String, LocalEntry>,
    base: BTreeMap<String, BaseEntry>,
    remote: BTreeMap<String, RemoteEntry>,
}

fn views() -> &'static Views {
    static VIEWS: OnceLock<Views> = OnceLock::new();
    VIEWS.get_or_init(|| {
        let local = walk(&tree().root, "", &excludes()).entries;
        let base: BTreeMap<String, BaseEntry> = local
            .iter()
            .map(|(k, l)| {
                let rid = format!("\"{:032x}\"", l.size ^ l.mtime_ns as u64);
                (k.clone(), BaseEntry::from_local(l, rid))
            })
            .collect();
        let remote = base
            .iter()
            .map(|(k, b)| (k.clone(), RemoteEntry::from_base(b)))
            .collect();
        Views {
            paths: local.keys().cloned().collect(),
            local,
            base,
            remote,
        }
    })
}

fn bench_plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // Every path unchanged on both sides: what a full reconcile of an idle
    // tree plans.
    g.bench_function("noop_bidirectional", |b| {
        let v = views();
        b.iter(|| {
            let a = plan(
                Direction::Bidirectional,
                &v.paths,
                &v.local,
                &v.base,
                &v.remote,
            );
            assert!(a.is_empty());
            a
        })
    });
    // One file changed locally (its mtime moved).
    g.bench_function("one_changed_push", |b| {
        let v = views();
        let mut local = v.local.clone();
        let first = v.paths.iter().next().unwrap().clone();
        local.get_mut(&first).unwrap().mtime_ns += 1_000_000_000;
        b.iter(|| {
            let a = plan(Direction::PushOnly, &v.paths, &local, &v.base, &v.remote);
            assert_eq!(a.len(), 1);
            a
        })
    });
    // First sync: no base, empty remote: everything is an upload.
    g.bench_function("initial_push", |b| {
        let v = views();
        let empty_b = BTreeMap::new();
        let empty_r = BTreeMap::new();
        b.iter(|| {
            let a = plan(Direction::PushOnly, &v.paths, &v.local, &empty_b, &empty_r);
            assert_eq!(a.len(), v.paths.len());
            a
        })
    });
    g.finish();
}

/// An engine whose only target is the generated tree, already synced once
/// (push-only) to a local-directory remote.
struct Synced {
    tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    engine: Engine,
}

fn synced() -> &'static Synced {
    static SYNCED: OnceLock<Synced> = OnceLock::new();
    SYNCED.get_or_init(|| {
        let t = tree();
        let tmp = tempfile::tempdir().unwrap();
        let yaml = format!(
            r#"name: bench
metadata: {{org: bench, project: engine, environment: dev}}
persistence:
  enabled: true
  mode: replicated
  default_remote: disk
  remotes:
    disk:
      type: local
      path_prefix: {remote}
  sync:
    - name: tree
      path: {root}
      remote_path: "{{org}}/{{project}}/{{env}}/tree"
      direction: push-only
      interval: 60
      exclude: ["node_modules/**", "target/**", ".git/**"]
  lease: off
  daemon:
    log_dir: {logs}
    # The default 100 requests/s would make the untimed setup (one write
    # per file) take minutes; the timed passes make no remote request.
    max_requests_per_second: 1000000
"#,
            remote = tmp.path().join("remote").display(),
            root = t.root.display(),
            logs = tmp.path().join("logs").display(),
        );
        let spec_path = tmp.path().join("spec.yaml");
        let spec: Spec = coltecd::spec::load_str(&yaml, &spec_path, &|k: &str| {
            (k == "HOME").then(|| "/root".to_string())
        })
        .unwrap_or_else(|e| panic!("bench spec: {e}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine = Engine::open(
            Arc::new(spec),
            &StateDir::at(tmp.path().join("state")),
            WriteGate::always_open(),
        )
        .unwrap();
        let t0 = Instant::now();
        let r = rt
            .block_on(engine.pass("tree", full(), &CancellationToken::new()))
            .unwrap();
        assert_eq!(r.uploaded as usize, t.files, "{:?}", r.failed);
        eprintln!(
            "bench engine: initial push of {} files to a local remote in {:.1?}",
            t.files,
            t0.elapsed()
        );
        Synced { tmp, rt, engine }
    })
}

fn full() -> PassRequest {
    PassRequest {
        scope: PassScope::Full { verify: false },
        dry_run: false,
        allow_mass_delete: false,
    }
}

fn bench_engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let cancel = CancellationToken::new();
    // The daemon's interval safety net on an idle tree: walk + base + plan,
    // no remote request.
    g.bench_function("idle_full_pass", |b| {
        let s = synced();
        b.iter(|| {
            let r =
                s.rt.block_on(s.engine.pass("tree", full(), &cancel))
                    .unwrap();
            assert!(r.plan.is_empty() && !r.remote_listed, "{r:?}");
            r
        })
    });
    // A watch event for one unchanged file: what the daemon runs after a
    // debounced event.
    g.bench_function("idle_one_path_pass", |b| {
        let s = synced();
        let t = tree();
        let one = walk(&t.root, "", &excludes())
            .entries
            .keys()
            .next()
            .map(|rel| t.root.join(rel))
            .unwrap();
        b.iter(|| {
            let req = PassRequest {
                scope: PassScope::Paths(vec![one.clone()]),
                dry_run: false,
                allow_mass_delete: false,
            };
            let r = s.rt.block_on(s.engine.pass("tree", req, &cancel)).unwrap();
            assert!(r.plan.is_empty() && !r.remote_listed, "{r:?}");
            r
        })
    });
    // What every pass does first: read the target's whole base from redb
    // (on a copy of the synced engine's database; redb allows one opener).
    g.bench_function("load_base", |b| {
        let s = synced();
        let copy = s.tmp.path().join("copy.redb");
        fs::copy(s.tmp.path().join("state/sync.redb"), &copy).unwrap();
        let db = StateDb::open(&copy).unwrap();
        b.iter(|| {
            let base = db.load("tree").unwrap();
            assert_eq!(base.len(), tree().files);
            base
        })
    });
    g.finish();
}

criterion_group!(benches, bench_scan, bench_plan, bench_engine);
criterion_main!(benches);
