//! Records what `coltecd --version` reports besides the crate version: the git
//! commit it was built from and the target triple it was built for.
//!
//! - `COLTEC_GIT_COMMIT`: `git rev-parse --short HEAD`, or the value of the
//!   same variable in the build environment (for builds from a tarball or a
//!   packager that knows the commit), or `unknown` when neither exists.
//! - `COLTEC_BUILD_TARGET`: cargo's `TARGET` (e.g. `x86_64-unknown-linux-gnu`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=COLTEC_GIT_COMMIT");
    let commit = std::env::var("COLTEC_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=COLTEC_GIT_COMMIT={}", commit.trim());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=COLTEC_BUILD_TARGET={target}");
}

/// The short commit of HEAD, and rerun triggers so a new commit is picked up
/// without rebuilding on every `cargo build`.
fn git_commit() -> Option<String> {
    let short = git(&["rev-parse", "--short", "HEAD"])?;
    // HEAD moves (checkout) and the branch it names moves (commit); a ref
    // that lives only in packed-refs is covered by watching that file.
    for path in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", path]));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    Some(short)
}

/// Rerun when `path` changes; only for files that exist (cargo reruns on
/// every build for a missing one).
fn watch(path: Option<String>) {
    if let Some(p) = path.map(PathBuf::from).filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}
