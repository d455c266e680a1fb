//! Production wiring of the seam: the sync engine and the lease.

use std::sync::Arc;

use super::backend::{Backends, SeamError};
use crate::error::ExitStatus;
use crate::spec::Spec;
use crate::state_dir::StateDir;

/// Acquire the leases and open the engine for `spec`.
pub(crate) async fn open(_spec: Arc<Spec>, _state: &StateDir) -> Result<Backends, SeamError> {
    Err(SeamError {
        status: ExitStatus::Failure,
        message: "this build has no sync engine/lease yet (daemon branch before merge)".into(),
    })
}
