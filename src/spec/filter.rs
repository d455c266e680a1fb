//! Exclude patterns with rclone semantics, compiled with globset.
//! (placeholder: the spec work replaces this)

/// Compiled `exclude:` patterns of one target.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<String>,
}

impl Excludes {
    /// The patterns as written in the spec.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
    /// Whether `rel` ('/'-separated, relative to the sync root, no leading '/')
    /// is excluded. For a directory, `true` means: do not descend, do not watch.
    pub fn is_excluded(&self, _rel: &str, _is_dir: bool) -> bool {
        false
    }
}
