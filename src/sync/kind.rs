//! The kinds of entry coltecd syncs and the names both sides reserve: a
//! leaf module, so the local walk ([`super::scan`]) and the remote layout
//! ([`super::layout`]) share them without importing each other.

use serde::{Deserialize, Serialize};

/// Name reserved at every sync root (and remote root) for coltecd's own data.
pub const RESERVED: &str = crate::spec::RESERVED_DIR;

/// Suffix of rclone `--links` symlink objects: a local file whose name
/// ends with it could not be told from a symlink on the remote.
pub const LINK_SUFFIX: &str = ".rclonelink";

/// What a synced path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Symlink,
}
