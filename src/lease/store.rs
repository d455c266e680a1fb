//! The few storage primitives the lease protocol needs, over S3 and over a
//! local directory, with the same semantics:
//!
//! - `read`: the current bytes and their version (S3: the etag; local: a
//!   hash of the content, which changes on every write because every
//!   record carries a new `seq`);
//! - `create`: only if absent (S3 `If-None-Match: *`; local: under an
//!   `flock`ed sidecar, `link(2)` of a fully written temp file, which fails
//!   if the name exists);
//! - `replace`: only if the version is still the one read (S3 `If-Match`;
//!   local: under the sidecar flock, compare then `rename(2)`);
//! - plain `put`/`delete`/`list` for markers and the final delete of a
//!   released lease (R2 documents no conditional DELETE, so none is used).
//!
//! S3 goes through its own operator rooted at the bucket (never the sync
//! engine's limiters or queues, so renewals cannot starve behind transfers).
//! Every call is bounded by a timeout.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opendal::{ErrorKind, Operator};

use super::error::LeaseError;
use super::identity::random_hex;
use crate::spec::{Location, RemoteSpec};

/// Where lease objects of one remote live.
#[derive(Clone)]
pub enum Store {
    S3 {
        op: Operator,
        bucket: String,
    },
    /// A local directory tree. `cut`, set only by tests, makes every call
    /// fail like a network outage (a holder that cannot renew).
    Local {
        cut: Arc<AtomicBool>,
    },
}

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
}

/// A write that must not happen unless the precondition holds.
#[derive(Debug)]
pub enum CondError {
    /// Precondition failed (exists / changed / concurrent conditional write):
    /// lost the race, re-read.
    Lost,
    Failed(LeaseError),
}

impl From<LeaseError> for CondError {
    fn from(e: LeaseError) -> Self {
        CondError::Failed(e)
    }
}

impl Store {
    pub fn for_location(remote: &RemoteSpec, location: &Location) -> Result<Store, LeaseError> {
        match location {
            Location::S3 { bucket, .. } => {
                let root = Location::S3 {
                    bucket: bucket.clone(),
                    key_prefix: String::new(),
                };
                Ok(Store::S3 {
                    op: crate::remote::operator_at(remote, &root)?,
                    bucket: bucket.clone(),
                })
            }
            Location::Local { .. } => Ok(Store::local()),
            Location::Crypt { .. } => Err(crate::remote::RemoteError::CryptUnsupported {
                remote: remote.name.clone(),
            }
            .into()),
        }
    }

    /// The prefix a target location leases.
    pub fn prefix_of(location: &Location) -> Prefix {
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

    /// Human form of a prefix, e.g. `s3://bucket/a/b` or `local:/a/b`.
    pub fn display(&self, p: &Prefix) -> String {
        match self {
            Store::S3 { bucket, .. } => format!("s3://{bucket}/{}", p.0.join("/")),
            Store::Local { .. } => format!("local:/{}", p.0.join("/")),
        }
    }

    /// A local directory store.
    pub fn local() -> Store {
        Store::Local {
            cut: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Tests: cut this store off (every call fails) or reconnect it.
    #[cfg(test)]
    pub fn set_cut(&self, cut: bool) {
        if let Store::Local { cut: c } = self {
            c.store(cut, Ordering::SeqCst);
        }
    }

    /// `Err` while a local store is cut off.
    fn reachable(
        cut: &AtomicBool,
        store: &Store,
        op: &'static str,
        key: &Prefix,
    ) -> Result<(), LeaseError> {
        if cut.load(Ordering::SeqCst) {
            return Err(store.io_err(
                op,
                key,
                std::io::Error::new(std::io::ErrorKind::NotConnected, "cut off (test)"),
            ));
        }
        Ok(())
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Store::Local { .. })
    }

    fn s3_key(p: &Prefix) -> String {
        p.0.join("/")
    }

    fn path(p: &Prefix) -> PathBuf {
        let mut b = PathBuf::from("/");
        for s in &p.0 {
            b.push(s);
        }
        b
    }

    fn remote_err(&self, op: &'static str, key: &Prefix, source: opendal::Error) -> LeaseError {
        LeaseError::Remote {
            op,
            location: self.display(key),
            source: Box::new(source),
        }
    }

    fn io_err(&self, op: &'static str, key: &Prefix, source: std::io::Error) -> LeaseError {
        LeaseError::LocalIo {
            op,
            location: self.display(key),
            source,
        }
    }

    /// Current content and version of `key`, `None` if absent.
    pub async fn read(
        &self,
        key: &Prefix,
        timeout: Duration,
    ) -> Result<Option<(String, Vec<u8>)>, LeaseError> {
        bounded(self, "read", key, timeout, async {
            match self {
                Store::S3 { op, .. } => {
                    let k = Self::s3_key(key);
                    // HEAD for the etag, then GET pinned to it: content and
                    // version always belong together.
                    for _ in 0..5 {
                        let meta = match op.stat(&k).await {
                            Ok(m) => m,
                            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                            Err(e) => return Err(self.remote_err("read", key, e)),
                        };
                        let Some(etag) = meta.etag().map(str::to_string) else {
                            return Err(LeaseError::NoConditionalWrites {
                                remote: "s3".into(),
                                location: self.display(key),
                                detail: "the server returns no ETag".into(),
                            });
                        };
                        match op.read_with(&k).if_match(&etag).await {
                            Ok(buf) => return Ok(Some((etag, buf.to_vec()))),
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::ConditionNotMatch | ErrorKind::NotFound
                                ) =>
                            {
                                continue;
                            }
                            Err(e) => return Err(self.remote_err("read", key, e)),
                        }
                    }
                    Err(LeaseError::Contended {
                        location: self.display(key),
                    })
                }
                Store::Local { cut } => {
                    Self::reachable(cut, self, "read", key)?;
                    let path = Self::path(key);
                    let res = blocking(move || match fs::read(&path) {
                        Ok(b) => Ok(Some((local_version(&b), b))),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    })
                    .await;
                    res.map_err(|e| self.io_err("read", key, e))
                }
            }
        })
        .await
    }

    /// Write `body` at `key` only if nothing is there. Returns the version.
    pub async fn create(
        &self,
        key: &Prefix,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<String, CondError> {
        self.conditional("create", key, body, None, timeout).await
    }

    /// Replace `key` only if its version is still `expected`.
    pub async fn replace(
        &self,
        key: &Prefix,
        expected: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<String, CondError> {
        self.conditional("replace", key, body, Some(expected.to_string()), timeout)
            .await
    }

    async fn conditional(
        &self,
        opname: &'static str,
        key: &Prefix,
        body: Vec<u8>,
        expected: Option<String>,
        timeout: Duration,
    ) -> Result<String, CondError> {
        let fut = async {
            match self {
                Store::S3 { op, .. } => {
                    let k = Self::s3_key(key);
                    let w = op.write_with(&k, body);
                    let w = match &expected {
                        Some(etag) => w.if_match(etag),
                        None => w.if_not_exists(true),
                    };
                    match w.await {
                        Ok(meta) => match meta.etag() {
                            Some(e) => Ok(e.to_string()),
                            // Without the new etag we cannot renew; read it.
                            None => match op.stat(&k).await {
                                Ok(m) => m.etag().map(str::to_string).ok_or_else(|| {
                                    CondError::Failed(LeaseError::NoConditionalWrites {
                                        remote: "s3".into(),
                                        location: self.display(key),
                                        detail: "the server returns no ETag".into(),
                                    })
                                }),
                                Err(e) => Err(self.remote_err(opname, key, e).into()),
                            },
                        },
                        // 412 (condition), 409 ConditionalRequestConflict
                        // (concurrent conditional write), 404 on If-Match of
                        // a deleted object: all mean "re-read".
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::ConditionNotMatch
                                    | ErrorKind::Conflict
                                    | ErrorKind::NotFound
                            ) =>
                        {
                            Err(CondError::Lost)
                        }
                        Err(e) => Err(self.remote_err(opname, key, e).into()),
                    }
                }
                Store::Local { cut } => {
                    Self::reachable(cut, self, opname, key)?;
                    let path = Self::path(key);
                    let res =
                        blocking(move || local_conditional(&path, &body, expected.as_deref()))
                            .await;
                    match res {
                        Ok(Some(v)) => Ok(v),
                        Ok(None) => Err(CondError::Lost),
                        Err(e) => Err(self.io_err(opname, key, e).into()),
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CondError::Failed(LeaseError::Timeout {
                op: opname,
                location: self.display(key),
                after: timeout,
            })),
        }
    }

    /// Unconditional write (markers, probes).
    pub async fn put(
        &self,
        key: &Prefix,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), LeaseError> {
        bounded(self, "write", key, timeout, async {
            match self {
                Store::S3 { op, .. } => op
                    .write(&Self::s3_key(key), body)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.remote_err("write", key, e)),
                Store::Local { cut } => {
                    Self::reachable(cut, self, "write", key)?;
                    let path = Self::path(key);
                    blocking(move || {
                        ensure_parent(&path)?;
                        write_atomic(&path, &body)
                    })
                    .await
                    .map_err(|e| self.io_err("write", key, e))
                }
            }
        })
        .await
    }

    /// Unconditional delete; absent is fine.
    pub async fn delete(&self, key: &Prefix, timeout: Duration) -> Result<(), LeaseError> {
        self.delete_inner(key, timeout, false).await
    }

    /// Unconditional delete of a lease object (locally under its sidecar
    /// lock, so it never interleaves with a compare-and-rename).
    pub async fn delete_lease(&self, key: &Prefix, timeout: Duration) -> Result<(), LeaseError> {
        self.delete_inner(key, timeout, true).await
    }

    async fn delete_inner(
        &self,
        key: &Prefix,
        timeout: Duration,
        locked: bool,
    ) -> Result<(), LeaseError> {
        bounded(self, "delete", key, timeout, async {
            match self {
                Store::S3 { op, .. } => match op.delete(&Self::s3_key(key)).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(self.remote_err("delete", key, e)),
                },
                Store::Local { cut } => {
                    Self::reachable(cut, self, "delete", key)?;
                    let path = Self::path(key);
                    blocking(move || {
                        let _lock = if locked {
                            Some(SidecarLock::take(&path)?)
                        } else {
                            None
                        };
                        match fs::remove_file(&path) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                            _ => Ok(()),
                        }
                    })
                    .await
                    .map_err(|e| self.io_err("delete", key, e))
                }
            }
        })
        .await
    }

    /// Names of the objects directly inside `dir` (one LIST).
    pub async fn list(&self, dir: &Prefix, timeout: Duration) -> Result<Vec<String>, LeaseError> {
        bounded(self, "list", dir, timeout, async {
            match self {
                Store::S3 { op, .. } => {
                    let k = format!("{}/", Self::s3_key(dir));
                    match op.list(&k).await {
                        Ok(entries) => Ok(entries
                            .into_iter()
                            .filter(|e| e.metadata().is_file())
                            .map(|e| e.name().to_string())
                            .collect()),
                        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
                        Err(e) => Err(self.remote_err("list", dir, e)),
                    }
                }
                Store::Local { cut } => {
                    Self::reachable(cut, self, "list", dir)?;
                    let path = Self::path(dir);
                    blocking(move || {
                        let rd = match fs::read_dir(&path) {
                            Ok(rd) => rd,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                return Ok(Vec::new());
                            }
                            Err(e) => return Err(e),
                        };
                        let mut names = Vec::new();
                        for entry in rd {
                            let entry = entry?;
                            if entry.file_type()?.is_file() {
                                let name = entry.file_name().to_string_lossy().into_owned();
                                if name.ends_with(".json") {
                                    names.push(name);
                                }
                            }
                        }
                        Ok(names)
                    })
                    .await
                    .map_err(|e| self.io_err("list", dir, e))
                }
            }
        })
        .await
    }

    /// Check that the server enforces conditional writes, with a probe object
    /// under `<prefix>/.coltec/`. Some S3-compatible servers silently accept
    /// `If-None-Match: *` on an existing key or ignore `If-Match`.
    pub async fn probe(
        &self,
        remote: &str,
        prefix: &Prefix,
        timeout: Duration,
    ) -> Result<(), LeaseError> {
        if self.is_local() {
            return Ok(());
        }
        let key = prefix.child(&[".coltec", &format!("probe-{}", random_hex())]);
        let refuse = |detail: String| LeaseError::NoConditionalWrites {
            remote: remote.to_string(),
            location: self.display(prefix),
            detail,
        };
        let result = async {
            let etag = match self.create(&key, b"probe 1".to_vec(), timeout).await {
                Ok(e) => e,
                Err(CondError::Lost) => {
                    return Err(refuse(
                        "a create-if-absent of a new key was refused".into(),
                    ));
                }
                Err(CondError::Failed(e)) => return Err(classify_probe_failure(e, &refuse)),
            };
            match self.create(&key, b"probe 2".to_vec(), timeout).await {
                Ok(_) => {
                    return Err(refuse(
                        "a write with `If-None-Match: *` replaced an existing object".into(),
                    ));
                }
                Err(CondError::Lost) => {}
                Err(CondError::Failed(e)) => return Err(classify_probe_failure(e, &refuse)),
            }
            let wrong = format!("\"{}\"", random_hex());
            match self.replace(&key, &wrong, b"probe 3".to_vec(), timeout).await {
                Ok(_) => {
                    return Err(refuse(
                        "a write with `If-Match` of a wrong ETag succeeded".into(),
                    ));
                }
                Err(CondError::Lost) => {}
                Err(CondError::Failed(e)) => return Err(classify_probe_failure(e, &refuse)),
            }
            match self.replace(&key, &etag, b"probe 4".to_vec(), timeout).await {
                Ok(_) => Ok(()),
                Err(CondError::Lost) => Err(refuse(
                    "a write with `If-Match` of the current ETag was refused (quoted ETags mishandled?)"
                        .into(),
                )),
                Err(CondError::Failed(e)) => Err(classify_probe_failure(e, &refuse)),
            }
        }
        .await;
        if let Err(e) = self.delete(&key, timeout).await {
            tracing::warn!(error = %e, "cannot delete the conditional-write probe object");
        }
        result
    }
}

/// A probe failure that is not a network problem means the server does not
/// implement the condition (e.g. 501 NotImplemented, 400 on the header).
fn classify_probe_failure(e: LeaseError, refuse: &dyn Fn(String) -> LeaseError) -> LeaseError {
    match &e {
        LeaseError::Remote { source, .. }
            if !source.is_temporary()
                && matches!(
                    source.kind(),
                    ErrorKind::Unsupported | ErrorKind::Unexpected
                ) =>
        {
            refuse(format!("the server rejected a conditional write: {source}"))
        }
        _ => e,
    }
}

async fn bounded<T>(
    store: &Store,
    op: &'static str,
    key: &Prefix,
    timeout: Duration,
    fut: impl Future<Output = Result<T, LeaseError>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(LeaseError::Timeout {
            op,
            location: store.display(key),
            after: timeout,
        }),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// FNV-1a 64 of the content: stable across processes and versions.
fn local_version(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", bytes.len())
}

/// The exclusive lock on `<file>.lock` next to a lease file.
struct SidecarLock(#[allow(dead_code)] fs::File);

impl SidecarLock {
    fn take(path: &Path) -> std::io::Result<SidecarLock> {
        ensure_parent(path)?;
        let mut name = path.as_os_str().to_os_string();
        name.push(".lock");
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(PathBuf::from(name))?;
        // Held for a few syscalls only. Poll rather than block, so a holder
        // that is stopped mid-operation cannot pin a blocking thread forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(SidecarLock(f)),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the lease lock file stays locked by another process",
                    ));
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

fn ensure_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) => fs::create_dir_all(p),
        None => Ok(()),
    }
}

/// Lease objects on a local remote are world-readable like other synced
/// files (0644): `lease show` from another user names the holder.
const LOCAL_LEASE_MODE: u32 = 0o644;

fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_atomic_mode(path, body, LOCAL_LEASE_MODE)
}

/// Local create-if-absent (`expected == None`) or compare-and-replace.
/// `Ok(None)` = precondition failed.
fn local_conditional(
    path: &Path,
    body: &[u8],
    expected: Option<&str>,
) -> std::io::Result<Option<String>> {
    let _lock = SidecarLock::take(path)?;
    let tmp = crate::fsutil::write_temp(path, body, LOCAL_LEASE_MODE)?;
    let result = (|| {
        match expected {
            None => match fs::hard_link(&tmp, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                Err(e) => return Err(e),
            },
            Some(expected) => {
                let mut current = Vec::new();
                match fs::File::open(path) {
                    Ok(mut f) => {
                        f.read_to_end(&mut current)?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                }
                if local_version(&current) != expected {
                    return Ok(None);
                }
                fs::rename(&tmp, path)?;
            }
        }
        crate::fsutil::sync_parent(path);
        Ok(Some(local_version(body)))
    })();
    // After a link the temp name is a second name; after a rename it is gone.
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
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
        let local = Store::prefix_of(&Location::Local {
            dir: PathBuf::from("/x/./y/../z"),
        });
        assert_eq!(local, Prefix(vec!["x".into(), "z".into()]));
    }

    #[tokio::test]
    async fn local_conditional_semantics() {
        let tmp = tempfile::tempdir().unwrap();
        let base = Store::prefix_of(&Location::Local {
            dir: tmp.path().to_path_buf(),
        });
        let key = base.child(&[".coltec", "lease.json"]);
        let s = Store::local();
        let t = Duration::from_secs(5);
        let v1 = s.create(&key, b"one".to_vec(), t).await.unwrap();
        assert!(matches!(
            s.create(&key, b"two".to_vec(), t).await,
            Err(CondError::Lost)
        ));
        let (v, body) = s.read(&key, t).await.unwrap().unwrap();
        assert_eq!((v.as_str(), body.as_slice()), (v1.as_str(), &b"one"[..]));
        assert!(matches!(
            s.replace(&key, "\"nope\"", b"x".to_vec(), t).await,
            Err(CondError::Lost)
        ));
        let v2 = s.replace(&key, &v1, b"three".to_vec(), t).await.unwrap();
        assert_ne!(v1, v2);
        assert!(matches!(
            s.replace(&key, &v1, b"four".to_vec(), t).await,
            Err(CondError::Lost)
        ));
        s.delete_lease(&key, t).await.unwrap();
        assert!(s.read(&key, t).await.unwrap().is_none());
        assert!(matches!(
            s.replace(&key, &v2, b"five".to_vec(), t).await,
            Err(CondError::Lost)
        ));
    }
}
