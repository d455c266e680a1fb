//! File contents in rclone's crypt format: the `RCLONE\0\0` magic and a
//! 24-byte random nonce (the 32-byte header), then the plaintext in 64 KiB
//! blocks, each sealed with NaCl secretbox (XSalsa20-Poly1305: a 16-byte
//! tag, then the ciphertext), the nonce incremented (little-endian) per
//! block. The last block may be short; an empty file is the header alone.
//!
//! [`Encrypter`] and [`Decrypter`] are push-style and hold at most one
//! block, so memory is bounded whatever the file size.

use bytes::{Bytes, BytesMut};
use crypto_secretbox::XSalsa20Poly1305;
use crypto_secretbox::aead::{AeadInPlace, KeyInit, generic_array::GenericArray};

pub const MAGIC: &[u8; 8] = b"RCLONE\0\0";
pub const HEADER: usize = 32;
pub const TAG: usize = 16;
pub const BLOCK_DATA: usize = 64 * 1024;
pub const BLOCK: usize = TAG + BLOCK_DATA;

/// Why ciphertext does not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("object is too short to be rclone crypt ciphertext")]
    TooShort,
    #[error("object is not rclone crypt ciphertext (bad magic)")]
    BadMagic,
    #[error("object has a truncated block")]
    TruncatedBlock,
    #[error("a block failed authentication: wrong password or salt, or the object is corrupt")]
    BadBlock,
}

/// Ciphertext size of a plaintext of `plain` bytes.
pub fn encrypted_size(plain: u64) -> Option<u64> {
    let (blocks, rest) = (plain / BLOCK_DATA as u64, plain % BLOCK_DATA as u64);
    let mut size = blocks
        .checked_mul(BLOCK as u64)?
        .checked_add(HEADER as u64)?;
    if rest != 0 {
        size = size.checked_add(TAG as u64 + rest)?;
    }
    Some(size)
}

/// Plaintext size of a ciphertext of `enc` bytes (no download needed).
pub fn decrypted_size(enc: u64) -> Result<u64, ContentError> {
    let body = enc
        .checked_sub(HEADER as u64)
        .ok_or(ContentError::TooShort)?;
    let (blocks, rest) = (body / BLOCK as u64, body % BLOCK as u64);
    let mut size = blocks * BLOCK_DATA as u64;
    if rest != 0 {
        if rest <= TAG as u64 {
            return Err(ContentError::TruncatedBlock);
        }
        size += rest - TAG as u64;
    }
    Ok(size)
}

/// Where to start reading ciphertext for the plaintext range starting at
/// `offset` (`len` bytes, or to the end): `(ciphertext offset, ciphertext
/// length, plaintext bytes to drop from the first block, blocks skipped)`.
pub fn underlying_range(offset: u64, len: Option<u64>) -> (u64, Option<u64>, u64, u64) {
    let (blocks, discard) = (offset / BLOCK_DATA as u64, offset % BLOCK_DATA as u64);
    let start = (HEADER as u64).saturating_add(blocks.saturating_mul(BLOCK as u64));
    let length = len.map(|len| {
        let end = discard.saturating_add(len);
        end.div_ceil(BLOCK_DATA as u64)
            .max(1)
            .saturating_mul(BLOCK as u64)
    });
    (start, length, discard, blocks)
}

/// A secretbox nonce: 24 bytes, incremented little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonce(pub [u8; 24]);

impl Nonce {
    pub fn random() -> Nonce {
        let mut n = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut n);
        Nonce(n)
    }

    fn carry(&mut self, from: usize) {
        for b in &mut self.0[from..] {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
    }

    pub fn increment(&mut self) {
        self.carry(0);
    }

    /// Add `x`, as rclone does to seek `x` blocks ahead.
    pub fn add(&mut self, mut x: u64) {
        let mut carry: u16 = 0;
        for b in &mut self.0[..8] {
            carry += u16::from(*b) + (x & 0xff) as u16;
            x >>= 8;
            *b = carry as u8;
            carry >>= 8;
        }
        if carry != 0 {
            self.carry(8);
        }
    }
}

/// One key and a running nonce.
struct Sealer {
    aead: XSalsa20Poly1305,
    nonce: Nonce,
}

impl Sealer {
    fn new(key: &[u8; 32], nonce: Nonce) -> Sealer {
        Sealer {
            aead: XSalsa20Poly1305::new(GenericArray::from_slice(key)),
            nonce,
        }
    }

    /// Append `plain` sealed (tag first) to `out`.
    fn seal(&mut self, plain: &[u8], out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(&[0u8; TAG]);
        out.extend_from_slice(plain);
        let nonce = GenericArray::from_slice(&self.nonce.0);
        // Cannot fail: secretbox takes no associated data here.
        if let Ok(tag) = self
            .aead
            .encrypt_in_place_detached(nonce, b"", &mut out[start + TAG..])
        {
            out[start..start + TAG].copy_from_slice(&tag);
        }
        self.nonce.increment();
    }

    /// Open one sealed block in place; the plaintext is `block[TAG..]`.
    fn open(&mut self, block: &mut [u8]) -> Result<(), ContentError> {
        if block.len() <= TAG {
            return Err(ContentError::TruncatedBlock);
        }
        let (tag, body) = block.split_at_mut(TAG);
        let nonce = GenericArray::from_slice(&self.nonce.0);
        self.aead
            .decrypt_in_place_detached(nonce, b"", body, GenericArray::from_slice(tag))
            .map_err(|_| ContentError::BadBlock)?;
        self.nonce.increment();
        Ok(())
    }
}

/// Streaming encryption: header, then sealed 64 KiB blocks.
pub struct Encrypter {
    sealer: Sealer,
    header: Option<[u8; HEADER]>,
    pending: BytesMut,
}

impl Encrypter {
    pub fn new(key: &[u8; 32], nonce: Nonce) -> Encrypter {
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&nonce.0);
        Encrypter {
            sealer: Sealer::new(key, nonce),
            header: Some(header),
            pending: BytesMut::new(),
        }
    }

    fn emit_header(&mut self, out: &mut BytesMut) {
        if let Some(h) = self.header.take() {
            out.extend_from_slice(&h);
        }
    }

    /// Encrypt `data`, appending every completed block to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut BytesMut) {
        self.emit_header(out);
        if !self.pending.is_empty() {
            let take = (BLOCK_DATA - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < BLOCK_DATA {
                return;
            }
            let block = self.pending.split();
            self.sealer.seal(&block, out);
        }
        while data.len() >= BLOCK_DATA {
            self.sealer.seal(&data[..BLOCK_DATA], out);
            data = &data[BLOCK_DATA..];
        }
        self.pending.extend_from_slice(data);
    }

    /// Seal the last (short) block.
    pub fn finish(&mut self, out: &mut BytesMut) {
        self.emit_header(out);
        if !self.pending.is_empty() {
            let block = self.pending.split();
            self.sealer.seal(&block, out);
        }
    }
}

/// Parse a header: the file's first nonce.
pub fn parse_header(header: &[u8]) -> Result<Nonce, ContentError> {
    if header.len() < HEADER {
        return Err(ContentError::TooShort);
    }
    if &header[..8] != MAGIC {
        return Err(ContentError::BadMagic);
    }
    let mut n = [0u8; 24];
    n.copy_from_slice(&header[8..HEADER]);
    Ok(Nonce(n))
}

/// Streaming decryption of the blocks after the header.
pub struct Decrypter {
    sealer: Sealer,
    pending: BytesMut,
}

impl Decrypter {
    /// Start at block `skip` of a file whose first nonce is `nonce`.
    pub fn new(key: &[u8; 32], mut nonce: Nonce, skip: u64) -> Decrypter {
        nonce.add(skip);
        Decrypter {
            sealer: Sealer::new(key, nonce),
            pending: BytesMut::new(),
        }
    }

    fn open_pending(&mut self, n: usize, out: &mut Vec<Bytes>) -> Result<(), ContentError> {
        let mut block = self.pending.split_to(n);
        self.sealer.open(&mut block)?;
        out.push(block.freeze().slice(TAG..));
        Ok(())
    }

    /// Feed ciphertext; every completed block is opened and appended.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) -> Result<(), ContentError> {
        self.pending.extend_from_slice(data);
        while self.pending.len() >= BLOCK {
            self.open_pending(BLOCK, out)?;
        }
        Ok(())
    }

    /// The ciphertext ended: open the last (short) block.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), ContentError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.open_pending(self.pending.len(), out)
    }
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;
