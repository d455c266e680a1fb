//! The lease store on a local directory: the blocking filesystem side of
//! each primitive. Conditional writes are serialized by an `flock`ed
//! sidecar file (`<name>.lock`): create-if-absent is `link(2)` of a fully
//! written temp file, compare-and-replace is compare then `rename(2)`.
//! Every function blocks; the store calls them from `spawn_blocking`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Prefix;

/// The absolute path of a key.
pub(super) fn path_of(p: &Prefix) -> PathBuf {
    let mut b = PathBuf::from("/");
    for s in &p.0 {
        b.push(s);
    }
    b
}

/// Current content and version, `None` if absent.
pub(super) fn read(path: &Path) -> std::io::Result<Option<(String, Vec<u8>)>> {
    match fs::read(path) {
        Ok(b) => Ok(Some((local_version(&b), b))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Unconditional atomic write (markers, probes).
pub(super) fn put(path: &Path, body: &[u8]) -> std::io::Result<()> {
    ensure_parent(path)?;
    crate::fsutil::write_atomic_mode(path, body, LOCAL_LEASE_MODE)
}

/// Unconditional delete, absent is fine; `locked` takes the sidecar lock
/// first (a lease object, so it never interleaves with a compare-and-rename).
pub(super) fn delete(path: &Path, locked: bool) -> std::io::Result<()> {
    let _lock = if locked {
        Some(SidecarLock::take(path)?)
    } else {
        None
    };
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Names of the `.json` files directly inside `path`.
pub(super) fn list(path: &Path) -> std::io::Result<Vec<String>> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// FNV-1a 64 of the content: stable across processes and versions.
fn local_version(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", bytes.len())
}

/// The exclusive lock on `<file>.lock` next to a lease file.
struct SidecarLock(#[allow(dead_code)] fs::File);

impl SidecarLock {
    fn take(path: &Path) -> std::io::Result<SidecarLock> {
        ensure_parent(path)?;
        let mut name = path.as_os_str().to_os_string();
        name.push(".lock");
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(PathBuf::from(name))?;
        // Held for a few syscalls only. Poll rather than block, so a holder
        // that is stopped mid-operation cannot pin a blocking thread forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(SidecarLock(f)),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the lease lock file stays locked by another process",
                    ));
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

fn ensure_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(p) => fs::create_dir_all(p),
        None => Ok(()),
    }
}

/// Lease objects on a local remote are world-readable like other synced
/// files (0644): `lease show` from another user names the holder.
const LOCAL_LEASE_MODE: u32 = 0o644;

/// Local create-if-absent (`expected == None`) or compare-and-replace.
/// `Ok(None)` = precondition failed.
pub(super) fn conditional(
    path: &Path,
    body: &[u8],
    expected: Option<&str>,
) -> std::io::Result<Option<String>> {
    let _lock = SidecarLock::take(path)?;
    let tmp = crate::fsutil::write_temp(path, body, LOCAL_LEASE_MODE)?;
    let result = (|| {
        match expected {
            None => match fs::hard_link(&tmp, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                Err(e) => return Err(e),
            },
            Some(expected) => {
                let mut current = Vec::new();
                match fs::File::open(path) {
                    Ok(mut f) => {
                        f.read_to_end(&mut current)?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                }
                if local_version(&current) != expected {
                    return Ok(None);
                }
                fs::rename(&tmp, path)?;
            }
        }
        crate::fsutil::sync_parent(path);
        Ok(Some(local_version(body)))
    })();
    // After a link the temp name is a second name; after a rename it is gone.
    let _ = fs::remove_file(&tmp);
    result
}
