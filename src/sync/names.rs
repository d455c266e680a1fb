//! Names: the one mapping between a local file name (any bytes Linux
//! allows) and its form in object keys, in the engine's relative paths
//! (`rel`) and in reports.
//!
//! # Why names are encoded at all
//!
//! Keys are UTF-8 strings, and two layers below us change some strings:
//! opendal's `normalize_path` trims whitespace at both ends of every path
//! (`'notes.txt '` would be stored as `notes.txt`, over another file), and
//! S3's XML listings turn `\r` into `\n` (XML line-end normalisation). So a
//! name is stored in a form no layer alters, and mapped back on the way in.
//!
//! # The encoding (rclone's, per path component)
//!
//! It is exactly what rclone's encoder writes with
//! `--s3-encoding Slash,InvalidUtf8,Dot,LeftSpace,RightSpace,LeftCrLfHtVt,RightCrLfHtVt,CrLf`
//! (rclone's S3 default plus the flags for what S3 servers and opendal
//! mangle), plus one narrow addition:
//!
//! - a leading/trailing space becomes `␠` (U+2420), a leading/trailing
//!   `\t \v` becomes `␉ ␋`;
//! - `\r` and `\n` anywhere become `␍ ␊` (XML listings turn `\r` into
//!   `\n`; some servers refuse a `\n` in a URL path);
//! - a byte that is not UTF-8 becomes `‛XX` (U+201B and two hex digits);
//! - the quote `‛`, `␀`, `／`, and the substitutes themselves where they
//!   would be read back as a substitute, are quoted with `‛`;
//! - the addition: any other whitespace at either end of a name (U+00A0,
//!   `\f`, …), which opendal would trim and no rclone flag covers, is
//!   written as the `‛XX` bytes of its UTF-8 form (rclone decodes those).
//!
//! Ordinary names (none of the above) are their own encoding, so existing
//! remotes keep their keys. rclone reads and writes the same keys with the
//! `--s3-encoding` above (`--local-encoding` with the same value for a
//! local remote).
//!
//! # Guarantees
//!
//! - [`encode_name`] checks that the key decodes back to exactly the name.
//!   rclone's decoder misreads a quoted `‛` right before a trailing
//!   substitute (`‛ ` → `‛‛␠`); such a trailing character is written as
//!   `‛XX` instead. A name that still would not round-trip is refused
//!   (reported, never uploaded); none is known.
//! - [`decode_component`] accepts only the canonical form (re-encoding
//!   gives the same text back), so one name has exactly one key and one
//!   relative path, and a key any layer would alter is refused.
//!
//! A relative path (`rel`) is the `/`-joined encoded components; the local
//! path is [`local_path`]. Excludes match `rel`, i.e. encoded names.
//!
//! # Layout
//!
//! - `names.rs`: the checked API (names, components, relative paths).
//! - `codec`: rclone's encode/decode for the flag set above.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

mod codec;

use codec::{FULL_SLASH, QUOTE, is_edge_ctl, quote_edge_whitespace, rclone_decode, rclone_encode};

/// Why a name or key component has no faithful encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadName(pub &'static str);

/// Whether `raw` can be a file name (one path component) at all.
fn check_raw(raw: &[u8]) -> Result<(), BadName> {
    match raw {
        [] => Err(BadName("empty name")),
        b"." | b".." => Err(BadName("'.' or '..' as a name")),
        _ if raw.contains(&b'/') => Err(BadName("name contains '/'")),
        _ if raw.contains(&0) => Err(BadName("name contains NUL")),
        _ => Ok(()),
    }
}

/// The key form of one local file name. Fails when the name would not
/// decode back to exactly itself.
pub fn encode_name(raw: &[u8]) -> Result<String, BadName> {
    check_raw(raw)?;
    let enc = quote_edge_whitespace(rclone_encode(raw));
    if rclone_decode(&enc) == raw {
        return Ok(enc);
    }
    // rclone's decoder reads `‛` + a trailing substitute as a quoted
    // literal even when the `‛` is itself quoted (`‛ ` → `‛‛␠`): write
    // the trailing character as `‛XX` instead, which it reads back.
    if let Some((&last, head)) = raw.split_last()
        && (last == b' ' || is_edge_ctl(last))
        && !head.is_empty()
    {
        let alt = quote_edge_whitespace(format!("{}{QUOTE}{last:02X}", rclone_encode(head)));
        if rclone_decode(&alt) == raw && alt.trim() == alt {
            return Ok(alt);
        }
    }
    Err(BadName(
        "the name has no reversible encoding (a '‛' next to an encoded character)",
    ))
}

/// The local file name of one key component; only the canonical form is
/// accepted (see the module doc).
pub fn decode_component(comp: &str) -> Result<Vec<u8>, BadName> {
    let raw = rclone_decode(comp);
    check_raw(&raw)?;
    match encode_name(&raw) {
        Ok(enc) if enc == comp => Ok(raw),
        _ => Err(BadName(
            "the name is not in coltecd's name encoding (it would be read as another name)",
        )),
    }
}

/// Whether `rel` (a `/`-separated relative path) is in canonical form.
pub fn is_canonical(rel: &str) -> bool {
    rel.split('/')
        .all(|c| is_plain(c) || decode_component(c).is_ok())
}

/// A component with nothing to encode (the common case, checked without
/// decoding): no substitute or quote characters, no `\r`, no edge
/// whitespace, not a dot name.
fn is_plain(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && c.trim() == c
        && !c.chars().any(|ch| {
            matches!(
                ch,
                '\0' | '\r' | '\n' | QUOTE | FULL_SLASH | '\u{FF0E}' | '\u{2400}'..='\u{2421}'
            )
        })
}

/// The relative path of `parent`'s child `raw` (`parent` empty: the root).
pub fn child_rel(parent: &str, raw: &OsStr) -> Result<String, BadName> {
    let enc = encode_name(raw.as_bytes())?;
    Ok(if parent.is_empty() {
        enc
    } else {
        format!("{parent}/{enc}")
    })
}

/// The encoded relative path of a root-relative local path (components
/// `Normal` only; anything else is refused).
pub fn rel_of(path: &Path) -> Result<String, BadName> {
    let mut rel = String::new();
    for c in path.components() {
        let std::path::Component::Normal(n) = c else {
            return Err(BadName("path is not below the root"));
        };
        rel = child_rel(&rel, n)?;
    }
    Ok(rel)
}

/// The local path of `rel` under `root`. A component that is not in
/// canonical form (only legacy base rows can hold one) is used as is,
/// except `""`, `.` and `..`, which never leave their directory.
pub fn local_path(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    if rel.is_empty() {
        return p;
    }
    for c in rel.split('/') {
        match decode_component(c) {
            Ok(raw) => p.push(OsStr::from_bytes(&raw)),
            // Never a way up or out, whatever a legacy row holds.
            Err(_) if matches!(c, "" | "." | "..") => p.push("_"),
            Err(_) => p.push(c),
        }
    }
    p
}

/// The raw bytes of the last component of `rel` (decoded), for callers
/// that derive a new name from it.
pub fn last_raw(rel: &str) -> Vec<u8> {
    let last = rel.rsplit('/').next().unwrap_or(rel);
    decode_component(last).unwrap_or_else(|_| last.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(raw: &[u8]) -> String {
        let enc = encode_name(raw).unwrap();
        assert_eq!(decode_component(&enc).unwrap(), raw, "{enc:?}");
        assert_eq!(enc.trim(), enc, "no edge whitespace in {enc:?}");
        assert!(!enc.contains('\r'), "{enc:?}");
        enc
    }

    #[test]
    fn ordinary_names_are_their_own_encoding() {
        for n in [
            "notes.txt",
            "a b",
            "tab\tin",
            "ümlaut",
            ".bashrc",
            "x\u{FFFD}",
        ] {
            assert_eq!(round_trip(n.as_bytes()), n);
        }
    }

    #[test]
    fn edge_whitespace_cr_and_invalid_utf8_use_rclone_substitutes() {
        assert_eq!(round_trip(b"notes.txt "), "notes.txt\u{2420}");
        assert_eq!(round_trip(b" alone.txt"), "\u{2420}alone.txt");
        assert_eq!(round_trip(b"a\rb"), "a\u{240D}b");
        assert_eq!(round_trip(b"a\nb"), "a\u{240A}b");
        assert_eq!(round_trip(b"\tx\n"), "\u{2409}x\u{240A}");
        assert_eq!(round_trip(b"bad\xff\xfe"), "bad\u{201B}FF\u{201B}FE");
        assert_eq!(round_trip(b" "), "\u{2420}");
        assert_eq!(round_trip(b"  "), "\u{2420}\u{2420}");
        assert_eq!(round_trip("x\u{a0}".as_bytes()), "x\u{201B}C2\u{201B}A0");
        assert_eq!(round_trip(b"\x0cx"), "\u{201B}0Cx");
    }

    #[test]
    fn literal_substitutes_are_quoted() {
        assert_eq!(round_trip("\u{2420}x".as_bytes()), "\u{201B}\u{2420}x");
        assert_eq!(round_trip("x\u{2420}".as_bytes()), "x\u{201B}\u{2420}");
        assert_eq!(round_trip("a\u{201B}b".as_bytes()), "a\u{201B}\u{201B}b");
        assert_eq!(round_trip("a\u{201B}41".as_bytes()), "a\u{201B}\u{201B}41");
        assert_eq!(round_trip("a\u{240A}b".as_bytes()), "a\u{201B}\u{240A}b");
        assert_eq!(round_trip("\u{FF0E}".as_bytes()), "\u{201B}\u{FF0E}");
        round_trip("\u{2400}".as_bytes());
        round_trip("\u{FF0F}".as_bytes());
    }

    #[test]
    fn every_short_byte_string_round_trips_or_is_refused() {
        let alphabet: Vec<&[u8]> = vec![
            b" ",
            b"\r",
            b"\n",
            b"\t",
            b"a",
            b"\xff",
            b".",
            "\u{201B}".as_bytes(),
            "\u{2420}".as_bytes(),
            "\u{240D}".as_bytes(),
            "\u{a0}".as_bytes(),
            b"4",
        ];
        let mut names: Vec<Vec<u8>> = vec![vec![]];
        let mut refused = Vec::new();
        for _ in 0..4 {
            let mut next = Vec::new();
            for n in &names {
                for a in &alphabet {
                    let mut m = n.clone();
                    m.extend_from_slice(a);
                    next.push(m);
                }
            }
            for n in &next {
                match encode_name(n) {
                    Ok(enc) => {
                        assert_eq!(decode_component(&enc).unwrap(), *n, "{enc:?}");
                        assert_eq!(enc.trim(), enc);
                    }
                    Err(_) => refused.push(String::from_utf8_lossy(n).into_owned()),
                }
            }
            names = next;
        }
        // Every name of up to four of these pieces has an encoding except
        // the two Linux forbids anyway.
        assert_eq!(refused, [".", ".."]);
    }

    #[test]
    fn non_canonical_keys_are_refused() {
        for k in [
            "notes.txt ",
            "a\nb",
            " x",
            "a\rb",
            "a\u{201B}b",
            "a\u{201B}41",
            "a\u{201B}2F",
            "x\u{201B}00",
            "\u{FF0E}",
            "\u{2400}",
        ] {
            assert!(decode_component(k).is_err(), "{k:?}");
        }
    }

    #[test]
    fn paths_map_to_local_paths() {
        let root = Path::new("/r");
        let rel = rel_of(Path::new("d /f ")).unwrap();
        assert_eq!(rel, "d\u{2420}/f\u{2420}");
        assert_eq!(local_path(root, &rel), Path::new("/r/d /f "));
        assert_eq!(local_path(root, "../x"), Path::new("/r/_/x"));
        assert!(is_canonical(&rel));
        assert!(is_canonical("a/b c/.d"));
        for bad in ["f ", "a//b", "a/./b", "a\rb", "x\u{2420}y/\u{201B}z"] {
            assert!(!is_canonical(bad), "{bad:?}");
        }
    }
}
