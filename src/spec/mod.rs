//! Loading `workspace-spec.yaml` into a validated [`Spec`].
//! (placeholder: the spec work replaces this)

mod filter;
mod model;

pub use filter::Excludes;
pub use model::*;

use std::path::Path;

/// Load and validate a spec file.
pub fn load(_path: &Path) -> Result<Spec, SpecError> {
    unimplemented!()
}

#[derive(Debug, thiserror::Error)]
#[error("invalid spec")]
pub struct SpecError;

impl crate::error::HasExitStatus for SpecError {
    fn exit_status(&self) -> crate::error::ExitStatus {
        crate::error::ExitStatus::InvalidSpec
    }
}
