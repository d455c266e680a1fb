//! rclone's "obscured" passwords: how `rclone obscure` hides a password in
//! a config file or in `RCLONE_CRYPT_PASSWORD`, and how to reveal it.
//!
//! This is not encryption (the key is public, in rclone's source); it only
//! keeps a password from being read over a shoulder. The format: base64url
//! (unpadded) of a 16-byte IV followed by the password under AES-256-CTR
//! with rclone's fixed key.

use aes::Aes256;
use cipher::{KeyIvInit, StreamCipher};
use data_encoding::BASE64URL_NOPAD;

/// rclone's fixed obscuring key.
const OBSCURE_KEY: [u8; 32] = [
    0x9c, 0x93, 0x5b, 0x48, 0x73, 0x0a, 0x55, 0x4d, 0x6b, 0xfd, 0x7c, 0x63, 0xc8, 0x86, 0xa9, 0x2b,
    0xd3, 0x90, 0x19, 0x8e, 0xb8, 0x12, 0x8a, 0xfb, 0xf4, 0xde, 0x16, 0x2b, 0x8b, 0x95, 0xf6, 0x38,
];

type Ctr = ctr::Ctr128BE<Aes256>;

/// Why an obscured value could not be revealed. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    #[error("it is not base64url; is it in rclone's obscured form (`rclone obscure`)?")]
    NotBase64,
    #[error("it is too short; is it in rclone's obscured form (`rclone obscure`)?")]
    TooShort,
    #[error(
        "it does not reveal to UTF-8 text; is it in rclone's obscured form (`rclone obscure`)?"
    )]
    NotText,
}

fn apply(iv: &[u8; 16], buf: &mut [u8]) {
    let mut ctr = Ctr::new(&OBSCURE_KEY.into(), iv.into());
    ctr.apply_keystream(buf);
}

/// Reveal a value obscured by `rclone obscure`.
pub fn reveal(obscured: &str) -> Result<String, RevealError> {
    let raw = BASE64URL_NOPAD
        .decode(obscured.trim().as_bytes())
        .map_err(|_| RevealError::NotBase64)?;
    if raw.len() < 16 {
        return Err(RevealError::TooShort);
    }
    let (iv, rest) = raw.split_at(16);
    let mut iv16 = [0u8; 16];
    iv16.copy_from_slice(iv);
    let mut buf = rest.to_vec();
    apply(&iv16, &mut buf);
    String::from_utf8(buf).map_err(|_| RevealError::NotText)
}

/// Obscure `plain` with the given IV, as `rclone obscure` does with a
/// random one.
pub fn obscure_with_iv(plain: &str, iv: [u8; 16]) -> String {
    let mut buf = iv.to_vec();
    let mut body = plain.as_bytes().to_vec();
    apply(&iv, &mut body);
    buf.extend_from_slice(&body);
    BASE64URL_NOPAD.encode(&buf)
}

/// Obscure `plain` with a random IV (what `rclone obscure` prints).
pub fn obscure(plain: &str) -> String {
    let mut iv = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut iv);
    obscure_with_iv(plain, iv)
}

#[cfg(test)]
mod tests {
    use super::*;

    // rclone fs/config/obscure/obscure_test.go
    #[test]
    fn reveals_rclones_published_vectors() {
        assert_eq!(reveal("YWFhYWFhYWFhYWFhYWFhYQ").as_deref(), Ok(""));
        assert_eq!(
            reveal("YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ").as_deref(),
            Ok("potato")
        );
        assert_eq!(
            reveal("YmJiYmJiYmJiYmJiYmJiYp3gcEWbAw").as_deref(),
            Ok("potato")
        );
    }

    #[test]
    fn obscures_like_rclone() {
        assert_eq!(
            obscure_with_iv("potato", *b"aaaaaaaaaaaaaaaa"),
            "YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ"
        );
        assert_eq!(
            obscure_with_iv("potato", *b"bbbbbbbbbbbbbbbb"),
            "YmJiYmJiYmJiYmJiYmJiYp3gcEWbAw"
        );
        let o = obscure("round trip");
        assert_eq!(reveal(&o).as_deref(), Ok("round trip"));
    }

    #[test]
    fn refuses_values_that_are_not_obscured() {
        assert_eq!(
            reveal("YmJiYmJiYmJiYmJiYmJiYp*gcEWbAw"),
            Err(RevealError::NotBase64)
        );
        assert_eq!(reveal("aGVsbG8"), Err(RevealError::TooShort));
        assert_eq!(reveal(""), Err(RevealError::TooShort));
    }
}
