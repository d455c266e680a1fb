//! The character-level codec: rclone's `MultiEncoder` `Encode`/`Decode`
//! for the flag set [`super`] documents, and the edge-whitespace quoting
//! it adds. Pure functions on one path component; the canonical-form and
//! round-trip checks live in [`super`].

use std::fmt::Write as _;

pub(super) const QUOTE: char = '\u{201B}';
const SYM_NUL: char = '\u{2400}';
const SYM_SPACE: char = '\u{2420}';
const SYM_CR: char = '\u{240D}';
const SYM_LF: char = '\u{240A}';
pub(super) const FULL_SLASH: char = '\u{FF0F}';
const FULL_DOT: &str = "\u{FF0E}";

/// `\t \n \v \r`: encoded at either end of a name.
pub(super) fn is_edge_ctl(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | b'\r')
}

/// `␉ ␊ ␋ ␍`: the substitutes of [`is_edge_ctl`].
fn is_edge_sym(c: char) -> bool {
    matches!(c, '\u{2409}' | '\u{240A}' | '\u{240B}' | '\u{240D}')
}

/// The control picture of a control byte (U+2400 + b).
fn sym(b: u8) -> char {
    char::from_u32(0x2400 + u32::from(b)).unwrap_or(SYM_NUL)
}

fn first_char(b: &[u8]) -> Option<char> {
    let n = b.len().min(4);
    (1..=n).find_map(|l| {
        std::str::from_utf8(&b[..l])
            .ok()
            .and_then(|s| s.chars().next())
    })
}

fn last_char(b: &[u8]) -> Option<char> {
    let n = b.len().min(4);
    (1..=n).find_map(|l| {
        std::str::from_utf8(&b[b.len() - l..])
            .ok()
            .and_then(|s| s.chars().next())
    })
}

/// rclone's `MultiEncoder.Encode` for our flag set.
pub(super) fn rclone_encode(raw: &[u8]) -> String {
    match raw {
        b"." => return FULL_DOT.to_string(),
        b".." => return FULL_DOT.repeat(2),
        _ if raw == FULL_DOT.as_bytes() => return format!("{QUOTE}{FULL_DOT}"),
        _ if raw == FULL_DOT.repeat(2).as_bytes() => {
            return format!("{QUOTE}{FULL_DOT}{QUOTE}{FULL_DOT}");
        }
        _ => {}
    }
    let mut rest = raw;
    let mut prefix = String::new();
    if let Some(&b0) = rest.first() {
        let c0 = first_char(rest);
        if b0 == b' ' {
            prefix.push(SYM_SPACE);
            rest = &rest[1..];
        } else if c0 == Some(SYM_SPACE) {
            prefix.extend([QUOTE, SYM_SPACE]);
            rest = &rest[SYM_SPACE.len_utf8()..];
        } else if is_edge_ctl(b0) {
            prefix.push(sym(b0));
            rest = &rest[1..];
        } else if let Some(c) = c0.filter(|c| is_edge_sym(*c)) {
            prefix.extend([QUOTE, c]);
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut suffix = String::new();
    if let Some(&bl) = rest.last() {
        let cl = last_char(rest);
        if bl == b' ' {
            suffix.push(SYM_SPACE);
            rest = &rest[..rest.len() - 1];
        } else if cl == Some(SYM_SPACE) {
            suffix.extend([QUOTE, SYM_SPACE]);
            rest = &rest[..rest.len() - SYM_SPACE.len_utf8()];
        } else if is_edge_ctl(bl) {
            suffix.push(sym(bl));
            rest = &rest[..rest.len() - 1];
        } else if let Some(c) = cl.filter(|c| is_edge_sym(*c)) {
            suffix.extend([QUOTE, c]);
            rest = &rest[..rest.len() - c.len_utf8()];
        }
    }
    let mut out = prefix;
    for chunk in rest.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\0' => out.push(SYM_NUL),
                SYM_NUL | QUOTE | FULL_SLASH | SYM_CR | SYM_LF => out.extend([QUOTE, c]),
                '/' => out.push(FULL_SLASH),
                '\r' | '\n' => out.push(sym(c as u8)),
                _ => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "{QUOTE}{b:02X}");
        }
    }
    out.push_str(&suffix);
    out
}

/// Whitespace left at either end (what opendal's trim would eat) is
/// written as the `‛XX` bytes of its UTF-8 form.
pub(super) fn quote_edge_whitespace(s: String) -> String {
    let quoted = |c: char| {
        let mut buf = [0u8; 4];
        let mut q = String::new();
        for b in c.encode_utf8(&mut buf).bytes() {
            let _ = write!(q, "{QUOTE}{b:02X}");
        }
        q
    };
    let mut s = s;
    if let Some(c) = s.chars().next_back().filter(|c| c.is_whitespace()) {
        s.truncate(s.len() - c.len_utf8());
        s.push_str(&quoted(c));
    }
    if let Some(c) = s.chars().next().filter(|c| c.is_whitespace()) {
        s = format!("{}{}", quoted(c), &s[c.len_utf8()..]);
    }
    s
}

fn hex_byte(b: &[u8]) -> Option<u8> {
    let h = b.get(..2)?;
    let h = std::str::from_utf8(h).ok()?;
    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(h, 16).ok()
}

/// rclone's `MultiEncoder.Decode` for our flag set (with `CrLf`).
pub(super) fn rclone_decode(s: &str) -> Vec<u8> {
    let dot2 = FULL_DOT.repeat(2);
    if s == FULL_DOT {
        return b".".to_vec();
    } else if s == dot2 {
        return b"..".to_vec();
    } else if s == format!("{QUOTE}{FULL_DOT}") {
        return FULL_DOT.as_bytes().to_vec();
    } else if s == format!("{QUOTE}{FULL_DOT}{QUOTE}{FULL_DOT}") {
        return dot2.into_bytes();
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut rest = s;
    let mut chars = rest.chars();
    match chars.next() {
        Some(SYM_SPACE) => {
            out.push(b' ');
            rest = &rest[SYM_SPACE.len_utf8()..];
        }
        Some(c) if is_edge_sym(c) => {
            out.push((u32::from(c) - 0x2400) as u8);
            rest = &rest[c.len_utf8()..];
        }
        Some(QUOTE) => match chars.next() {
            Some(c) if c == SYM_SPACE || is_edge_sym(c) => {
                out.extend_from_slice(c.to_string().as_bytes());
                rest = &rest[QUOTE.len_utf8() + c.len_utf8()..];
            }
            _ => {}
        },
        _ => {}
    }
    let mut suffix: Vec<u8> = Vec::new();
    if let Some(c) = rest.chars().next_back()
        && (c == SYM_SPACE || is_edge_sym(c))
    {
        rest = &rest[..rest.len() - c.len_utf8()];
        if rest.ends_with(QUOTE) {
            suffix.extend_from_slice(c.to_string().as_bytes());
            rest = &rest[..rest.len() - QUOTE.len_utf8()];
        } else if c == SYM_SPACE {
            suffix.push(b' ');
        } else {
            suffix.push((u32::from(c) - 0x2400) as u8);
        }
    }
    let (mut unquote_next, mut skip_next) = (false, false);
    let mut buf = [0u8; 4];
    for (i, r) in rest.char_indices() {
        if skip_next {
            skip_next = false;
            continue;
        }
        let unquote = std::mem::take(&mut unquote_next);
        let plain = |out: &mut Vec<u8>, c: char| {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes())
        };
        match r {
            SYM_NUL if !unquote => out.push(0),
            QUOTE if !unquote => unquote_next = true,
            FULL_SLASH if !unquote => out.push(b'/'),
            SYM_CR | SYM_LF if !unquote => out.push((u32::from(r) - 0x2400) as u8),
            SYM_NUL | QUOTE | FULL_SLASH | SYM_CR | SYM_LF => plain(&mut out, r),
            _ => {
                if unquote {
                    if let Some(b) = hex_byte(&rest.as_bytes()[i..]) {
                        out.push(b);
                        skip_next = true;
                        continue;
                    }
                    plain(&mut out, QUOTE);
                }
                out.extend_from_slice(r.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if unquote_next {
        out.extend_from_slice(QUOTE.to_string().as_bytes());
    }
    out.extend_from_slice(&suffix);
    out
}
