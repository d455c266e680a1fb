//! Remotes: the one place that turns a spec remote into an opendal
//! [`Operator`], with retries for transient failures.
//!
//! An operator is rooted at a target's location, so the sync engine only
//! ever sees keys relative to the sync root. Retries (exponential backoff
//! with jitter) of S3 requests live here, in opendal's `RetryLayer`, and
//! nowhere else: opendal marks 5xx, 429/SlowDown, resets and timeouts as
//! temporary. S3 requests go through our transport (`transport.rs`), which
//! keeps connect failures no retry can fix (unknown host, refused after a
//! quick second try) and answers that are not S3 out of that budget;
//! `diagnose.rs` turns what is left into a message naming the endpoint and
//! bucket. A local remote gets no retries: a local file system error
//! (`ENAMETOOLONG`, `EACCES`, ...) does not go away by asking again.

use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{OperationContext, Operator, services};

mod credentials;
pub mod crypt;
mod diagnose;
mod gate;
pub mod local_guard;
mod retry_log;
mod transport;
pub use diagnose::{Problem, ServerError};
pub use gate::{Fenced, GateController, WriteGate, gate};
pub use transport::NotS3;

use crate::error::{ExitStatus, HasExitStatus};
use crate::spec::{Location, RemoteKind, RemoteSpec, S3Remote, Target};

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "remote '{remote}' has no credentials: set {vars} (or access_key_id/secret_access_key in the spec's remote options)"
    )]
    MissingCredentials { remote: String, vars: String },
    #[error(
        "remote '{remote}' is of type crypt, which this coltecd cannot sync yet; use an s3 or local remote"
    )]
    CryptUnsupported { remote: String },
    #[error(
        "crypt remote '{remote}' has no password: set {var} (in rclone's obscured form, see `rclone obscure`)"
    )]
    MissingPassword { remote: String, var: String },
    #[error("crypt remote '{remote}' cannot be used: {why}")]
    CryptUnusable { remote: String, why: String },
    #[error("cannot configure remote '{remote}': {source}")]
    Build {
        remote: String,
        source: opendal::Error,
    },
}

impl HasExitStatus for RemoteError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RemoteError::CryptUnsupported { .. } => ExitStatus::InvalidSpec,
            _ => ExitStatus::Remote,
        }
    }
}

/// An operator rooted at `target`'s remote location.
pub fn target_operator(target: &Target) -> Result<Operator, RemoteError> {
    operator_at(&target.remote, &target.location())
}

/// An operator rooted at `location` on `remote`.
pub fn operator_at(remote: &RemoteSpec, location: &Location) -> Result<Operator, RemoteError> {
    let build_err = |source| RemoteError::Build {
        remote: remote.name.clone(),
        source,
    };
    let op = match (&remote.kind, location) {
        (RemoteKind::S3(s3), Location::S3 { key_prefix, .. }) => {
            Operator::new(s3_builder(&remote.name, s3, key_prefix)?)
                .map_err(build_err)?
                .with_context(
                    OperationContext::new().with_http_transport(transport::s3_transport()),
                )
        }
        (RemoteKind::Crypt(c), Location::Crypt { .. }) => {
            return crypt::operator(remote, c, location);
        }
        // Never follows a symlink below the root (see `local_guard`).
        (RemoteKind::Local(_), Location::Local { dir }) => {
            // Timeouts, but no retry layer: see the module doc.
            return Ok(Operator::new(local_guard::GuardedFs::new(dir.clone()))
                .map_err(build_err)?
                .layer(timeouts()));
        }
        _ => {
            return Err(RemoteError::CryptUnsupported {
                remote: remote.name.clone(),
            });
        }
    };
    Ok(op.layer(timeouts()).layer(
        RetryLayer::new()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(6)
            .with_notify(retry_log::log_retry),
    ))
}

fn timeouts() -> TimeoutLayer {
    TimeoutLayer::new()
        .with_timeout(Duration::from_secs(60))
        .with_io_timeout(Duration::from_secs(30))
}

fn s3_builder(name: &str, s3: &S3Remote, key_prefix: &str) -> Result<services::S3, RemoteError> {
    let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) else {
        return Err(RemoteError::MissingCredentials {
            remote: name.to_string(),
            vars: "RCLONE_S3_ACCESS_KEY_ID and RCLONE_S3_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                .into(),
        });
    };
    let mut b = services::S3::default()
        .bucket(&s3.bucket)
        .root(&format!("/{key_prefix}"))
        .region(&s3.region)
        // Not `.access_key_id()`: opendal would log them (see credentials.rs).
        .credential_provider_chain(credentials::SpecCredentials::chain(
            key,
            secret,
            s3.session_token.as_ref(),
        ))
        .disable_config_load()
        .disable_ec2_metadata();
    if let Some(endpoint) = &s3.endpoint {
        b = b.endpoint(endpoint);
    }
    if !s3.path_style {
        b = b.enable_virtual_host_style();
    }
    Ok(b)
}
