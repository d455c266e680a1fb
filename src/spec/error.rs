//! Spec errors: every problem found in one load, each with the file, the
//! line:column where YAML knows it, the field path, what is wrong and how
//! to fix it.

use std::fmt;
use std::path::PathBuf;

use super::defaults::MAX_DIAGNOSTICS;
use crate::error::{ExitStatus, HasExitStatus};

/// One finding about one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted field path such as `persistence.sync[1].interval`; empty for
    /// problems with the file as a whole.
    pub field: String,
    /// What is wrong. Never contains a secret value.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// 1-based line, when the YAML parser reported one.
    pub line: Option<usize>,
    /// 1-based column, when the YAML parser reported one.
    pub column: Option<usize>,
}

impl Diagnostic {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            field: field.into(),
            message: message.into(),
            hint: None,
            line: None,
            column: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `field: message` (+ ` (hint)`), for one-line warnings.
    pub fn one_line(&self) -> String {
        let mut s = if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        };
        if let Some(h) = &self.hint {
            s.push_str(&format!(" ({h})"));
        }
        s
    }
}

/// The spec could not be loaded. Holds every problem found, not just the first.
#[derive(Debug, Clone)]
pub struct SpecError {
    /// The spec file.
    pub path: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
    /// The file could not be read at all (e.g. it does not exist).
    pub unreadable: bool,
}

impl SpecError {
    pub(crate) fn single(path: PathBuf, d: Diagnostic) -> Self {
        SpecError {
            path,
            diagnostics: vec![d],
            unreadable: false,
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.path.display();
        if self.unreadable {
            // One diagnostic: why the file could not be read.
            if let Some(d) = self.diagnostics.first() {
                write!(f, "{}", d.message)?;
                if let Some(h) = &d.hint {
                    write!(f, "\n  help: {h}")?;
                }
            }
            return Ok(());
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "{file} is not a valid workspace spec ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for d in self.diagnostics.iter().take(MAX_DIAGNOSTICS) {
            write!(f, "\n  {file}")?;
            if let Some(line) = d.line {
                write!(f, ":{line}")?;
                if let Some(col) = d.column {
                    write!(f, ":{col}")?;
                }
            }
            if !d.field.is_empty() {
                write!(f, ": {}", d.field)?;
            }
            write!(f, ": {}", d.message)?;
            if let Some(h) = &d.hint {
                write!(f, "\n    help: {h}")?;
            }
        }
        if n > MAX_DIAGNOSTICS {
            write!(
                f,
                "\n  ... and {} more problems (fix these first)",
                n - MAX_DIAGNOSTICS
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

impl HasExitStatus for SpecError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::InvalidSpec
    }
}
