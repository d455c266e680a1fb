//! rclone's crypt format, implemented here so that a workspace's encrypted
//! targets stay readable by stock rclone and rclone-written trees stay
//! readable by coltecd.
//!
//! - [`obscure`]: revealing passwords given in rclone's obscured form.
//! - [`keys`]: scrypt key derivation (data key, name key, name tweak).
//! - [`names`]: `standard` / `obfuscate` / `off` name encryption, per segment.
//! - [`content`]: the `RCLONE\0\0` header and 64 KiB secretbox blocks.
//! - `eme`: the wide-block mode behind `standard` names.
//!
//! The primitives (AES, XSalsa20-Poly1305, scrypt) come from RustCrypto;
//! the EME mode and the framing are small and tested against rclone's
//! published vectors. The opendal layer that applies all this to a target
//! lives in `crate::remote::crypt`.

pub mod content;
mod eme;
pub mod keys;
pub mod names;
pub mod obscure;

pub use content::ContentError;
pub use names::{NameError, NameMode, Names};

/// Why a crypt cipher cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("scrypt key derivation failed")]
    Kdf,
    #[error("the value of {var} cannot be revealed: {source}")]
    Reveal {
        var: String,
        source: obscure::RevealError,
    },
}

/// Everything needed to encrypt and decrypt one crypt remote.
pub struct Cipher {
    names: Names,
    data_key: [u8; 32],
}

impl Drop for Cipher {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.data_key);
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("mode", &self.names.mode())
            .finish_non_exhaustive()
    }
}

impl Cipher {
    /// A cipher from plaintext (already revealed) password and salt.
    pub fn new(
        password: &str,
        salt: &str,
        mode: NameMode,
        dir_names: bool,
    ) -> Result<Cipher, CryptError> {
        let keys = keys::Keys::derive(password, salt)?;
        Ok(Cipher {
            names: Names::new(&keys, mode, dir_names),
            data_key: keys.data,
        })
    }

    /// A cipher from values in rclone's obscured form, as rclone reads
    /// `RCLONE_CRYPT_PASSWORD` / `RCLONE_CRYPT_PASSWORD2`. `vars` name the
    /// variables for error messages (never the values).
    pub fn from_obscured(
        password: (&str, &str),
        salt: Option<(&str, &str)>,
        mode: NameMode,
        dir_names: bool,
    ) -> Result<Cipher, CryptError> {
        let reveal = |(var, value): (&str, &str)| {
            obscure::reveal(value).map_err(|source| CryptError::Reveal {
                var: var.to_string(),
                source,
            })
        };
        let pw = reveal(password)?;
        let salt = salt.map(reveal).transpose()?.unwrap_or_default();
        Cipher::new(&pw, &salt, mode, dir_names)
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// A streaming encrypter with a fresh random nonce.
    pub fn encrypter(&self) -> content::Encrypter {
        content::Encrypter::new(&self.data_key, content::Nonce::random())
    }

    /// A streaming decrypter starting `skip` blocks into a file whose
    /// header is `header`.
    pub fn decrypter(&self, header: &[u8], skip: u64) -> Result<content::Decrypter, ContentError> {
        let nonce = content::parse_header(header)?;
        Ok(content::Decrypter::new(&self.data_key, nonce, skip))
    }
}
