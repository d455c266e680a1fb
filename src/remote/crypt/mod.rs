//! Crypt remotes: an opendal layer that makes a target on an rclone crypt
//! remote look like a plain target to the sync engine.
//!
//! The ciphertext lives where rclone puts it: the crypt remote wraps
//! `<wrap_remote>` at `<bucket>/<path_prefix>/<wrap_path>`, and the target's
//! `remote_path` lives inside the crypt remote, so its segments are
//! encrypted too. The wrapped operator is rooted at that physical target
//! directory; this layer maps each plaintext key below it to its encrypted
//! name, encrypts content on write (streaming, 64 KiB blocks), decrypts on
//! read (ranges included), and reports plaintext sizes in stat and list.
//! Metadata (`mtime`, `mode`), ETags and server-side copies pass through:
//! they describe the ciphertext object, as with rclone.
//!
//! Control objects keep plaintext names under `.coltec/` (rclone skips
//! names that do not decrypt) and encrypted contents; trash copies keep
//! the object's encrypted name, wrapped in `~` so that rclone never takes
//! them for files even where `.coltec/` itself is visible to it. A name
//! that does not decrypt is listed as an entry of unknown mode marked
//! [`UNDECRYPTABLE`], its raw name below [`UNDECRYPTABLE_PREFIX`]: the
//! engine reports it (pass
//! report, `sync`/`restore` output, `status`) and never reads, trashes or
//! deletes it. Before the first operation, [`check`] makes
//! sure the password and salt fit the tree already there.

use std::sync::Arc;

use opendal::Operator;
use opendal::raw::*;
use opendal::{Capability, Error, ErrorKind, OperationContext, Result};

use crate::crypt::Cipher;

mod build;
mod check;
mod io;
mod paths;

pub use build::{operator, physical, stores_user_metadata};
pub use io::{UNDECRYPTABLE, UNDECRYPTABLE_PREFIX};

const CONTROL: &str = ".coltec";
const TRASH: &str = ".coltec/trash/";

/// What the layer shares between its operations.
pub(super) struct Shared {
    cipher: Cipher,
    remote: String,
    password_env: String,
    password2_env: Option<String>,
    /// The wrapped remote is a local directory (a missing one is empty).
    local: bool,
    /// Operator at the crypt remote's root, for the password check.
    probe: Operator,
    /// The target's `remote_path`, encrypted, segment by segment.
    phys_segments: Vec<String>,
    checked: tokio::sync::OnceCell<std::result::Result<(), String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// The layer; see the module docs.
#[derive(Debug, Clone)]
pub struct CryptLayer {
    shared: Arc<Shared>,
}

impl opendal::raw::Layer for CryptLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(CryptService {
            inner,
            shared: self.shared.clone(),
        })
    }
}

#[derive(Debug)]
pub struct CryptService {
    inner: Servicer,
    shared: Arc<Shared>,
}

impl Service for CryptService {
    type Reader = io::CryptReader;
    type Writer = io::CryptWriter;
    type Lister = io::CryptLister;
    type Deleter = io::CryptDeleter;
    type Copier = oio::Copier;
    type Composer = ();

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        let mut c = self.inner.capability();
        // Copying plaintext ranges into a writer cannot work on ciphertext.
        c.write_can_copy_from = false;
        c.write_can_append = false;
        c.read_with_suffix = false;
        c.compose = false;
        c.presign = false;
        c.rename = false;
        c
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.inner
            .create_dir(ctx, &self.shared.phys_of(path), args)
            .await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.shared.ready().await?;
        if path.starts_with(UNDECRYPTABLE_PREFIX) {
            // The listing's own entry, completed by opendal (see `io`).
            return Ok(RpStat::new(io::undecryptable_meta()));
        }
        let rp = self
            .inner
            .stat(ctx, &self.shared.phys_of(path), args)
            .await?;
        let meta = self.shared.map_meta(rp.into_metadata()).map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("'{path}' is not rclone crypt ciphertext: {e}"),
            )
        })?;
        Ok(RpStat::new(meta))
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let inner = self.inner.read(ctx, &self.shared.phys_of(path), args)?;
        Ok(io::CryptReader::new(inner, self.shared.clone()))
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        if args.append() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "crypt remotes cannot append",
            ));
        }
        let min_part = self.inner.capability().write_multi_min_size.unwrap_or(0);
        let inner = self.inner.write(ctx, &self.shared.phys_of(path), args)?;
        Ok(io::CryptWriter::new(inner, self.shared.clone(), min_part))
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        Ok(io::CryptDeleter::new(
            self.inner.delete(ctx)?,
            self.shared.clone(),
        ))
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        let inner = self.inner.list(ctx, &self.shared.phys_of(path), args);
        Ok(io::CryptLister::new(inner, self.shared.clone(), path))
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        if args.source_content_length_hint().is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "crypt remotes copy ciphertext: a plaintext length hint does not apply",
            ));
        }
        self.inner.copy(
            ctx,
            &self.shared.phys_of(from),
            &self.shared.phys_of(to),
            args,
        )
    }

    async fn rename(
        &self,
        _: &OperationContext,
        _: &str,
        _: &str,
        _: OpRename,
    ) -> Result<RpRename> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "crypt remotes do not rename",
        ))
    }

    async fn presign(&self, _: &OperationContext, _: &str, _: OpPresign) -> Result<RpPresign> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "crypt objects cannot be presigned",
        ))
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
