//! Names and sizes across the layer: plaintext keys to physical keys and
//! back (control objects and trash copies included), ciphertext sizes to
//! plaintext sizes, and the once-per-operator password check.

use opendal::{Error, ErrorKind, Metadata, Result};

use super::{CONTROL, Shared, TRASH, check};
use crate::crypt::content;

impl Shared {
    /// The physical key of a plaintext key (relative to the target root).
    pub(super) fn phys_of(&self, path: &str) -> String {
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
    pub(super) fn plain_of(&self, path: &str) -> std::result::Result<String, String> {
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
    pub(super) fn map_meta(
        &self,
        meta: Metadata,
    ) -> std::result::Result<Metadata, content::ContentError> {
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
    pub(super) async fn ready(&self) -> Result<()> {
        let verdict = self.checked.get_or_try_init(|| check::run(self)).await?;
        match verdict {
            Ok(()) => Ok(()),
            Err(why) => Err(Error::new(ErrorKind::ConfigInvalid, why.clone())),
        }
    }

    pub(super) fn salt_words(&self) -> String {
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
