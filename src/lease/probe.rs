//! The conditional-write probe: before taking a lease on an S3 remote,
//! prove with a throw-away object under `<prefix>/.coltec/` that the server
//! enforces `If-None-Match: *` and `If-Match` (some S3-compatible servers
//! silently ignore them, and the lease is worthless there).
//!
//! "Does not honour conditional writes … `lease: off`" is said only when
//! the server *answered* in a way that proves it: a conditional write that
//! should have failed succeeded, one that should have succeeded was
//! refused although the object is not our own earlier write, or the server
//! refused the conditional header itself (`NotImplemented`, 501). Anything
//! else (cannot reach the endpoint, not an S3 server, credentials, bucket,
//! timeouts, unknown errors) is reported as what it is, never with advice
//! to turn the lease off.
//!
//! Before any write, one LIST of `<prefix>/.coltec/` checks that the
//! bucket exists and the credentials and endpoint work.
//!
//! Each step is idempotent under retry: every body carries this probe's
//! nonce, so a write that landed but whose answer was lost (the retry then
//! gets 412) is recognised as our own by reading the object back.

use std::time::Duration;

use opendal::ErrorKind;

use super::error::LeaseError;
use super::identity::random_hex;
use super::store::{CondError, Prefix, Store};

impl Store {
    /// Check that the server enforces conditional writes (no-op locally).
    pub async fn probe(
        &self,
        remote: &str,
        prefix: &Prefix,
        timeout: Duration,
    ) -> Result<(), LeaseError> {
        if self.is_local() {
            return Ok(());
        }
        // First a read-only look (one LIST of `.coltec/`): a missing bucket,
        // wrong credentials or an endpoint that is not S3 are reported
        // before anything is written. Some servers create a missing bucket
        // on the first PUT (s3s-fs does), which would hide the mistake.
        // A token that may not list is left to the probe's writes to judge.
        if let Err(e) = self.list(&prefix.child(&[".coltec"]), timeout).await
            && !e.is_permission_denied()
        {
            return Err(e);
        }
        let nonce = random_hex();
        let key = prefix.child(&[".coltec", &format!("probe-{nonce}")]);
        let body =
            |step: u8| format!("coltecd conditional-write probe {step} {nonce}").into_bytes();
        let refuse = |detail: &str| LeaseError::NoConditionalWrites {
            remote: remote.to_string(),
            location: self.display(prefix),
            detail: detail.to_string(),
        };
        let result = async {
            let etag = match self.create(&key, body(1), timeout).await {
                Ok(e) => e,
                Err(CondError::Lost) => match self.own_write(&key, &body(1), timeout).await? {
                    Some(etag) => etag,
                    None => return Err(refuse("a create-if-absent of a new key was refused")),
                },
                Err(CondError::Failed(e)) => return Err(classify(e, &refuse)),
            };
            match self.create(&key, body(2), timeout).await {
                Ok(_) => {
                    return Err(refuse(
                        "a write with `If-None-Match: *` replaced an existing object",
                    ));
                }
                Err(CondError::Lost) => {}
                Err(CondError::Failed(e)) => return Err(classify(e, &refuse)),
            }
            let wrong = format!("\"{}\"", random_hex());
            match self.replace(&key, &wrong, body(3), timeout).await {
                Ok(_) => {
                    return Err(refuse("a write with `If-Match` of a wrong ETag succeeded"));
                }
                Err(CondError::Lost) => {}
                Err(CondError::Failed(e)) => return Err(classify(e, &refuse)),
            }
            match self.replace(&key, &etag, body(4), timeout).await {
                Ok(_) => Ok(()),
                Err(CondError::Lost) => match self.own_write(&key, &body(4), timeout).await? {
                    Some(_) => Ok(()),
                    None => Err(refuse(
                        "a write with `If-Match` of the current ETag was refused (quoted ETags mishandled?)",
                    )),
                },
                Err(CondError::Failed(e)) => Err(classify(e, &refuse)),
            }
        }
        .await;
        // Nothing to clean up when the server could not be used at all, and
        // trying would spend another whole retry budget on it.
        let unusable = matches!(
            result,
            Err(LeaseError::Server(_) | LeaseError::Timeout { .. })
        );
        if !unusable && let Err(e) = self.delete(&key, timeout).await {
            tracing::warn!(error = %e, "cannot delete the conditional-write probe object");
        }
        result
    }

    /// The version of `key` if it holds exactly `body` (our own write).
    async fn own_write(
        &self,
        key: &Prefix,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Option<String>, LeaseError> {
        Ok(self
            .read(key, timeout)
            .await?
            .and_then(|(etag, bytes)| (bytes == body).then_some(etag)))
    }
}

/// A failed conditional write proves the server does not implement the
/// condition only when it refused the header itself; everything else is
/// reported as it is.
fn classify(e: LeaseError, refuse: &dyn Fn(&str) -> LeaseError) -> LeaseError {
    match &e {
        LeaseError::Remote { source, .. } if refuses_the_condition(source) => refuse(&format!(
            "the server refused a conditional write: {}",
            crate::remote::Problem::s3_code(source).unwrap_or("NotImplemented")
        )),
        _ => e,
    }
}

fn refuses_the_condition(e: &opendal::Error) -> bool {
    e.kind() == ErrorKind::Unsupported
        || matches!(
            crate::remote::Problem::s3_code(e),
            Some("NotImplemented" | "InvalidArgument" | "InvalidRequest")
        )
        || e.to_string().contains("status: 501")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote_err(e: opendal::Error) -> LeaseError {
        LeaseError::Remote {
            op: "create",
            location: "s3://b/p".into(),
            source: Box::new(e),
        }
    }

    #[test]
    fn only_a_refused_condition_means_no_conditional_writes() {
        let refuse = |d: &str| LeaseError::NoConditionalWrites {
            remote: "r".into(),
            location: "s3://b/p".into(),
            detail: d.into(),
        };
        let not_implemented = opendal::Error::new(
            ErrorKind::Unexpected,
            "S3Error { code: \"NotImplemented\", message: \"\", resource: \"\", request_id: \"\" }",
        );
        assert!(matches!(
            classify(remote_err(not_implemented), &refuse),
            LeaseError::NoConditionalWrites { .. }
        ));
        // A connection that never happened, or an unknown server error, is
        // not a verdict on conditional writes.
        for e in [
            opendal::Error::new(ErrorKind::Unexpected, "send http request").set_persistent(),
            opendal::Error::new(
                ErrorKind::Unexpected,
                "S3Error { code: \"InternalError\", message: \"\", resource: \"\", request_id: \"\" }",
            ),
        ] {
            assert!(matches!(
                classify(remote_err(e), &refuse),
                LeaseError::Remote { .. }
            ));
        }
    }
}
