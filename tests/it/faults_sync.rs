//! Faults the sync engine must survive without losing or resurrecting
//! data (issue 14): an emptied or replaced root restores instead of
//! deleting, failed downloads stay pending until they succeed, `kill -9`
//! right after uploads resurrects nothing, a write based on a stale view
//! becomes a conflict (412), and a file written continuously is uploaded
//! from consistent copies with no trash copy for failed attempts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coltecd::remote::{WriteGate, operator_at};
use coltecd::spec::{
    BwLimit, DaemonSettings, Direction, Excludes, LeaseSettings, LocalRemote, Location, RemoteKind,
    RemoteSpec, SafetySettings, Spec, Target, WatchMode, Workspace,
};
use coltecd::state_dir::StateDir;
use coltecd::sync::{Engine, EngineOptions, PassReport, PassRequest, PassScope, SyncError};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::s3::S3Server;

mod conditional;
mod crash;
mod disk_full;
mod gate;
mod hot;
mod pending;
mod root;

const REMOTE_PATH: &str = "org/proj/env";

/// Where a test's target lives.
#[derive(Clone)]
pub(crate) struct Remote {
    spec: RemoteSpec,
    bucket: Option<String>,
    dir: Option<PathBuf>,
}

impl Remote {
    fn s3_at(server: S3Server, tag: &str, endpoint: &str) -> Remote {
        let bucket = server.bucket(tag);
        Remote {
            spec: server.remote_at(&bucket, endpoint),
            bucket: Some(bucket),
            dir: None,
        }
    }

    fn s3(server: S3Server, tag: &str) -> Remote {
        Remote::s3_at(server, tag, server.endpoint())
    }

    fn local(tmp: &Path) -> Remote {
        let root = tmp.join("remote");
        Remote {
            spec: RemoteSpec {
                name: "disk".into(),
                kind: RemoteKind::Local(LocalRemote { root: root.clone() }),
            },
            bucket: None,
            dir: Some(root),
        }
    }

    fn operator(&self) -> opendal::Operator {
        let loc = match &self.bucket {
            Some(b) => Location::S3 {
                bucket: b.clone(),
                key_prefix: REMOTE_PATH.into(),
            },
            None => Location::Local {
                dir: self.dir.as_ref().unwrap().join(REMOTE_PATH),
            },
        };
        operator_at(&self.spec, &loc).unwrap()
    }

    /// Every object under the target, relative to it.
    async fn keys(&self) -> BTreeSet<String> {
        let listed = self
            .operator()
            .list_with("")
            .recursive(true)
            .await
            .unwrap_or_default();
        listed
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.path().to_string())
            .collect()
    }

    async fn user_keys(&self) -> BTreeSet<String> {
        let mut k = self.keys().await;
        k.retain(|k| !k.starts_with(".coltec/"));
        k
    }

    async fn trash_copies_of(&self, name: &str) -> usize {
        let suffix = format!("/{name}");
        self.keys()
            .await
            .iter()
            .filter(|k| k.starts_with(".coltec/trash/") && k.ends_with(&suffix))
            .count()
    }

    async fn read(&self, key: &str) -> Vec<u8> {
        self.operator().read(key).await.unwrap().to_vec()
    }

    async fn put(&self, key: &str, body: &[u8]) {
        self.operator().write(key, body.to_vec()).await.unwrap();
    }
}

/// One "container": its root, state dir and engine.
pub(crate) struct Side {
    _tmp: TempDir,
    root: PathBuf,
    state: PathBuf,
    spec: Arc<Spec>,
    engine: Engine,
}

pub(crate) struct Opts {
    direction: Direction,
    /// The lease's probe is what tells the engine the server enforces
    /// conditional writes.
    lease: bool,
    bwlimit_up: Option<u64>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            direction: Direction::Bidirectional,
            lease: true,
            bwlimit_up: None,
        }
    }
}

fn make_spec(root: &Path, log_dir: &Path, remote: &Remote, o: &Opts) -> Spec {
    let target = Target {
        name: "state".into(),
        local_path: root.to_path_buf(),
        remote_name: remote.spec.name.clone(),
        remote: remote.spec.clone(),
        remote_path: REMOTE_PATH.into(),
        direction: o.direction,
        interval: Duration::from_secs(60),
        priority: 0,
        excludes: Excludes::new(Vec::new()).unwrap(),
        transfers: 4,
        checkers: 8,
        bwlimit: BwLimit {
            up: o.bwlimit_up.and_then(std::num::NonZeroU64::new),
            down: None,
        },
    };
    Spec {
        path: log_dir.join("workspace-spec.yaml"),
        name: "test".into(),
        workspace: Workspace {
            org: "org".into(),
            project: "proj".into(),
            env: "env".into(),
        },
        enabled: true,
        remotes: BTreeMap::from([(remote.spec.name.clone(), remote.spec.clone())]),
        targets: vec![target],
        lease: LeaseSettings {
            enabled: o.lease,
            ttl: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
        },
        safety: SafetySettings {
            mass_delete_max_files: 50,
            mass_delete_max_fraction: 0.25,
            trash_retention: Duration::from_secs(7 * 86400),
        },
        daemon: DaemonSettings {
            state_dir: None,
            log_dir: log_dir.to_path_buf(),
            debounce: Duration::from_secs(2),
            flush_deadline: Duration::from_secs(8),
            watch: WatchMode::Poll,
            max_requests_per_second: 1000,
        },
        warnings: Vec::new(),
    }
}

fn side(remote: &Remote, o: &Opts) -> Side {
    side_with_gate(remote, o, WriteGate::always_open())
}

/// A side whose writes pass `gate` (closed by the test: "fenced").
fn side_with_gate(remote: &Remote, o: &Opts, gate: WriteGate) -> Side {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let state = tmp.path().join("state");
    let spec = Arc::new(make_spec(&root, tmp.path(), remote, o));
    let engine = Engine::open(spec.clone(), &StateDir::at(&state), gate).unwrap();
    Side {
        _tmp: tmp,
        root,
        state,
        spec,
        engine,
    }
}

impl Side {
    /// A new process on the same state dir, as `coltecd sync` opens it.
    fn reopen(self) -> Side {
        let Side {
            _tmp,
            root,
            state,
            spec,
            engine,
        } = self;
        drop(engine);
        let options = EngineOptions {
            trust_manifest_on_open: true,
            ..EngineOptions::default()
        };
        let engine = Engine::open_with(
            spec.clone(),
            &StateDir::at(&state),
            WriteGate::always_open(),
            options,
        )
        .unwrap();
        Side {
            _tmp,
            root,
            state,
            spec,
            engine,
        }
    }

    async fn run(&self, scope: PassScope, allow: bool) -> Result<PassReport, SyncError> {
        let req = PassRequest {
            scope,
            dry_run: false,
            allow_mass_delete: allow,
        };
        self.engine
            .pass("state", req, &CancellationToken::new())
            .await
    }

    /// A full pass that must not fail a file.
    async fn pass(&self) -> PassReport {
        let r = self
            .run(PassScope::Full { verify: false }, false)
            .await
            .unwrap();
        assert!(r.failed.is_empty(), "failed files: {:?}", r.failed);
        r
    }

    fn write(&self, rel: &str, body: &[u8]) {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
    }

    /// Relative paths of the files under the root (`.coltec` excluded).
    fn files(&self) -> BTreeSet<String> {
        fn go(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd {
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
                    out.insert(r);
                }
            }
        }
        let mut out = BTreeSet::new();
        go(&self.root, "", &mut out);
        out
    }
}

fn names(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("d/f{i}.txt")).collect()
}
