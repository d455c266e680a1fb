//! The password check: before a crypt target's first operation, make sure
//! the password and salt fit what is already stored, so a wrong password
//! is reported as such instead of looking like an empty remote (restore
//! would do nothing; a sync would start a second, parallel tree).
//!
//! It walks from the crypt remote's root down the target's encrypted
//! `remote_path`, one LIST per level: if a level holds encrypted names and
//! none of them decrypts, the password or salt is wrong. Then it opens the
//! first block of one object (a file met on the way, or the manifest): a
//! block that fails authentication means the same, also for `off` names.

use futures::TryStreamExt;
use opendal::{ErrorKind, Operator, Result};

use super::{CONTROL, Shared};
use crate::crypt::NameMode;
use crate::crypt::content::{BLOCK, ContentError, HEADER, TAG};

/// Entries looked at per level.
const PER_LEVEL: usize = 1000;

struct Seen {
    name: String,
    dir: bool,
    size: u64,
}

async fn list_level(op: &Operator, dir: &str) -> Result<Vec<Seen>> {
    let mut l = match op.lister_with(dir).await {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    while let Some(e) = l.try_next().await? {
        if e.path() == dir || out.len() >= PER_LEVEL {
            continue;
        }
        let name = e.name().trim_end_matches('/').to_string();
        if name.is_empty() || name == CONTROL {
            continue;
        }
        out.push(Seen {
            name,
            dir: e.metadata().is_dir(),
            size: e.metadata().content_length(),
        });
    }
    Ok(out)
}

/// A file below the target directory to test the contents with: the
/// first object met (the manifest included) that could be ciphertext.
async fn first_file(s: &Shared, dir: &str) -> Result<Option<(String, u64)>> {
    let mut l = match s.probe.lister_with(dir).recursive(true).await {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let manifest = format!("{dir}{CONTROL}/manifest.json");
    let mut looked = 0;
    while let Some(e) = l.try_next().await? {
        looked += 1;
        if looked > PER_LEVEL {
            break;
        }
        let path = e.path();
        let rel = path.strip_prefix(dir).unwrap_or(path);
        let size = e.metadata().content_length();
        if !e.metadata().is_file() || size <= (HEADER + TAG) as u64 {
            continue;
        }
        if path == manifest
            || (!rel.starts_with(CONTROL) && s.cipher.names().decrypt_file(rel).is_ok())
        {
            return Ok(Some((path.to_string(), size)));
        }
    }
    Ok(None)
}

/// `Ok(Err(why))`: the password or salt does not fit; `Err`: could not tell
/// (network), try again later.
pub(super) async fn run(s: &Shared) -> Result<std::result::Result<(), String>> {
    let names = s.cipher.names();
    let mismatch = |what: &str| {
        format!(
            "{what} under crypt remote '{}' do not decrypt with the password in {} and {}: wrong password or salt",
            s.remote,
            s.password_env,
            s.salt_words()
        )
    };
    let mut dir = String::new();
    let mut candidate: Option<(String, u64)> = None;
    // Siblings on our way that all fail to decrypt: either another tree
    // (another password) or ours under a wrong password. Only a target
    // holding something that decrypts tells them apart.
    let mut suspicious = false;
    for level in 0..=s.phys_segments.len() {
        let seen = list_level(&s.probe, &dir).await?;
        let (mut judged, mut fine) = (0usize, 0usize);
        let ours = s.phys_segments.get(level);
        for e in &seen {
            // Our own directory proves nothing by its name: a local remote
            // creates it as soon as the operator is built, the lease too.
            if e.dir && Some(&e.name) == ours {
                continue;
            }
            let encrypted = if e.dir {
                names.encrypts_dirs()
            } else {
                names.mode() != NameMode::Off
            };
            let ok = if e.dir {
                names.decrypt_dir(&e.name).is_ok()
            } else {
                names.decrypt_file(&e.name).is_ok()
            };
            if encrypted {
                judged += 1;
                fine += usize::from(ok);
            }
            if !e.dir && ok && candidate.is_none() && e.size > (HEADER + TAG) as u64 {
                candidate = Some((format!("{dir}{}", e.name), e.size));
            }
        }
        let none_fit = judged > 0 && fine == 0;
        let Some(next) = ours else {
            // The target itself: everything in it must decrypt.
            if none_fit {
                return Ok(Err(mismatch("the names")));
            }
            break;
        };
        suspicious |= none_fit;
        if !seen.iter().any(|e| e.dir && &e.name == next) {
            if suspicious {
                return Ok(Err(mismatch("the names")));
            }
            break;
        }
        dir = format!("{dir}{next}/");
    }
    let at_target = dir.len() == s.phys_segments.iter().map(|x| x.len() + 1).sum::<usize>();
    if candidate.is_none() && at_target {
        candidate = first_file(s, &dir).await?;
    }
    if suspicious && candidate.is_none() {
        return Ok(Err(mismatch("the names")));
    }
    let Some((path, size)) = candidate else {
        return Ok(Ok(()));
    };
    let len = size.min((HEADER + BLOCK) as u64);
    let bytes = s.probe.read_with(&path).range(0..len).await?.to_vec();
    let verdict = s.cipher.decrypter(&bytes, 0).and_then(|mut d| {
        let mut out = Vec::new();
        d.push(&bytes[HEADER..], &mut out)?;
        if len < (HEADER + BLOCK) as u64 {
            d.finish(&mut out)?;
        }
        Ok(())
    });
    Ok(match verdict {
        Ok(()) => Ok(()),
        Err(ContentError::BadBlock) => Err(mismatch("the contents")),
        Err(e) => Err(format!(
            "crypt remote '{}': an object under it is not rclone crypt ciphertext ({e})",
            s.remote
        )),
    })
}
