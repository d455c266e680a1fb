//! `exclude:` patterns with rclone's semantics, compiled once with globset.
//!
//! Rules (the same as rclone's filter rules, restricted to excludes):
//! - A pattern without a leading `/` matches at any depth (`*.pyc` excludes
//!   `a.pyc` and `x/y/a.pyc`); a leading `/` anchors it at the sync root.
//! - `*` and `?` never cross `/`; `**` does; `{a,b}` and `[a-z]` work.
//! - `dir/**` excludes everything below `dir` *and* the directory `dir`
//!   itself, so a walk (and the watcher) can prune it without descending.
//!   `dir/` (trailing slash) does the same but matches directories only.
//! - Other patterns match files only, as in rclone: `- node_modules` does
//!   not exclude a directory of that name; write `node_modules/**`.
//! - The reserved `.coltec` name at the sync root (lease, manifest, trash,
//!   temp files) is always excluded: sync never treats it as user data.
//!
//! Paths given to [`Excludes::is_excluded`] are relative to the sync root,
//! `/`-separated, without a leading `/`.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The reserved control directory at every sync root.
pub const RESERVED_DIR: &str = ".coltec";

/// Compiled `exclude:` patterns of one target.
#[derive(Debug, Clone)]
pub struct Excludes {
    patterns: Vec<String>,
    /// Globs tested against file paths.
    files: GlobSet,
    /// Globs tested against directory paths.
    dirs: GlobSet,
}

/// A pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    /// Index into the `exclude:` list.
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

impl Default for Excludes {
    fn default() -> Self {
        Excludes {
            patterns: Vec::new(),
            files: GlobSet::empty(),
            dirs: GlobSet::empty(),
        }
    }
}

impl Excludes {
    /// Compile `patterns`; every bad pattern is reported, not just the first.
    pub fn new(patterns: Vec<String>) -> Result<Excludes, Vec<BadPattern>> {
        let mut files = GlobSetBuilder::new();
        let mut dirs = GlobSetBuilder::new();
        let mut bad = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let fail = |reason: String| BadPattern {
                index,
                pattern: pattern.clone(),
                reason,
            };
            let (for_files, for_dirs) = match expand_rule(pattern) {
                Ok(rules) => rules,
                Err(reason) => {
                    bad.push(fail(reason));
                    continue;
                }
            };
            let compiled: Result<Vec<_>, _> = for_files
                .iter()
                .map(|g| compile(g).map(|g| (true, g)))
                .chain(for_dirs.iter().map(|g| compile(g).map(|g| (false, g))))
                .collect();
            match compiled {
                Ok(globs) => {
                    for (is_file_rule, glob) in globs {
                        if is_file_rule {
                            files.add(glob);
                        } else {
                            dirs.add(glob);
                        }
                    }
                }
                Err(e) => bad.push(fail(e.kind().to_string())),
            }
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        match (files.build(), dirs.build()) {
            (Ok(files), Ok(dirs)) => Ok(Excludes {
                files,
                dirs,
                patterns,
            }),
            (Err(e), _) | (_, Err(e)) => Err(blame(&patterns, &e)),
        }
    }

    /// The patterns as written in the spec.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `rel` ('/'-separated, relative to the sync root, no leading '/')
    /// is excluded. For a directory, `true` means: do not descend, do not watch.
    pub fn is_excluded(&self, rel: &str, is_dir: bool) -> bool {
        let rel = rel.trim_start_matches('/');
        if rel == RESERVED_DIR
            || rel
                .strip_prefix(RESERVED_DIR)
                .is_some_and(|r| r.starts_with('/'))
        {
            return true;
        }
        if is_dir {
            self.dirs.is_match(rel)
        } else {
            self.files.is_match(rel)
        }
    }
}

/// The patterns to blame when the set as a whole does not build (each
/// compiled alone above, so this is the regex engine's size limit): the
/// ones that do not build on their own, else all of them, each with its
/// own index.
fn blame(patterns: &[String], e: &globset::Error) -> Vec<BadPattern> {
    let alone = |p: &str| -> bool {
        let Ok((f, d)) = expand_rule(p) else {
            return false;
        };
        let mut b = GlobSetBuilder::new();
        for g in f.iter().chain(&d) {
            match compile(g) {
                Ok(g) => {
                    b.add(g);
                }
                Err(_) => return false,
            }
        }
        b.build().is_ok()
    };
    let bad: Vec<BadPattern> = patterns
        .iter()
        .enumerate()
        .filter(|(_, p)| !alone(p))
        .map(|(index, p)| BadPattern {
            index,
            pattern: p.clone(),
            reason: e.kind().to_string(),
        })
        .collect();
    if !bad.is_empty() {
        return bad;
    }
    patterns
        .iter()
        .enumerate()
        .map(|(index, p)| BadPattern {
            index,
            pattern: p.clone(),
            reason: format!("the patterns together are too complex ({})", e.kind()),
        })
        .collect()
}

/// Turn one rclone pattern into the globs for files and for directories.
fn expand_rule(pattern: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let (anchored, body) = match pattern.strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, pattern),
    };
    if body.is_empty() || body.chars().all(|c| c == '/') {
        return Err("the pattern is empty".into());
    }
    let at = |g: &str| {
        if anchored || g.starts_with("**/") || g == "**" {
            g.to_string()
        } else {
            format!("**/{g}")
        }
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    if let Some(dir) = body.strip_suffix('/') {
        let dir = dir.trim_end_matches('/');
        dirs.push(at(dir));
        dirs.push(at(&format!("{dir}/**")));
        files.push(at(&format!("{dir}/**")));
    } else if body.ends_with("**") {
        files.push(at(body));
        dirs.push(at(body));
        if let Some(dir) = body.strip_suffix("/**") {
            dirs.push(at(dir));
        }
    } else {
        files.push(at(body));
    }
    Ok((files, dirs))
}

fn compile(glob: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes::new(patterns.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn unanchored_dir_glob_matches_at_any_depth_and_prunes_the_dir() {
        let e = ex(&["node_modules/**"]);
        assert!(e.is_excluded("node_modules", true));
        assert!(e.is_excluded("a/node_modules", true));
        assert!(e.is_excluded("a/b/node_modules", true));
        assert!(e.is_excluded("node_modules/x.js", false));
        assert!(e.is_excluded("a/node_modules/x/y.js", false));
        assert!(e.is_excluded("a/node_modules/sub", true));
        // A file that merely has the name is not a directory rule's business.
        assert!(!e.is_excluded("node_modules", false));
        assert!(!e.is_excluded("a/node_modules2", true));
        assert!(!e.is_excluded("a/my_node_modules", true));
        assert!(!e.is_excluded("src/main.rs", false));
    }

    #[test]
    fn anchored_patterns_only_match_at_the_root() {
        let e = ex(&["/build/**", "/notes.txt"]);
        assert!(e.is_excluded("build", true));
        assert!(e.is_excluded("build/out.o", false));
        assert!(!e.is_excluded("src/build", true));
        assert!(!e.is_excluded("src/build/out.o", false));
        assert!(e.is_excluded("notes.txt", false));
        assert!(!e.is_excluded("a/notes.txt", false));
    }

    #[test]
    fn file_globs_match_at_any_depth_and_star_stays_in_one_segment() {
        let e = ex(&["*.pyc", "/top/*.log"]);
        assert!(e.is_excluded("a.pyc", false));
        assert!(e.is_excluded("x/y/a.pyc", false));
        assert!(!e.is_excluded("a.pyc.txt", false));
        assert!(e.is_excluded("top/app.log", false));
        // `*` never crosses `/`.
        assert!(!e.is_excluded("top/sub/app.log", false));
        // File rules do not exclude directories (rclone semantics).
        assert!(!e.is_excluded("weird.pyc", true));
    }

    #[test]
    fn plain_names_match_files_anywhere_but_not_dirs() {
        let e = ex(&[".env", "secret?.txt"]);
        assert!(e.is_excluded(".env", false));
        assert!(e.is_excluded("svc/.env", false));
        assert!(!e.is_excluded(".env", true));
        assert!(e.is_excluded("secret1.txt", false));
        assert!(!e.is_excluded("secret12.txt", false));
    }

    #[test]
    fn trailing_slash_is_directory_only() {
        let e = ex(&["cache/"]);
        assert!(e.is_excluded("cache", true));
        assert!(e.is_excluded("x/cache", true));
        assert!(e.is_excluded("x/cache/blob", false));
        assert!(!e.is_excluded("cache", false));
    }

    #[test]
    fn double_star_inside_and_alternates_and_classes() {
        let e = ex(&["/a/**/tmp/**", "*.{tmp,log}", "[Tt]humbs.db"]);
        assert!(e.is_excluded("a/tmp", true));
        assert!(e.is_excluded("a/x/y/tmp", true));
        assert!(e.is_excluded("a/x/tmp/f", false));
        assert!(!e.is_excluded("b/tmp", true));
        assert!(e.is_excluded("d/x.tmp", false));
        assert!(e.is_excluded("x.log", false));
        assert!(e.is_excluded("Thumbs.db", false));
        assert!(e.is_excluded("q/thumbs.db", false));
    }

    #[test]
    fn everything_pattern() {
        let e = ex(&["**"]);
        assert!(e.is_excluded("a", true));
        assert!(e.is_excluded("a/b/c", false));
    }

    #[test]
    fn reserved_dir_is_always_excluded_at_the_root_only() {
        let e = Excludes::default();
        assert!(e.is_excluded(".coltec", true));
        assert!(e.is_excluded(".coltec/lease", false));
        assert!(e.is_excluded(".coltec/trash/x/y", false));
        assert!(!e.is_excluded(".coltecd", true));
        assert!(!e.is_excluded("sub/.coltec", true));
        assert!(!e.is_excluded("anything", false));
        assert!(e.patterns().is_empty());
    }

    #[test]
    fn incumbent_excludes() {
        let e = ex(&[
            ".git/**",
            "__pycache__/**",
            "*.pyc",
            "node_modules/**",
            ".venv/**",
            "target/**",
        ]);
        assert!(e.is_excluded(".git", true));
        assert!(e.is_excluded("pkg/__pycache__", true));
        assert!(e.is_excluded("pkg/mod.pyc", false));
        assert!(e.is_excluded("target", true));
        assert!(!e.is_excluded("src", true));
        assert!(!e.is_excluded(".gitignore", false));
        assert!(!e.is_excluded("targets", true));
        assert_eq!(e.patterns().len(), 6);
    }

    #[test]
    fn every_bad_pattern_is_reported() {
        let err = Excludes::new(vec![
            "ok/**".into(),
            "[abc".into(),
            "".into(),
            "{a,b".into(),
        ])
        .unwrap_err();
        let idx: Vec<usize> = err.iter().map(|b| b.index).collect();
        assert_eq!(idx, vec![1, 2, 3]);
        assert_eq!(err[0].pattern, "[abc");
        assert!(!err[0].reason.is_empty());
    }
}
