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
//! that does not decrypt is logged and left alone: the engine never sees
//! it, so never deletes it. Before the first operation, [`check`] makes
//! sure the password and salt fit the tree already there.

use std::sync::Arc;

use opendal::Operator;
use opendal::raw::*;
use opendal::{Capability, Error, ErrorKind, Metadata, OperationContext, Result};

use crate::crypt::{Cipher, NameMode, content};
use crate::spec::{CryptRemote, Location, RemoteKind, RemoteSpec};

mod check;
mod io;

use super::RemoteError;

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

/// Build the operator of a target on a crypt remote: `operator_at` for the
/// wrapped remote at the physical location, with the crypt layer on top.
pub fn operator(
    remote: &RemoteSpec,
    c: &CryptRemote,
    location: &Location,
) -> Result<Operator, RemoteError> {
    let Location::Crypt { key_prefix, .. } = location else {
        return Err(unusable(
            remote,
            "its location is not a crypt location".into(),
        ));
    };
    let wrapped = wrapped(remote, c)?;
    let cipher = cipher(remote, c)?;
    let rel = relative_path(c, key_prefix);
    let phys_segments: Vec<String> = if rel.is_empty() {
        Vec::new()
    } else {
        cipher
            .names()
            .encrypt_dir(&rel)
            .split('/')
            .map(str::to_string)
            .collect()
    };
    let root = root_location(&wrapped, c)?;
    let phys = join(&root, &phys_segments);
    let inner = super::operator_at(&wrapped, &phys)?;
    let probe = super::operator_at(&wrapped, &root)?;
    let shared = Arc::new(Shared {
        cipher,
        remote: remote.name.clone(),
        password_env: c.password_env.clone(),
        password2_env: c.password2_env.clone(),
        local: matches!(wrapped.kind, RemoteKind::Local(_)),
        probe,
        phys_segments,
        checked: tokio::sync::OnceCell::new(),
    });
    Ok(inner.layer(CryptLayer { shared }))
}

/// Where a crypt target's ciphertext physically lives, and on which remote
/// (for the lease, which writes its objects there directly).
pub fn physical(
    remote: &RemoteSpec,
    location: &Location,
) -> Result<(RemoteSpec, Location), RemoteError> {
    let (RemoteKind::Crypt(c), Location::Crypt { key_prefix, .. }) = (&remote.kind, location)
    else {
        return Ok((remote.clone(), location.clone()));
    };
    let wrapped = wrapped(remote, c)?;
    let cipher = cipher(remote, c)?;
    let rel = relative_path(c, key_prefix);
    let segs: Vec<String> = if rel.is_empty() {
        Vec::new()
    } else {
        cipher
            .names()
            .encrypt_dir(&rel)
            .split('/')
            .map(str::to_string)
            .collect()
    };
    let root = root_location(&wrapped, c)?;
    Ok((wrapped, join(&root, &segs)))
}

/// Whether objects of targets on `remote` carry S3 user metadata.
pub fn stores_user_metadata(remote: &RemoteSpec) -> bool {
    match &remote.kind {
        RemoteKind::S3(_) => true,
        RemoteKind::Local(_) => false,
        RemoteKind::Crypt(c) => c.wrapped.as_deref().is_some_and(stores_user_metadata),
    }
}

fn unusable(remote: &RemoteSpec, why: String) -> RemoteError {
    RemoteError::CryptUnusable {
        remote: remote.name.clone(),
        why,
    }
}

fn wrapped(remote: &RemoteSpec, c: &CryptRemote) -> Result<RemoteSpec, RemoteError> {
    match c.wrapped.as_deref() {
        Some(w) if matches!(w.kind, RemoteKind::Crypt(_)) => Err(unusable(
            remote,
            format!(
                "it wraps crypt remote '{}'; wrap an s3 or local remote instead",
                w.name
            ),
        )),
        Some(w) => Ok(w.clone()),
        None => Err(unusable(
            remote,
            format!("the remote it wraps, '{}', is not usable", c.wrap_remote),
        )),
    }
}

fn cipher(remote: &RemoteSpec, c: &CryptRemote) -> Result<Cipher, RemoteError> {
    let Some(password) = &c.password else {
        return Err(RemoteError::MissingPassword {
            remote: remote.name.clone(),
            var: c.password_env.clone(),
        });
    };
    let mode = match c.filename_encryption.as_str() {
        "standard" => NameMode::Standard,
        "obfuscate" => NameMode::Obfuscate,
        "off" => NameMode::Off,
        other => {
            return Err(unusable(
                remote,
                format!("unknown filename_encryption '{other}'"),
            ));
        }
    };
    let salt = match (&c.password2_env, &c.salt) {
        (Some(var), Some(s)) => Some((var.as_str(), s.expose())),
        _ => None,
    };
    Cipher::from_obscured(
        (c.password_env.as_str(), password.expose()),
        salt,
        mode,
        c.directory_name_encryption,
    )
    .map_err(|e| unusable(remote, e.to_string()))
}

/// The target's path inside the crypt remote (`key_prefix` is
/// `wrap_path/remote_path`).
fn relative_path(c: &CryptRemote, key_prefix: &str) -> String {
    let wrap: Vec<&str> = c.wrap_path.split('/').filter(|s| !s.is_empty()).collect();
    let all: Vec<&str> = key_prefix.split('/').filter(|s| !s.is_empty()).collect();
    all.get(wrap.len()..).unwrap_or_default().join("/")
}

/// The crypt remote's root on the wrapped remote.
fn root_location(wrapped: &RemoteSpec, c: &CryptRemote) -> Result<Location, RemoteError> {
    let wrap: Vec<String> = c
        .wrap_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    match &wrapped.kind {
        RemoteKind::S3(s3) => {
            let mut segs: Vec<String> = s3
                .path_prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            segs.extend(wrap);
            Ok(Location::S3 {
                bucket: s3.bucket.clone(),
                key_prefix: segs.join("/"),
            })
        }
        RemoteKind::Local(l) => Ok(Location::Local {
            dir: wrap.iter().fold(l.root.clone(), |d, s| d.join(s)),
        }),
        RemoteKind::Crypt(_) => Err(unusable(
            wrapped,
            "crypt over crypt is not supported".into(),
        )),
    }
}

fn join(root: &Location, segs: &[String]) -> Location {
    match root {
        Location::S3 { bucket, key_prefix } => {
            let mut all: Vec<&str> = key_prefix.split('/').filter(|s| !s.is_empty()).collect();
            all.extend(segs.iter().map(String::as_str));
            Location::S3 {
                bucket: bucket.clone(),
                key_prefix: all.join("/"),
            }
        }
        Location::Local { dir } => Location::Local {
            dir: segs.iter().fold(dir.clone(), |d, s| d.join(s)),
        },
        other => other.clone(),
    }
}

impl Shared {
    /// The physical key of a plaintext key (relative to the target root).
    fn phys_of(&self, path: &str) -> String {
        let names = self.cipher.names();
        if path.is_empty() || path == "/" {
            return path.to_string();
        }
        let (body, dir) = match path.strip_suffix('/') {
            Some(b) => (b, true),
            None => (path, false),
        };
        if body == CONTROL || body.starts_with(".coltec/") {
            if let Some((ts, rel)) = body.strip_prefix(TRASH).and_then(|r| r.split_once('/'))
                && !rel.is_empty()
            {
                let enc = if dir {
                    format!("{}/", names.encrypt_dir(rel))
                } else {
                    wrap_trash(&names.encrypt_file(rel))
                };
                return format!("{TRASH}{ts}/{enc}");
            }
            return path.to_string();
        }
        if dir {
            format!("{}/", names.encrypt_dir(body))
        } else {
            names.encrypt_file(body)
        }
    }

    /// The plaintext key of a physical key, or why it has none.
    fn plain_of(&self, path: &str) -> std::result::Result<String, String> {
        let names = self.cipher.names();
        if path.is_empty() || path == "/" {
            return Ok(path.to_string());
        }
        let (body, dir) = match path.strip_suffix('/') {
            Some(b) => (b, true),
            None => (path, false),
        };
        let slash = if dir { "/" } else { "" };
        if body == CONTROL || body.starts_with(".coltec/") {
            if let Some((ts, rel)) = body.strip_prefix(TRASH).and_then(|r| r.split_once('/'))
                && !rel.is_empty()
            {
                let plain = if dir {
                    names.decrypt_dir(rel)
                } else {
                    let rel = unwrap_trash(rel).ok_or("trash object without coltecd's marker")?;
                    names.decrypt_file(&rel)
                };
                return plain
                    .map(|p| format!("{TRASH}{ts}/{p}{slash}"))
                    .map_err(|e| e.to_string());
            }
            return Ok(path.to_string());
        }
        let plain = if dir {
            names.decrypt_dir(body)
        } else {
            names.decrypt_file(body)
        };
        plain
            .map(|p| format!("{p}{slash}"))
            .map_err(|e| e.to_string())
    }

    /// Plaintext metadata of a physical object.
    fn map_meta(&self, meta: Metadata) -> std::result::Result<Metadata, content::ContentError> {
        if !meta.is_file() {
            return Ok(meta);
        }
        let size = content::decrypted_size(meta.content_length())?;
        let mut b = meta.into_builder();
        b.set_file(size);
        Ok(b.build())
    }

    /// Run the password check once per operator; failures other than a
    /// mismatch (network) are retried on the next operation.
    async fn ready(&self) -> Result<()> {
        let verdict = self.checked.get_or_try_init(|| check::run(self)).await?;
        match verdict {
            Ok(()) => Ok(()),
            Err(why) => Err(Error::new(ErrorKind::ConfigInvalid, why.clone())),
        }
    }

    fn salt_words(&self) -> String {
        match &self.password2_env {
            Some(v) => format!("the salt in {v}"),
            None => "rclone's default salt (no password2_env)".to_string(),
        }
    }
}

fn wrap_trash(p: &str) -> String {
    match p.rsplit_once('/') {
        Some((d, f)) => format!("{d}/~{f}~"),
        None => format!("~{p}~"),
    }
}

fn unwrap_trash(p: &str) -> Option<String> {
    let (d, f) = match p.rsplit_once('/') {
        Some((d, f)) => (Some(d), f),
        None => (None, p),
    };
    let f = f.strip_prefix('~')?.strip_suffix('~')?;
    Some(match d {
        Some(d) => format!("{d}/{f}"),
        None => f.to_string(),
    })
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
        Ok(io::CryptLister::new(inner, self.shared.clone()))
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
