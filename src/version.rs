//! Which build this is (`coltecd --version`, `status --json`), and the one
//! rule for on-disk and remote formats that carry a version number.
//!
//! The commit and target come from `build.rs`, so a user can report exactly
//! which binary runs. The format rule is what makes upgrades safe: a newer
//! coltecd reads every older format it has shipped, while an older coltecd
//! that meets a format newer than it knows refuses with [`FormatTooNew`]
//! (naming the file and what to do) instead of guessing at it.

use serde::{Deserialize, Serialize};

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit the binary was built from, or `unknown`.
pub const COMMIT: &str = env!("COLTEC_GIT_COMMIT");
/// Target triple the binary was built for.
pub const TARGET: &str = env!("COLTEC_BUILD_TARGET");

/// What `coltecd --version` prints after the program name.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("COLTEC_GIT_COMMIT"),
    ", ",
    env!("COLTEC_BUILD_TARGET"),
    ")"
);

/// The build, as it appears in `status --json` under `"build"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub version: String,
    pub commit: String,
    pub target: String,
}

/// This binary's build.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: VERSION.to_string(),
        commit: COMMIT.to_string(),
        target: TARGET.to_string(),
    }
}

/// A file or object written by a newer coltecd, in a format this one does
/// not know: refuse rather than misread it or overwrite it with an older one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} has format {found}, newer than this coltecd {VERSION} understands (up to {supported}): it was written by a newer coltecd; install that version (or newer) and run the command again"
)]
pub struct FormatTooNew {
    /// What was read, for the operator: e.g. `the lease at s3://b/p/.coltec/lease.json`.
    pub what: String,
    pub found: u32,
    pub supported: u32,
}

/// Check a format number read from `what` against the newest one this build
/// writes. Older and equal formats pass (newer code reads older formats).
pub fn check_format(
    what: impl Into<String>,
    found: u32,
    supported: u32,
) -> Result<(), FormatTooNew> {
    if found <= supported {
        return Ok(());
    }
    Err(FormatTooNew {
        what: what.into(),
        found,
        supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_version_names_version_commit_and_target() {
        assert!(LONG.starts_with(VERSION), "{LONG}");
        assert!(LONG.contains(&format!("commit {COMMIT}")), "{LONG}");
        assert!(LONG.contains(TARGET), "{LONG}");
        assert!(!COMMIT.is_empty() && !TARGET.is_empty());
    }

    #[test]
    fn older_and_equal_formats_are_read_newer_ones_refused_with_advice() {
        assert_eq!(check_format("the manifest", 1, 2), Ok(()));
        assert_eq!(check_format("the manifest", 2, 2), Ok(()));
        let e = check_format("the manifest at local:/r/.coltec/manifest.json", 3, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the manifest at local:/r/.coltec/manifest.json has format 3, newer than this coltecd {VERSION} understands (up to 2): it was written by a newer coltecd; install that version (or newer) and run the command again"
            )
        );
    }
}
