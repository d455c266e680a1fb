//! `--only NAME` selection of targets, shared by every command that takes it.

use super::keys::suggest;
use super::model::{Spec, Target};
use crate::error::{ExitStatus, HasExitStatus};

/// `--only` named a target the spec does not define.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{spec}: no sync target named `{name}`{}; the targets are: {}", .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), .known.join(", "))]
pub struct UnknownTarget {
    pub name: String,
    pub suggestion: Option<String>,
    pub known: Vec<String>,
    /// The spec file, for the message.
    pub spec: String,
}

impl HasExitStatus for UnknownTarget {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
}

impl Spec {
    /// The target called `name`.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The targets named in `only` (all targets when it is empty), in the
    /// spec's (priority, name) order, each once. An unknown name is an error
    /// with a suggestion.
    pub fn select(&self, only: &[String]) -> Result<Vec<&Target>, UnknownTarget> {
        if only.is_empty() {
            return Ok(self.targets.iter().collect());
        }
        let known: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        if let Some(bad) = only.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(UnknownTarget {
                name: bad.clone(),
                suggestion: suggest(bad, &known).map(str::to_string),
                known: known.iter().map(|s| s.to_string()).collect(),
                spec: self.path.display().to_string(),
            });
        }
        Ok(self
            .targets
            .iter()
            .filter(|t| only.contains(&t.name))
            .collect())
    }
}
