//! Name encryption, per path segment, exactly as rclone's crypt does it:
//! `standard` (EME over AES-256, PKCS#7 padding, base32hex lowercase
//! without padding), `obfuscate` (a keyed character rotation) and `off`
//! (names kept, a `.bin` suffix added to files). With directory name
//! encryption off only the last segment of a file path is transformed.
//!
//! rclone keeps a `--backup`-style version suffix (`-v2001-02-03-040506-123`)
//! outside the encrypted part of a file name; so does this module.

use aes::Aes256;
use cipher::KeyInit;
use data_encoding::BASE32HEX_NOPAD;

use super::eme::{self, Direction};
use super::keys::Keys;

/// `filename_encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMode {
    Standard,
    Obfuscate,
    Off,
}

/// Why a name does not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("not base32hex")]
    BadEncoding,
    #[error("not a multiple of the block size")]
    NotBlocks,
    #[error("too long")]
    TooLong,
    #[error("bad padding (wrong password or salt?)")]
    BadPadding,
    #[error("decrypts to something that is not a file name (wrong password or salt?)")]
    NotAName,
    #[error("not an encrypted name")]
    NotEncrypted,
}

const SUFFIX: &str = ".bin";
const QUOTE: char = '!';

/// The name half of a crypt cipher.
pub struct Names {
    aes: Aes256,
    tweak: [u8; 16],
    key_sum: i64,
    mode: NameMode,
    dir_names: bool,
}

impl Names {
    pub fn new(keys: &Keys, mode: NameMode, dir_names: bool) -> Names {
        Names {
            aes: Aes256::new(&keys.name.into()),
            tweak: keys.tweak,
            key_sum: keys.name.iter().map(|b| i64::from(*b)).sum(),
            mode,
            dir_names,
        }
    }

    pub fn mode(&self) -> NameMode {
        self.mode
    }

    /// Whether directory segments are transformed.
    pub fn encrypts_dirs(&self) -> bool {
        self.mode != NameMode::Off && self.dir_names
    }

    pub fn encrypt_segment(&self, plain: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let bytes = plain.as_bytes();
        let pad = 16 - bytes.len() % 16;
        let mut padded = Vec::with_capacity(bytes.len() + pad);
        padded.extend_from_slice(bytes);
        padded.extend(std::iter::repeat_n(pad as u8, pad));
        // A segment longer than 2047 bytes cannot be stored anywhere; EME
        // refuses it and so does rclone's decryption: leave it unencrypted
        // (it will not decrypt, so it is reported, never silently used).
        match eme::transform(&self.aes, &self.tweak, &padded, Direction::Encrypt) {
            Some(c) => BASE32HEX_NOPAD.encode(&c).to_ascii_lowercase(),
            None => plain.to_string(),
        }
    }

    pub fn decrypt_segment(&self, enc: &str) -> Result<String, NameError> {
        if enc.is_empty() {
            return Ok(String::new());
        }
        let raw = lenient_base32()
            .decode(enc.to_ascii_uppercase().as_bytes())
            .map_err(|_| NameError::BadEncoding)?;
        if !raw.len().is_multiple_of(16) {
            return Err(NameError::NotBlocks);
        }
        if raw.len() > 2048 {
            return Err(NameError::TooLong);
        }
        let mut p = eme::transform(&self.aes, &self.tweak, &raw, Direction::Decrypt)
            .ok_or(NameError::NotBlocks)?;
        let pad = usize::from(*p.last().ok_or(NameError::NotBlocks)?);
        if pad == 0 || pad > 16 || p[p.len() - pad..].iter().any(|b| usize::from(*b) != pad) {
            return Err(NameError::BadPadding);
        }
        p.truncate(p.len() - pad);
        checked_name(String::from_utf8(p).map_err(|_| NameError::NotAName)?)
    }

    pub fn obfuscate_segment(&self, plain: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let mut dir: i64 = plain.chars().map(|c| i64::from(u32::from(c))).sum::<i64>() % 256;
        let mut out = format!("{dir}.");
        dir += self.key_sum;
        for c in plain.chars() {
            let r = i64::from(u32::from(c));
            match c {
                QUOTE => {
                    out.push(QUOTE);
                    out.push(QUOTE);
                }
                '0'..='9' => out.push(to_char('0' as i64 + (r - '0' as i64 + dir % 9 + 1) % 10)),
                'A'..='Z' | 'a'..='z' => {
                    let mut pos = r - 'A' as i64;
                    if pos >= 26 {
                        pos -= 6;
                    }
                    pos = (pos + dir % 25 + 1) % 52;
                    if pos >= 26 {
                        pos += 6;
                    }
                    out.push(to_char('A' as i64 + pos));
                }
                '\u{A0}'..='\u{FF}' => out.push(to_char(0xA0 + (r - 0xA0 + dir % 95 + 1) % 96)),
                _ if r >= 0x100 => {
                    let base = r - r % 256;
                    match char::from_u32((base + (r - base + dir % 127 + 1) % 256) as u32) {
                        Some(n) => out.push(n),
                        None => {
                            out.push(QUOTE);
                            out.push(c);
                        }
                    }
                }
                _ => out.push(c),
            }
        }
        out
    }

    pub fn deobfuscate_segment(&self, enc: &str) -> Result<String, NameError> {
        if enc.is_empty() {
            return Ok(String::new());
        }
        let (num, rest) = enc.split_once('.').ok_or(NameError::NotEncrypted)?;
        if num == "!" {
            return checked_name(rest.to_string());
        }
        let mut dir: i64 = num.parse().map_err(|_| NameError::NotEncrypted)?;
        dir = dir
            .checked_add(self.key_sum)
            .ok_or(NameError::NotEncrypted)?;
        let mut out = String::with_capacity(rest.len());
        let mut quoted = false;
        for c in rest.chars() {
            let r = i64::from(u32::from(c));
            if quoted {
                out.push(c);
                quoted = false;
                continue;
            }
            let n = match c {
                QUOTE => {
                    quoted = true;
                    continue;
                }
                '0'..='9' => {
                    let mut n = r - dir % 9 - 1;
                    if n < '0' as i64 {
                        n += 10;
                    }
                    n
                }
                'A'..='Z' | 'a'..='z' => {
                    let mut pos = r - 'A' as i64;
                    if pos >= 26 {
                        pos -= 6;
                    }
                    pos -= dir % 25 + 1;
                    if pos < 0 {
                        pos += 52;
                    }
                    if pos >= 26 {
                        pos += 6;
                    }
                    'A' as i64 + pos
                }
                '\u{A0}'..='\u{FF}' => {
                    let mut n = r - dir % 95 - 1;
                    if n < 0xA0 {
                        n += 96;
                    }
                    n
                }
                _ if r >= 0x100 => {
                    let base = r - r % 256;
                    let mut n = r - dir % 127 - 1;
                    if n < base {
                        n += 256;
                    }
                    n
                }
                _ => r,
            };
            let ch = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .ok_or(NameError::NotAName)?;
            out.push(ch);
        }
        checked_name(out)
    }

    fn segment_out(&self, seg: &str) -> String {
        match self.mode {
            NameMode::Standard => self.encrypt_segment(seg),
            _ => self.obfuscate_segment(seg),
        }
    }

    fn segment_in(&self, seg: &str) -> Result<String, NameError> {
        match self.mode {
            NameMode::Standard => self.decrypt_segment(seg),
            _ => self.deobfuscate_segment(seg),
        }
    }

    fn map_path(
        &self,
        path: &str,
        f: impl Fn(&str) -> Result<String, NameError>,
    ) -> Result<String, NameError> {
        let segs: Vec<&str> = path.split('/').collect();
        let last = segs.len() - 1;
        let mut out = Vec::with_capacity(segs.len());
        for (i, seg) in segs.iter().enumerate() {
            if !self.dir_names && i != last {
                out.push(seg.to_string());
                continue;
            }
            out.push(match (i == last).then(|| split_version(seg)).flatten() {
                Some((plain, version)) => add_version(&f(&plain)?, version),
                None => f(seg)?,
            });
        }
        Ok(out.join("/"))
    }

    /// rclone's `EncryptFileName`.
    pub fn encrypt_file(&self, path: &str) -> String {
        if self.mode == NameMode::Off {
            return format!("{path}{SUFFIX}");
        }
        self.map_path(path, |s| Ok(self.segment_out(s)))
            .unwrap_or_else(|_| path.to_string())
    }

    /// rclone's `EncryptDirName`.
    pub fn encrypt_dir(&self, path: &str) -> String {
        if !self.encrypts_dirs() {
            return path.to_string();
        }
        self.encrypt_file(path)
    }

    /// rclone's `DecryptFileName`.
    pub fn decrypt_file(&self, path: &str) -> Result<String, NameError> {
        if self.mode == NameMode::Off {
            let plain = path
                .strip_suffix(SUFFIX)
                .filter(|p| !p.is_empty())
                .ok_or(NameError::NotEncrypted)?;
            if split_version(plain).is_some_and(|(p, _)| p.is_empty()) {
                return Err(NameError::NotEncrypted);
            }
            return Ok(plain.to_string());
        }
        self.map_path(path, |s| self.segment_in(s))
    }

    /// rclone's `DecryptDirName`.
    pub fn decrypt_dir(&self, path: &str) -> Result<String, NameError> {
        if !self.encrypts_dirs() {
            return Ok(path.to_string());
        }
        self.map_path(path, |s| self.segment_in(s))
    }
}

fn to_char(n: i64) -> char {
    u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// base32hex without padding that, like Go's decoder, ignores non-zero
/// trailing bits.
fn lenient_base32() -> &'static data_encoding::Encoding {
    static E: std::sync::OnceLock<data_encoding::Encoding> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let mut spec = BASE32HEX_NOPAD.specification();
        spec.check_trailing_bits = false;
        spec.encoding().unwrap_or_else(|_| BASE32HEX_NOPAD.clone())
    })
}

/// A decrypted segment must be usable as one path segment.
fn checked_name(s: String) -> Result<String, NameError> {
    if s.contains('/') || s.contains('\0') {
        return Err(NameError::NotAName);
    }
    Ok(s)
}

/// Go's `path.Ext`: from the last `.` of the name, or empty.
fn ext(name: &str) -> &str {
    name.rfind('.').map_or("", |i| &name[i..])
}

/// rclone's `version.Remove`: `(name without version, "-vYYYY-MM-DD-HHMMSS-mmm")`.
fn split_version(name: &str) -> Option<(String, &str)> {
    const LEN: usize = "-v2006-01-02-150405-000".len();
    let e = ext(name);
    let base = &name[..name.len() - e.len()];
    let start = base.len().checked_sub(LEN)?;
    let v = base.get(start..)?;
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = v.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if &b[..2] != b"-v" || b[6] != b'-' || b[9] != b'-' || b[12] != b'-' || b[19] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(2..6)?, num(7..9)?, num(10..12)?);
    let (h, mi, s) = (num(13..15)?, num(15..17)?, num(17..19)?);
    num(20..23)?;
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > days || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some((format!("{}{e}", &base[..start]), v))
}

/// rclone's `version.Add`.
fn add_version(name: &str, version: &str) -> String {
    let e = ext(name);
    format!("{}{version}{e}", &name[..name.len() - e.len()])
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
