//! Settling would-be conflicts: when both sides of a conflict (or of a
//! download that would keep the local copy) hold the same content, the
//! pair is adopted instead. Content is compared with the S3 ETag (MD5 of
//! single-part objects) or byte by byte on local remotes; anything else
//! stays a conflict (safe, never lossy).

use futures::{StreamExt, stream};

use super::{Exec, blocking};
use crate::sync::kind::Kind;
use crate::sync::layout::{RemoteEntry, key_for};
use crate::sync::names;
use crate::sync::plan::Action;
use crate::sync::scan::LocalEntry;

impl Exec<'_> {
    /// Turn would-be conflicts whose two sides have the same content (e.g.
    /// a fresh checkout of files the remote already holds, with new mtimes)
    /// into adoptions, `checkers` at a time.
    pub(in crate::sync) async fn settle_equal(&self, actions: Vec<Action>) -> Vec<Action> {
        let checkers = self.ctx.target.checkers.max(1);
        stream::iter(actions)
            .map(|a| self.settle_one(a))
            .buffered(checkers)
            .collect()
            .await
    }

    async fn settle_one(&self, a: Action) -> Action {
        let (rel, l, r) = match &a {
            Action::Conflict { rel, local, remote }
            | Action::Download {
                rel,
                remote,
                local: Some(local),
                keep_local: true,
            } => (rel, local, remote),
            _ => return a,
        };
        if l.kind != Kind::File || r.kind != Kind::File || l.size != r.size {
            return a;
        }
        if self.same_content(rel, l, r).await {
            Action::Adopt {
                rel: rel.clone(),
                local: l.clone(),
                remote: r.clone(),
            }
        } else {
            a
        }
    }

    async fn same_content(&self, rel: &str, l: &LocalEntry, r: &RemoteEntry) -> bool {
        let path = names::local_path(&self.root, rel);
        let expect = l.clone();
        if let Some(dir) = &self.ctx.local_dir {
            let (dir, key) = (dir.clone(), key_for(rel, Kind::File));
            return blocking(move || {
                let same = crate::remote::local_guard::open_file(&dir, &key)
                    .and_then(|other| files_equal(&path, other))
                    .unwrap_or(false);
                same && LocalEntry::read(&path).ok().flatten() == Some(expect)
            })
            .await
            .unwrap_or(false);
        }
        let etag = r.rid.trim_matches('"').to_ascii_lowercase();
        if etag.len() != 32 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        blocking(move || {
            let sum = md5_hex(&path).ok();
            sum.as_deref() == Some(etag.as_str())
                && LocalEntry::read(&path).ok().flatten() == Some(expect)
        })
        .await
        .unwrap_or(false)
    }
}

fn files_equal(a: &std::path::Path, b: std::fs::File) -> std::io::Result<bool> {
    let mut fa = std::fs::File::open(a)?;
    let mut fb = b;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn md5_hex(path: &std::path::Path) -> std::io::Result<String> {
    use md5::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
