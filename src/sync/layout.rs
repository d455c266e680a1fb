//! How a target is laid out on its remote: how local paths map to object
//! keys and metadata, the per-target manifest's format, object identities,
//! and [`RemoteEntry`], what the remote holds for one path. Pure mapping,
//! no I/O (the full reconcile that LISTs a target is `exec::reconcile`).
//!
//! # Layout on the remote (rclone-compatible)
//!
//! - A file `a/b.txt` is the object `a/b.txt`, one object per file. Names
//!   that a storage layer would alter (edge whitespace, `\r`, bytes that
//!   are not UTF-8) are encoded the way rclone encodes them: see
//!   [`names`], the one place that maps names to keys.
//! - A symlink `a/l` is the object `a/l.rclonelink` whose content is the link
//!   target (what `rclone --links` writes).
//! - S3 objects carry user metadata `mtime` (float epoch seconds with 9
//!   decimals, what rclone writes as `X-Amz-Meta-Mtime`) and `mode` (octal
//!   `st_mode` including the file type, e.g. `100600`, as rclone's
//!   `--metadata` writes it).
//! - `.coltec/` is reserved: `.coltec/manifest.json` (the [`Manifest`]),
//!   `.coltec/manifest.dirty` (see [`DIRTY_KEY`]),
//!   `.coltec/trash/<YYYYmmddTHHMMSSZ>/<key>` (deleted/overwritten objects),
//!   `.coltec/tmp/` (local remotes' atomic-write area) and the lease.
//!
//! To restore or copy a target with rclone itself, add `--links` (symlinks)
//! and `--exclude "/.coltec/**"` (coltecd's control objects).
//!
//! The manifest records, per path, the metadata coltecd stored plus the
//! object's identity (`rid`), so a reconcile needs one LIST and one GET, and
//! a per-object HEAD only for objects the manifest does not know (written
//! by rclone or another tool).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::{Kind, LINK_SUFFIX, RESERVED};
use super::names;
use super::state::BaseEntry;

/// Manifest object key.
pub const MANIFEST_KEY: &str = ".coltec/manifest.json";
/// Present while the manifest does not describe the remote (a writer
/// changed the target and has not rewritten the manifest yet): a host that
/// finds it never trusts the manifest to skip a LIST.
pub const DIRTY_KEY: &str = ".coltec/manifest.dirty";
/// Trash prefix.
pub const TRASH_PREFIX: &str = ".coltec/trash/";

/// What the remote holds for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub kind: Kind,
    pub size: u64,
    pub rid: String,
    /// mtime in ns when known (manifest, rclone metadata, or backend mtime).
    pub mtime_ns: Option<i64>,
    /// Permission bits when known.
    pub mode: Option<u32>,
    /// Link target when known (symlinks).
    pub link: Option<String>,
}

impl RemoteEntry {
    pub fn from_base(b: &BaseEntry) -> RemoteEntry {
        RemoteEntry {
            kind: b.kind,
            size: b.size,
            rid: b.rid.clone(),
            mtime_ns: Some(b.mtime_ns),
            mode: Some(b.mode),
            link: b.link.clone(),
        }
    }
}

/// The object key of a relative path of the given kind. `rel` is in
/// [`names`] form; a symlink's key is the encoding of its name plus
/// `.rclonelink` (what rclone writes), so only its last component is
/// re-encoded.
pub fn key_for(rel: &str, kind: Kind) -> String {
    match kind {
        Kind::File => rel.to_string(),
        Kind::Symlink => {
            let (dir, last) = match rel.rsplit_once('/') {
                Some((d, l)) => (Some(d), l),
                None => (None, rel),
            };
            let linked = names::decode_component(last).ok().and_then(|mut raw| {
                raw.extend_from_slice(LINK_SUFFIX.as_bytes());
                names::encode_name(&raw).ok()
            });
            // Legacy (non-canonical) rels keep the plain suffix.
            let name = linked.unwrap_or_else(|| format!("{last}{LINK_SUFFIX}"));
            match dir {
                Some(d) => format!("{d}/{name}"),
                None => name,
            }
        }
    }
}

/// Why a remote key is refused (a sentence naming the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostileKey(pub &'static str);

/// Map an object key (relative to the target root) to a relative path
/// ([`names`] form) and kind, refusing keys that could escape the sync root
/// or that are not in coltecd's name encoding (one name, one key).
/// `Ok(None)` for reserved keys (`.coltec/...`) and directory markers.
pub fn rel_for_key(key: &str) -> Result<Option<(String, Kind)>, HostileKey> {
    if key.is_empty() || key.ends_with('/') {
        return Ok(None);
    }
    if key.starts_with('/') {
        return Err(HostileKey(
            "absolute key; it would land outside the sync root",
        ));
    }
    if key.contains('\0') {
        return Err(HostileKey("key contains NUL"));
    }
    for comp in key.split('/') {
        match comp {
            "" => {
                return Err(HostileKey(
                    "key contains an empty path component; it would land outside the sync root",
                ));
            }
            "." | ".." => {
                return Err(HostileKey(
                    "key contains '.' or '..' components; it would land outside the sync root",
                ));
            }
            _ => {}
        }
    }
    if key == RESERVED || key.starts_with(".coltec/") {
        return Ok(None);
    }
    let (dir, last) = match key.rsplit_once('/') {
        Some((d, l)) => (Some(d), l),
        None => (None, key),
    };
    if let Some(d) = dir {
        for comp in d.split('/') {
            names::decode_component(comp).map_err(|e| HostileKey(e.0))?;
        }
    }
    let raw = names::decode_component(last).map_err(|e| HostileKey(e.0))?;
    let Some(target) = raw.strip_suffix(LINK_SUFFIX.as_bytes()) else {
        return Ok(Some((key.to_string(), Kind::File)));
    };
    if target.is_empty() {
        return Err(HostileKey("symlink object without a name"));
    }
    let name = names::encode_name(target).map_err(|e| HostileKey(e.0))?;
    let rel = match dir {
        Some(d) => format!("{d}/{name}"),
        None => name,
    };
    Ok(Some((rel, Kind::Symlink)))
}

/// rclone's mtime metadata: float seconds with 9 decimals.
pub fn format_mtime(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    format!("{secs}.{frac:09}")
}

/// Parse rclone's `mtime` metadata (float seconds; also RFC 3339, which
/// rclone's metadata framework accepts).
pub fn parse_mtime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some((secs, frac)) = s.split_once('.') {
        let secs: i64 = secs.parse().ok()?;
        let digits: String = frac.chars().take(9).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let scale = 10i64.pow(9 - digits.len() as u32);
        let frac: i64 = if digits.is_empty() {
            0
        } else {
            digits.parse::<i64>().ok()? * scale
        };
        let ns = if secs < 0 {
            secs.checked_mul(1_000_000_000)?.checked_sub(frac)?
        } else {
            secs.checked_mul(1_000_000_000)?.checked_add(frac)?
        };
        return Some(ns);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1_000_000_000);
    }
    let ts: jiff::Timestamp = s.parse().ok()?;
    i64::try_from(ts.as_nanosecond()).ok()
}

/// rclone's `mode` metadata: octal st_mode including the file type bits.
pub fn format_mode(kind: Kind, mode: u32) -> String {
    let ty = match kind {
        Kind::File => 0o100000,
        Kind::Symlink => 0o120000,
    };
    format!("{:o}", ty | (mode & 0o7777))
}

pub fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim(), 8).ok().map(|m| m & 0o7777)
}

/// Whether local and remote metadata say "same file" for adoption.
/// rclone's float mtime loses precision below ~1 µs, hence the window.
pub fn mtime_close(a: i64, b: i64) -> bool {
    (a - b).abs() < 1_000
}

/// `.coltec/manifest.json`: what coltecd last stored, per relative path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Host that wrote it last (informational).
    #[serde(default)]
    pub writer: String,
    pub files: BTreeMap<String, BaseEntry>,
}

impl Manifest {
    pub const VERSION: u32 = 1;
}

/// A [`Manifest`] to write, borrowing the base it lists (at 100k files a
/// copy would be tens of MiB).
#[derive(Serialize)]
pub struct ManifestRef<'a> {
    pub version: u32,
    pub writer: &'a str,
    pub files: &'a BTreeMap<String, BaseEntry>,
}

/// Object identity when a backend reports no ETag.
pub fn fallback_rid(size: u64, mtime_ns: Option<i64>) -> String {
    format!("{size}:{}", mtime_ns.unwrap_or(0))
}

pub fn system_time_ns(t: std::time::SystemTime) -> Option<i64> {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).ok(),
        Err(e) => i64::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    }
}

pub fn opendal_ns(t: opendal::raw::Timestamp) -> Option<i64> {
    system_time_ns(t.into())
}

/// UTC `YYYYmmddTHHMMSSZ` (conflict copies and trash dirs).
pub fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

pub fn parse_stamp(s: &str) -> Option<jiff::Timestamp> {
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", s).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_manifest_reads_back_as_a_manifest() {
        let mut files = BTreeMap::new();
        files.insert(
            "a/b.txt".to_string(),
            BaseEntry {
                kind: Kind::File,
                size: 3,
                mtime_ns: 7,
                mode: 0o644,
                link: None,
                rid: "\"e\"".into(),
            },
        );
        let json = serde_json::to_vec(&ManifestRef {
            version: Manifest::VERSION,
            writer: "h",
            files: &files,
        })
        .unwrap();
        let m: Manifest = serde_json::from_slice(&json).unwrap();
        assert_eq!((m.version, m.writer.as_str()), (Manifest::VERSION, "h"));
        assert_eq!(m.files, files);
    }

    #[test]
    fn keys_map_and_hostile_keys_are_refused() {
        assert_eq!(
            rel_for_key("a/b.txt").unwrap(),
            Some(("a/b.txt".into(), Kind::File))
        );
        assert_eq!(
            rel_for_key("a/l.rclonelink").unwrap(),
            Some(("a/l".into(), Kind::Symlink))
        );
        assert_eq!(rel_for_key(".coltec/manifest.json").unwrap(), None);
        assert_eq!(rel_for_key("dir/").unwrap(), None);
        for bad in ["/etc/passwd", "a/../../x", "..", "a//b", "a/./b", "a\0b"] {
            assert!(rel_for_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoded_names_map_one_to_one_between_rel_and_key() {
        // A symlink named 'l ' is stored as rclone stores it: 'l .rclonelink'.
        let rel = names::rel_of(std::path::Path::new("d /l ")).unwrap();
        assert_eq!(key_for(&rel, Kind::Symlink), "d\u{2420}/l .rclonelink");
        assert_eq!(
            rel_for_key("d\u{2420}/l .rclonelink").unwrap(),
            Some((rel.clone(), Kind::Symlink))
        );
        assert_eq!(
            rel_for_key(&key_for(&rel, Kind::File)).unwrap(),
            Some((rel, Kind::File))
        );
        // Keys a layer would alter, or in another encoding, are refused.
        for bad in ["notes.txt ", " a", "a\rb", "d /x\u{201B}zz", "x\u{201B}2Fy"] {
            assert!(rel_for_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mtime_and_mode_match_rclone_formats() {
        let ns = 1_700_000_000_123_456_789;
        assert_eq!(format_mtime(ns), "1700000000.123456789");
        assert_eq!(parse_mtime("1700000000.123456789"), Some(ns));
        assert_eq!(parse_mtime("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_mtime("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(
            parse_mtime("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(format_mode(Kind::File, 0o600), "100600");
        assert_eq!(parse_mode("100755"), Some(0o755));
        let t = parse_stamp("20240102T030405Z").unwrap();
        assert_eq!(stamp(t), "20240102T030405Z");
    }
}
