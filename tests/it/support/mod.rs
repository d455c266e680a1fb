//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub mod lease_proxy;
pub mod proxy;
pub mod s3;

use std::path::PathBuf;

/// Path of the built `coltecd` binary.
pub fn coltecd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coltecd"))
}

/// The repository root (for `config/` examples and fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
