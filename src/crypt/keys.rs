//! Key derivation: rclone's scrypt (N=16384, r=8, p=1) over the password
//! and the salt (`password2`, or rclone's built-in salt when none is set),
//! cut into the data key, the name key and the name tweak.

use super::CryptError;

/// rclone's built-in salt, used when no `password2` is configured.
const DEFAULT_SALT: [u8; 16] = [
    0xA8, 0x0D, 0xF4, 0x3A, 0x8F, 0xBD, 0x03, 0x08, 0xA7, 0xCA, 0xB8, 0x3E, 0x58, 0x1F, 0x86, 0xB1,
];

/// The three secrets a crypt remote works with.
pub struct Keys {
    /// XSalsa20-Poly1305 key for file contents.
    pub data: [u8; 32],
    /// AES-256 key for names (EME) and the obfuscation rotation.
    pub name: [u8; 32],
    /// EME tweak for names.
    pub tweak: [u8; 16],
}

impl Drop for Keys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.data.zeroize();
        self.name.zeroize();
        self.tweak.zeroize();
    }
}

impl Keys {
    /// Derive the keys from the (revealed) password and salt. An empty
    /// password gives all-zero keys (what rclone's own tests use).
    pub fn derive(password: &str, salt: &str) -> Result<Keys, CryptError> {
        let mut out = [0u8; 80];
        if !password.is_empty() {
            let salt = if salt.is_empty() {
                &DEFAULT_SALT[..]
            } else {
                salt.as_bytes()
            };
            let params = scrypt::Params::new(14, 8, 1).map_err(|_| CryptError::Kdf)?;
            scrypt::scrypt(password.as_bytes(), salt, &params, &mut out)
                .map_err(|_| CryptError::Kdf)?;
        }
        let mut keys = Keys {
            data: [0; 32],
            name: [0; 32],
            tweak: [0; 16],
        };
        keys.data.copy_from_slice(&out[..32]);
        keys.name.copy_from_slice(&out[32..64]);
        keys.tweak.copy_from_slice(&out[64..]);
        zeroize::Zeroize::zeroize(&mut out);
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // rclone backend/crypt/cipher_test.go, TestKey
    #[test]
    fn derives_rclones_published_keys() {
        let k = Keys::derive("", "").unwrap();
        assert_eq!((k.data, k.name, k.tweak), ([0; 32], [0; 32], [0; 16]));

        let k = Keys::derive("potato", "").unwrap();
        assert_eq!(
            k.data,
            [
                0x74, 0x55, 0xC7, 0x1A, 0xB1, 0x7C, 0x86, 0x5B, 0x84, 0x71, 0xF4, 0x7B, 0x79, 0xAC,
                0xB0, 0x7E, 0xB3, 0x1D, 0x56, 0x78, 0xB8, 0x0C, 0x7E, 0x2E, 0xAF, 0x4F, 0xC8, 0x06,
                0x6A, 0x9E, 0xE4, 0x68
            ]
        );
        assert_eq!(
            k.name,
            [
                0x76, 0x5D, 0xA2, 0x7A, 0xB1, 0x5D, 0x77, 0xF9, 0x57, 0x96, 0x71, 0x1F, 0x7B, 0x93,
                0xAD, 0x63, 0xBB, 0xB4, 0x84, 0x07, 0x2E, 0x71, 0x80, 0xA8, 0xD1, 0x7A, 0x9B, 0xBE,
                0xC1, 0x42, 0x70, 0xD0
            ]
        );
        assert_eq!(
            k.tweak,
            [
                0xC1, 0x8D, 0x59, 0x32, 0xF5, 0x5B, 0x28, 0x28, 0xC5, 0xE1, 0xE8, 0x72, 0x15, 0x52,
                0x03, 0x10
            ]
        );

        let k = Keys::derive("potato", "sausage").unwrap();
        assert_eq!(
            k.data,
            [
                0x8e, 0x9b, 0x6b, 0x99, 0xf8, 0x69, 0x4, 0x67, 0xa0, 0x71, 0xf9, 0xcb, 0x92, 0xd0,
                0xaa, 0x78, 0x7f, 0x8f, 0xf1, 0x78, 0xbe, 0xc9, 0x6f, 0x99, 0x9f, 0xd5, 0x20, 0x6e,
                0x64, 0x4a, 0x1b, 0x50
            ]
        );
        assert_eq!(
            k.name,
            [
                0x3e, 0xa9, 0x5e, 0xf6, 0x81, 0x78, 0x2d, 0xc9, 0xd9, 0x95, 0x5d, 0x22, 0x5b, 0xfd,
                0x44, 0x2c, 0x6f, 0x5d, 0x68, 0x97, 0xb0, 0x29, 0x1, 0x5c, 0x6f, 0x46, 0x2e, 0x2a,
                0x9d, 0xae, 0x2c, 0xe3
            ]
        );
        assert_eq!(
            k.tweak,
            [
                0xf1, 0x7f, 0xd7, 0x14, 0x1d, 0x65, 0x27, 0x4f, 0x36, 0x3f, 0xc2, 0xa0, 0x4d, 0xd2,
                0x14, 0x8a
            ]
        );

        // The salt is case-sensitive, like the password.
        let k = Keys::derive("potato", "Sausage").unwrap();
        assert_eq!(&k.data[..4], &[0xda, 0x81, 0x8c, 0x67]);
        assert_eq!(&k.tweak[..4], &[0x9a, 0xb5, 0xb, 0x3d]);
    }
}
