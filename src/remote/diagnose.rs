//! What a failed S3 request says about the setup, in words a user can act
//! on: the one place that reads opendal errors (their source chain and the
//! S3 error code) and decides "cannot reach the endpoint", "not an S3
//! server", "credentials rejected", "no such bucket", "bad bucket name".
//!
//! [`ServerError`] is that diagnosis with the remote, bucket and endpoint it
//! concerns, and where the credentials come from (variable or spec field
//! names, never values). The lease and the sync engine both report it, so
//! a connectivity problem is never mistaken for a server that ignores
//! conditional writes, and never answered with advice to turn safety off.

use crate::error::{ExitStatus, HasExitStatus};
use crate::spec::{RemoteKind, RemoteSpec};

use super::transport::{ConnectFailure, NotS3};

/// What went wrong, as far as the user is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No HTTP exchange happened (refused, DNS, timeout, TLS, closed).
    Unreachable(String),
    /// Something answered, but not as an S3 server would.
    NotS3(String),
    /// The server refused the signature or the access key (its code).
    Credentials(String),
    NoSuchBucket,
    InvalidBucketName,
}

impl Problem {
    /// The `Code` of the S3 error answer `e` carries, if any.
    pub fn s3_code(e: &opendal::Error) -> Option<&str> {
        s3_code(e.message())
    }

    /// The diagnosis of `e`, if it is one of the above.
    pub fn of(e: &opendal::Error) -> Option<Problem> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(n) = c.downcast_ref::<NotS3>() {
                return Some(Problem::NotS3(n.what.clone()));
            }
            cur = c.source();
        }
        if let Some(code) = s3_code(e.message()) {
            return match code {
                "SignatureDoesNotMatch"
                | "InvalidAccessKeyId"
                | "NotSignedUp"
                | "InvalidToken"
                | "ExpiredToken"
                | "InvalidSecurity"
                | "TokenRefreshRequired" => Some(Problem::Credentials(code.to_string())),
                "NoSuchBucket" => Some(Problem::NoSuchBucket),
                "InvalidBucketName" => Some(Problem::InvalidBucketName),
                _ => None,
            };
        }
        if e.message() == "operation timeout reached" {
            return Some(Problem::Unreachable(
                ConnectFailure::TimedOut.describe().into(),
            ));
        }
        ConnectFailure::of(e).map(|f| match f {
            ConnectFailure::NotHttp => Problem::NotS3(f.describe().into()),
            _ => Problem::Unreachable(f.describe().into()),
        })
    }
}

/// The `Code` of an S3 error answer, as opendal puts it in the message
/// (`S3Error { code: "NoSuchBucket", ... }`).
fn s3_code(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("S3Error { code: \"")?;
    let code = &rest[..rest.find('"')?];
    (!code.is_empty()).then_some(code)
}

/// A diagnosed failure of a request to an S3 remote.
#[derive(Debug, Clone)]
pub struct ServerError {
    pub problem: Problem,
    pub remote: String,
    pub bucket: String,
    pub endpoint: String,
    /// Where the credentials come from: names only.
    pub credentials_from: String,
}

impl ServerError {
    /// `e`, diagnosed against `remote`, when it is one of [`Problem`]'s cases.
    pub fn diagnose(remote: &RemoteSpec, e: &opendal::Error) -> Option<ServerError> {
        let problem = Problem::of(e)?;
        let mut r = remote;
        while let RemoteKind::Crypt(c) = &r.kind {
            r = c.wrapped.as_deref()?;
        }
        let RemoteKind::S3(s3) = &r.kind else {
            return None;
        };
        Some(ServerError {
            problem,
            remote: r.name.clone(),
            bucket: s3.bucket.clone(),
            endpoint: s3
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS S3 (https://s3.{}.amazonaws.com)", s3.region)),
            credentials_from: s3.credentials_from.clone(),
        })
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (remote, bucket, endpoint) = (&self.remote, &self.bucket, &self.endpoint);
        let endpoint = crate::spec::mask_userinfo(endpoint);
        match &self.problem {
            Problem::Unreachable(why) => write!(
                f,
                "cannot reach {endpoint} (remote '{remote}', bucket '{bucket}'): {why}. \
                 Check the endpoint URL and that the server is up and reachable from this container"
            ),
            Problem::NotS3(what) => write!(
                f,
                "{endpoint} (remote '{remote}', bucket '{bucket}') is not an S3 server: {what}. \
                 Check the endpoint URL (scheme, host and port of the S3 API, not a web console)"
            ),
            Problem::Credentials(code) => write!(
                f,
                "{endpoint} rejected the credentials of remote '{remote}' (bucket '{bucket}'): {code}. \
                 Check the access key id and secret access key, which come from {}",
                self.credentials_from
            ),
            Problem::NoSuchBucket => write!(
                f,
                "bucket '{bucket}' does not exist at {endpoint} (remote '{remote}'). \
                 coltecd never creates buckets: create it (e.g. `rclone mkdir <remote>:{bucket}` \
                 or `aws s3 mb s3://{bucket}`), or fix the bucket name in the spec"
            ),
            Problem::InvalidBucketName => write!(
                f,
                "{endpoint} rejects the bucket name '{bucket}' of remote '{remote}' as invalid (InvalidBucketName). \
                 S3 bucket names are 3-63 characters of lowercase letters, digits, `.` and `-`, \
                 starting and ending with a letter or digit; fix `bucket` in the spec"
            ),
        }
    }
}

impl std::error::Error for ServerError {}

impl HasExitStatus for ServerError {
    fn exit_status(&self) -> ExitStatus {
        match self.problem {
            Problem::InvalidBucketName => ExitStatus::InvalidSpec,
            _ => ExitStatus::Remote,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opendal::{Error, ErrorKind};

    fn s3_error(code: &str) -> Error {
        Error::new(
            ErrorKind::Unexpected,
            format!(
                "S3Error {{ code: \"{code}\", message: \"\", resource: \"\", request_id: \"\" }}"
            ),
        )
    }

    #[test]
    fn s3_codes_are_diagnosed() {
        assert_eq!(
            Problem::of(&s3_error("InvalidBucketName")),
            Some(Problem::InvalidBucketName)
        );
        assert_eq!(
            Problem::of(&s3_error("NoSuchBucket")),
            Some(Problem::NoSuchBucket)
        );
        assert_eq!(
            Problem::of(&s3_error("SignatureDoesNotMatch")),
            Some(Problem::Credentials("SignatureDoesNotMatch".into()))
        );
        assert_eq!(Problem::of(&s3_error("SlowDown")), None);
        assert_eq!(Problem::of(&s3_error("AccessDenied")), None);
        assert_eq!(s3_code("S3Error { code: \"\", message"), None);
        assert_eq!(s3_code("<html>"), None);
    }

    #[test]
    fn a_not_s3_source_is_diagnosed() {
        let e = Error::new(ErrorKind::Unexpected, "not an S3 answer").set_source(NotS3 {
            what: "HTTP 200 with an HTML page".into(),
        });
        assert_eq!(
            Problem::of(&e),
            Some(Problem::NotS3("HTTP 200 with an HTML page".into()))
        );
    }
}
