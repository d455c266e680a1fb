//! Resolving a crypt target: the remote it wraps, its cipher (from the
//! obscured password and salt), and where its ciphertext physically lives.

use std::sync::Arc;

use opendal::Operator;

use super::{CryptLayer, Shared};
use crate::crypt::{Cipher, NameMode};
use crate::remote::RemoteError;
use crate::spec::{CryptRemote, Location, RemoteKind, RemoteSpec};

/// A crypt target resolved: the wrapped remote, the cipher, the crypt
/// remote's root on the wrapped remote, the encrypted `remote_path`.
struct Resolved {
    wrapped: RemoteSpec,
    cipher: Cipher,
    root: Location,
    segments: Vec<String>,
}

fn resolve(
    remote: &RemoteSpec,
    c: &CryptRemote,
    key_prefix: &str,
) -> Result<Resolved, RemoteError> {
    let wrapped = wrapped(remote, c)?;
    let cipher = cipher(remote, c)?;
    let rel = relative_path(c, key_prefix);
    let segments: Vec<String> = if rel.is_empty() {
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
    Ok(Resolved {
        wrapped,
        cipher,
        root,
        segments,
    })
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
    let r = resolve(remote, c, key_prefix)?;
    let inner = crate::remote::operator_at(&r.wrapped, &join(&r.root, &r.segments))?;
    let probe = crate::remote::operator_at(&r.wrapped, &r.root)?;
    let shared = Arc::new(Shared {
        cipher: r.cipher,
        remote: remote.name.clone(),
        password_env: c.password_env.clone(),
        password2_env: c.password2_env.clone(),
        local: matches!(r.wrapped.kind, RemoteKind::Local(_)),
        probe,
        phys_segments: r.segments,
        checked: tokio::sync::OnceCell::new(),
    });
    Ok(inner.layer(CryptLayer { shared }))
}

/// Where a crypt target's ciphertext physically lives, and on which remote
/// (for the lease, which writes its objects there directly). Other
/// remotes are returned as they are.
pub fn physical(
    remote: &RemoteSpec,
    location: &Location,
) -> Result<(RemoteSpec, Location), RemoteError> {
    let (RemoteKind::Crypt(c), Location::Crypt { key_prefix, .. }) = (&remote.kind, location)
    else {
        return Ok((remote.clone(), location.clone()));
    };
    let r = resolve(remote, c, key_prefix)?;
    let phys = join(&r.root, &r.segments);
    Ok((r.wrapped, phys))
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
