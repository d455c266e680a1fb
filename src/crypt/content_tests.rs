//! rclone's published content vectors (backend/crypt/cipher_test.go) and
//! the streaming properties the sync engine relies on.

use super::*;

const ZERO_KEY: [u8; 32] = [0; 32];

fn counting_nonce() -> Nonce {
    let mut n = [0u8; 24];
    for (i, b) in n.iter_mut().enumerate() {
        *b = (i + 1) as u8;
    }
    Nonce(n)
}

fn header_1_to_24() -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&counting_nonce().0);
    h
}

fn encrypt_all(plain: &[u8], nonce: Nonce, piece: usize) -> Vec<u8> {
    let mut e = Encrypter::new(&ZERO_KEY, nonce);
    let mut out = BytesMut::new();
    for c in plain.chunks(piece.max(1)) {
        e.push(c, &mut out);
    }
    e.finish(&mut out);
    out.to_vec()
}

fn decrypt_all(enc: &[u8], piece: usize) -> Result<Vec<u8>, ContentError> {
    let nonce = parse_header(enc)?;
    let mut d = Decrypter::new(&ZERO_KEY, nonce, 0);
    let mut out = Vec::new();
    for c in enc[HEADER..].chunks(piece.max(1)) {
        d.push(c, &mut out)?;
    }
    d.finish(&mut out)?;
    Ok(out.concat())
}

#[test]
fn encrypts_rclones_published_files() {
    let mut file1 = header_1_to_24();
    file1.extend_from_slice(&[
        0x09, 0x5b, 0x44, 0x6c, 0xd6, 0x23, 0x7b, 0xbc, 0xb0, 0x8d, 0x09, 0xfb, 0x52, 0x4c, 0xe5,
        0x65, 0xAA,
    ]);
    let mut file16 = header_1_to_24();
    file16.extend_from_slice(&[
        0xb9, 0xc4, 0x55, 0x2a, 0x27, 0x10, 0x06, 0x29, 0x18, 0x96, 0x0a, 0x3e, 0x60, 0x8c, 0x29,
        0xb9, 0xaa, 0x8a, 0x5e, 0x1e, 0x16, 0x5b, 0x6d, 0x07, 0x5d, 0xe4, 0xe9, 0xbb, 0x36, 0x7f,
        0xd6, 0xd4,
    ]);
    let sixteen: Vec<u8> = (1..=16).collect();
    for (plain, want) in [
        (&[][..], header_1_to_24()),
        (&[1u8][..], file1),
        (&sixteen[..], file16),
    ] {
        assert_eq!(encrypt_all(plain, counting_nonce(), 7), want);
        assert_eq!(decrypt_all(&want, 5).unwrap(), plain);
    }
}

#[test]
fn sizes_match_rclones_table() {
    for (plain, enc) in [
        (0u64, 32u64),
        (1, 32 + 16 + 1),
        (65536, 32 + 16 + 65536),
        (65537, 32 + 16 + 65536 + 16 + 1),
        (1 << 20, 32 + 16 * (16 + 65536)),
        ((1 << 20) + 65535, 32 + 16 * (16 + 65536) + 16 + 65535),
        (1 << 30, 32 + 16384 * (16 + 65536)),
        ((1 << 40) + 1, 32 + 16777216 * (16 + 65536) + 16 + 1),
    ] {
        assert_eq!(encrypted_size(plain), Some(enc));
        assert_eq!(decrypted_size(enc), Ok(plain));
    }
    for (enc, err) in [
        (0, ContentError::TooShort),
        (31, ContentError::TooShort),
        (32 + 1, ContentError::TruncatedBlock),
        (32 + 16, ContentError::TruncatedBlock),
        (32 + 16 + 65536 + 16, ContentError::TruncatedBlock),
    ] {
        assert_eq!(decrypted_size(enc), Err(err), "{enc}");
    }
    assert_eq!(encrypted_size(u64::MAX), None);
}

#[test]
fn nonce_arithmetic_matches_rclone() {
    let mut n = Nonce([0xFF; 24]);
    n.0[23] = 0;
    n.increment();
    assert_eq!(&n.0[..23], &[0u8; 23]);
    assert_eq!(n.0[23], 1);

    let mut n = Nonce([0; 24]);
    n.0[..6].copy_from_slice(&[0xFF; 6]);
    n.add(0xFFFF_FFFF_FFFF);
    assert_eq!(&n.0[..7], &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);

    let mut n = Nonce([0; 24]);
    n.0[..9].copy_from_slice(&[0xFF; 9]);
    n.add(u64::MAX);
    assert_eq!(
        &n.0[..10],
        &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x01]
    );
}

#[test]
fn round_trips_across_block_edges_with_any_push_size() {
    for len in [0usize, 1, 65535, 65536, 65537, 3 * 65536 + 5] {
        let plain: Vec<u8> = (0..len).map(|i| (i % 257) as u8).collect();
        for piece in [1usize << 20, 65536, 4096, 65537] {
            let enc = encrypt_all(&plain, Nonce::random(), piece);
            assert_eq!(enc.len() as u64, encrypted_size(len as u64).unwrap());
            assert_eq!(decrypted_size(enc.len() as u64), Ok(len as u64));
            assert_eq!(decrypt_all(&enc, piece).unwrap(), plain, "{len}/{piece}");
        }
    }
}

#[test]
fn any_flipped_byte_fails_authentication() {
    let plain: Vec<u8> = (1..=16).collect();
    let enc = encrypt_all(&plain, counting_nonce(), 16);
    for i in 0..enc.len() {
        let mut bad = enc.clone();
        bad[i] ^= 0xFF;
        let want = if i < 8 {
            ContentError::BadMagic
        } else {
            ContentError::BadBlock
        };
        assert_eq!(decrypt_all(&bad, 16), Err(want), "byte {i}");
    }
}

#[test]
fn truncation_inside_a_block_is_refused() {
    let plain = vec![7u8; 100];
    let enc = encrypt_all(&plain, Nonce::random(), 100);
    assert_eq!(decrypt_all(&enc[..10], 64), Err(ContentError::TooShort));
    assert_eq!(
        decrypt_all(&enc[..HEADER + 10], 64),
        Err(ContentError::TruncatedBlock)
    );
    assert_eq!(
        decrypt_all(&enc[..enc.len() - 1], 64),
        Err(ContentError::BadBlock)
    );
}

#[test]
fn seeking_starts_at_the_right_block() {
    let len = 3 * BLOCK_DATA + 100;
    let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let enc = encrypt_all(&plain, Nonce::random(), 1 << 20);
    let nonce = parse_header(&enc).unwrap();
    for (offset, want) in [
        (0u64, None),
        (1, Some(10u64)),
        (65535, Some(2)),
        (65536, None),
        (131073, Some(65536)),
    ] {
        let (start, clen, discard, skip) = underlying_range(offset, want);
        let end = clen.map_or(enc.len() as u64, |l| (start + l).min(enc.len() as u64));
        let mut d = Decrypter::new(&ZERO_KEY, nonce, skip);
        let mut out = Vec::new();
        d.push(&enc[start as usize..end as usize], &mut out)
            .unwrap();
        d.finish(&mut out).unwrap();
        let got = out.concat();
        let got = &got[discard as usize..];
        let want_len = want.map_or(len - offset as usize, |w| w as usize);
        assert_eq!(
            &got[..want_len],
            &plain[offset as usize..offset as usize + want_len]
        );
    }
    // rclone's calculateUnderlying table, a few rows.
    let b = BLOCK_DATA as u64;
    let bs = BLOCK as u64;
    assert_eq!(underlying_range(0, None), (32, None, 0, 0));
    assert_eq!(underlying_range(b + 1, None), (32 + bs, None, 1, 1));
    assert_eq!(
        underlying_range(b - 1, Some(100)),
        (32, Some(2 * bs), b - 1, 0)
    );
    assert_eq!(underlying_range(1, Some(b)), (32, Some(2 * bs), 1, 0));
    assert_eq!(underlying_range(b, Some(b)), (32 + bs, Some(bs), 0, 1));
}
