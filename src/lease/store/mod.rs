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
//!
//! This file holds the store and its S3 side; [`local`] the blocking
//! filesystem side, [`prefix`] the key form both share.

mod local;
mod prefix;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opendal::{ErrorKind, Operator};

use super::error::LeaseError;
use crate::remote::ServerError;
use crate::spec::{Location, RemoteSpec};
pub use prefix::Prefix;

/// Where lease objects of one remote live.
#[derive(Clone)]
pub enum Store {
    S3 {
        op: Operator,
        bucket: String,
        /// The remote, to diagnose failures against (endpoint, credentials).
        remote: Arc<RemoteSpec>,
    },
    /// A local directory tree. `cut`, set only by tests, makes every call
    /// fail like a network outage (a holder that cannot renew).
    Local { cut: Arc<AtomicBool> },
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
                    remote: Arc::new(remote.clone()),
                })
            }
            Location::Local { .. } => Ok(Store::local()),
            Location::Crypt { .. } => Err(crate::remote::RemoteError::CryptUnsupported {
                remote: remote.name.clone(),
            }
            .into()),
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

    /// The remote's name as the spec spells it (`local` for a local store).
    pub fn remote_name(&self) -> String {
        match self {
            Store::S3 { remote, .. } => remote.name.clone(),
            Store::Local { .. } => "local".into(),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Store::Local { .. })
    }

    fn s3_key(p: &Prefix) -> String {
        p.0.join("/")
    }

    /// A failed request: diagnosed ("cannot reach", "not an S3 server",
    /// credentials, bucket) when it is one of those, else as it came.
    fn remote_err(&self, op: &'static str, key: &Prefix, source: opendal::Error) -> LeaseError {
        if let Store::S3 { remote, .. } = self
            && let Some(d) = ServerError::diagnose(remote, &source)
        {
            return LeaseError::Server(Box::new(d));
        }
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
                                remote: self.remote_name(),
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
                    let path = local::path_of(key);
                    let res = blocking(move || local::read(&path)).await;
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
                                        remote: self.remote_name(),
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
                    let path = local::path_of(key);
                    let res =
                        blocking(move || local::conditional(&path, &body, expected.as_deref()))
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
                    let path = local::path_of(key);
                    blocking(move || local::put(&path, &body))
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
                    let path = local::path_of(key);
                    blocking(move || local::delete(&path, locked))
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
                    let path = local::path_of(dir);
                    blocking(move || local::list(&path))
                        .await
                        .map_err(|e| self.io_err("list", dir, e))
                }
            }
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_conditional_semantics() {
        let tmp = tempfile::tempdir().unwrap();
        let base = Prefix::of(&Location::Local {
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
