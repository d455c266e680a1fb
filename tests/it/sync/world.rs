//! The test world of the sync tests: a remote (S3 on either server, or a
//! local directory) shared by several "containers", each a local root, a
//! state dir and an engine, plus tree helpers.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

pub(crate) const REMOTE_PATH: &str = "org/proj/env";

/// A remote location shared by the "containers" of one test.
#[derive(Clone)]
pub(crate) struct Remote {
    pub(crate) spec: RemoteSpec,
    /// S3: the server and bucket; local: the root dir.
    pub(crate) s3: Option<(S3Server, String)>,
    pub(crate) dir: Option<PathBuf>,
}

impl Remote {
    pub(crate) fn s3(server: S3Server, tag: &str) -> Remote {
        Remote::s3_at(server, tag, server.endpoint())
    }

    /// An S3 remote reached through `endpoint` (e.g. a proxy).
    pub(crate) fn s3_at(server: S3Server, tag: &str, endpoint: &str) -> Remote {
        let bucket = server.bucket(tag);
        Remote {
            spec: server.remote_at(&bucket, endpoint),
            s3: Some((server, bucket)),
            dir: None,
        }
    }

    pub(crate) fn local(tmp: &Path) -> Remote {
        let root = tmp.join("remote");
        Remote {
            spec: RemoteSpec {
                name: "disk".into(),
                kind: RemoteKind::Local(LocalRemote { root: root.clone() }),
            },
            s3: None,
            dir: Some(root),
        }
    }

    pub(crate) fn is_s3(&self) -> bool {
        self.s3.is_some()
    }

    /// The bucket of an S3 remote.
    pub(crate) fn bucket(&self) -> &str {
        &self.s3.as_ref().expect("an S3 remote").1
    }

    /// Object keys under the target, relative to it, sorted.
    pub(crate) fn keys(&self) -> Vec<String> {
        if let Some((server, b)) = &self.s3 {
            let prefix = format!("{REMOTE_PATH}/");
            server
                .list_keys(b, &prefix)
                .into_iter()
                .map(|k| k[prefix.len()..].to_string())
                .collect()
        } else {
            let root = self.dir.as_ref().unwrap().join(REMOTE_PATH);
            let mut out = Vec::new();
            walk_files(&root, "", &mut out);
            out.sort();
            out
        }
    }

    pub(crate) fn user_keys(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|k| !k.starts_with(".coltec/"))
            .collect()
    }

    pub(crate) fn operator(&self) -> opendal::Operator {
        let loc = match &self.s3 {
            Some((_, b)) => Location::S3 {
                bucket: b.clone(),
                key_prefix: REMOTE_PATH.into(),
            },
            None => Location::Local {
                dir: self.dir.as_ref().unwrap().join(REMOTE_PATH),
            },
        };
        operator_at(&self.spec, &loc).unwrap()
    }

    pub(crate) async fn read(&self, key: &str) -> Vec<u8> {
        self.operator().read(key).await.unwrap().to_vec()
    }

    pub(crate) async fn put(&self, key: &str, body: &[u8]) {
        self.operator().write(key, body.to_vec()).await.unwrap();
    }
}

pub(crate) fn walk_files(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            walk_files(&e.path(), &r, out);
        } else {
            out.push(r);
        }
    }
}

/// One "container": a local dir, a state dir and an engine.
pub(crate) struct Side {
    pub(crate) _tmp: TempDir,
    pub(crate) root: PathBuf,
    pub(crate) engine: Engine,
    pub(crate) spec: Arc<Spec>,
    pub(crate) state: PathBuf,
}

pub(crate) struct Opts {
    pub(crate) direction: Direction,
    pub(crate) excludes: Vec<&'static str>,
    pub(crate) trash: Duration,
    pub(crate) bwlimit: BwLimit,
    pub(crate) max_files: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            direction: Direction::Bidirectional,
            excludes: Vec::new(),
            trash: Duration::from_secs(7 * 86400),
            bwlimit: BwLimit::default(),
            max_files: 50,
        }
    }
}

pub(crate) fn make_spec(root: &Path, log_dir: &Path, remote: &Remote, o: &Opts) -> Spec {
    let target = Target {
        name: "state".into(),
        local_path: root.to_path_buf(),
        remote_name: remote.spec.name.clone(),
        remote: remote.spec.clone(),
        remote_path: REMOTE_PATH.into(),
        direction: o.direction,
        interval: Duration::from_secs(60),
        priority: 0,
        excludes: Excludes::new(o.excludes.iter().map(|p| p.to_string()).collect()).unwrap(),
        transfers: 4,
        checkers: 8,
        bwlimit: o.bwlimit,
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
            enabled: false,
            ttl: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
        },
        safety: SafetySettings {
            mass_delete_max_files: o.max_files,
            mass_delete_max_fraction: 0.25,
            trash_retention: o.trash,
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

pub(crate) fn side(remote: &Remote, o: &Opts) -> Side {
    side_with_gate(remote, o, WriteGate::always_open())
}

pub(crate) fn side_with_gate(remote: &Remote, o: &Opts, gate: WriteGate) -> Side {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let spec = Arc::new(make_spec(&root, tmp.path(), remote, o));
    let engine = Engine::open(spec.clone(), &StateDir::at(tmp.path().join("state")), gate).unwrap();
    let state = tmp.path().join("state");
    Side {
        _tmp: tmp,
        root,
        engine,
        spec,
        state,
    }
}

impl Side {
    /// A new process on the same state dir (redb allows one opener, so the
    /// old engine goes first).
    pub(crate) fn reopen(self, options: EngineOptions) -> Side {
        let Side {
            _tmp,
            root,
            engine,
            spec,
            state,
        } = self;
        drop(engine);
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
            engine,
            spec,
            state,
        }
    }

    pub(crate) async fn try_pass(
        &self,
        scope: PassScope,
        allow: bool,
    ) -> Result<PassReport, SyncError> {
        self.engine
            .pass(
                "state",
                PassRequest {
                    scope,
                    dry_run: false,
                    allow_mass_delete: allow,
                },
                &CancellationToken::new(),
            )
            .await
    }

    pub(crate) async fn pass(&self, verify: bool) -> PassReport {
        let r = self
            .try_pass(PassScope::Full { verify }, false)
            .await
            .unwrap();
        assert!(r.failed.is_empty(), "failed files: {:?}", r.failed);
        r
    }

    /// `restore` of target "state" into `dest` (a new directory).
    pub(crate) async fn restore_to(&self, dest: &Path) -> PassReport {
        self.engine
            .restore("state", Some(dest), false, &CancellationToken::new())
            .await
            .unwrap()
    }

    pub(crate) fn write(&self, rel: &str, body: &[u8]) {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
    }

    pub(crate) fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.root.join(rel)).unwrap()
    }
}

pub(crate) fn set_mtime(path: &Path, ns: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_nanos(ns))
        .unwrap();
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: SystemTime,
    },
    Link(PathBuf),
}

pub(crate) fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    pub(crate) fn go(dir: &Path, rel: &str, out: &mut BTreeMap<String, Node>) {
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
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                go(&e.path(), &r, out);
            } else if md.file_type().is_symlink() {
                out.insert(r, Node::Link(fs::read_link(e.path()).unwrap()));
            } else {
                out.insert(
                    r,
                    Node::File {
                        data: fs::read(e.path()).unwrap(),
                        mode: md.permissions().mode() & 0o7777,
                        mtime: md.modified().unwrap(),
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, "", &mut out);
    out
}

pub(crate) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
