//! The HTTP transport of every S3 operator: opendal's reqwest transport
//! with three things added, so that a wrong endpoint fails fast and says
//! what it is instead of spending the whole retry budget.
//!
//! - A connect timeout (10 s): a black-holed address fails like a refused
//!   one instead of waiting for the kernel's SYN retries (~2 min) under
//!   every one of the retry layer's attempts.
//! - Connect failures that no retry can fix are marked persistent, so the
//!   retry layer gives up at once: a host name that does not resolve
//!   (`Name or service not known`, not the temporary `EAI_AGAIN`) and a
//!   name TLS refuses, and a TLS handshake that fails (an `https://`
//!   endpoint that answers in plain text, an untrusted certificate). A refused connection is retried here, quickly
//!   ([`REFUSED_RETRIES`] times, nothing was sent so it is always safe),
//!   then reported as persistent: a server that is restarting comes back
//!   within that, a wrong port never does.
//! - An answer that is not S3 (bytes that are not HTTP, an HTML page, an
//!   error status whose body is not S3's XML) becomes an error whose source
//!   is [`NotS3`], which [`super::diagnose`] turns into "not an S3
//!   server". Such answers to 5xx/429 stay temporary (a load balancer's
//!   error page in front of a real S3 is retried).

use std::time::Duration;

use futures::stream;
use http::{Method, Request, Response, StatusCode};
use opendal::{Buffer, Error, ErrorKind, HttpBody, HttpTransport, HttpTransporter};
use opendal_http_transport_reqwest::ReqwestTransport;

/// Extra attempts of a refused connection, before the retry layer sees it.
pub(super) const REFUSED_RETRIES: u32 = 2;
const REFUSED_DELAY: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The source of an error for an answer that is not from an S3 server.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}")]
pub struct NotS3 {
    pub what: String,
}

/// How a connection attempt failed, read from an error's source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectFailure {
    Refused,
    /// The host name does not resolve (permanently: NXDOMAIN).
    NoSuchHost,
    /// The resolver failed for now (`EAI_AGAIN`).
    DnsTemporary,
    /// TLS refuses the host name (not a valid DNS name).
    InvalidName,
    TimedOut,
    /// The peer answered bytes that are not HTTP.
    NotHttp,
    /// The peer closed or reset the connection before answering.
    Closed,
    /// An `https://` endpoint answered in plain text: it does not speak TLS.
    NotTls,
    /// The server's TLS certificate is not trusted here.
    UntrustedCertificate,
    /// Any other TLS handshake failure (an alert, no common protocol).
    TlsHandshake,
}

impl ConnectFailure {
    pub(crate) fn of(err: &(dyn std::error::Error + 'static)) -> Option<ConnectFailure> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut found = None;
        while let Some(e) = cur {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Some(ConnectFailure::of_tls(tls));
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(tls) = tls_inside(io) {
                    return Some(ConnectFailure::of_tls(tls));
                }
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => return Some(ConnectFailure::Refused),
                    std::io::ErrorKind::TimedOut => found = Some(ConnectFailure::TimedOut),
                    std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe => {
                        found = found.or(Some(ConnectFailure::Closed))
                    }
                    _ => {}
                }
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_parse() || h.is_parse_status() {
                    return Some(ConnectFailure::NotHttp);
                }
                if h.is_incomplete_message() {
                    found = found.or(Some(ConnectFailure::Closed));
                }
            }
            let text = e.to_string();
            if text.contains("Temporary failure in name resolution") {
                return Some(ConnectFailure::DnsTemporary);
            }
            if text.contains("Name or service not known")
                || text.contains("No address associated with hostname")
                || text.contains("nodename nor servname")
            {
                return Some(ConnectFailure::NoSuchHost);
            }
            if text.to_ascii_lowercase().contains("invalid dns name") {
                return Some(ConnectFailure::InvalidName);
            }
            if text.contains("operation timed out") || text.contains("timed out") {
                found = found.or(Some(ConnectFailure::TimedOut));
            }
            cur = e.source();
        }
        found
    }

    fn of_tls(e: &rustls::Error) -> ConnectFailure {
        match e {
            rustls::Error::InvalidMessage(_) => ConnectFailure::NotTls,
            rustls::Error::InvalidCertificate(_) => ConnectFailure::UntrustedCertificate,
            _ => ConnectFailure::TlsHandshake,
        }
    }

    /// No retry can fix it.
    fn is_permanent(self) -> bool {
        matches!(
            self,
            ConnectFailure::NoSuchHost
                | ConnectFailure::InvalidName
                | ConnectFailure::NotHttp
                | ConnectFailure::NotTls
                | ConnectFailure::UntrustedCertificate
                | ConnectFailure::TlsHandshake
        )
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "connection refused (nothing listens on that port)",
            ConnectFailure::NoSuchHost => "the host name does not resolve (DNS)",
            ConnectFailure::DnsTemporary => "the DNS lookup failed for now",
            ConnectFailure::InvalidName => "the host name is not a valid DNS name",
            ConnectFailure::TimedOut => "no answer in time (connection timed out)",
            ConnectFailure::NotHttp => "it answered bytes that are not HTTP",
            ConnectFailure::Closed => "the connection was closed before an answer",
            ConnectFailure::NotTls => {
                "it does not speak TLS (it answered an https:// request in plain text; if the server takes plain HTTP, write the endpoint as http://)"
            }
            ConnectFailure::UntrustedCertificate => {
                "its TLS certificate is not trusted here (self-signed, expired or issued for another name); add its CA to the container's trust store"
            }
            ConnectFailure::TlsHandshake => "the TLS handshake failed",
        }
    }
}

/// The rustls error inside `io`: tokio-rustls reports a failed handshake as
/// an io::Error wrapping it (wrapped again by the connector), and
/// `source()` skips the wrapped error itself, so the payloads are unwrapped
/// here.
fn tls_inside(io: &std::io::Error) -> Option<&rustls::Error> {
    let mut inner = io.get_ref();
    while let Some(e) = inner {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = e.downcast_ref::<std::io::Error>()?.get_ref();
    }
    None
}

/// The transport for an S3 operator.
pub(super) fn s3_transport() -> HttpTransporter {
    // rustls on ring, process-wide (reqwest is built without a provider of
    // its own). `Err` means one is installed already: the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map(ReqwestTransport::new)
        // Building only fails without a TLS backend; opendal's default then.
        .unwrap_or_default();
    HttpTransporter::new(S3Transport { inner: client })
}

struct S3Transport {
    inner: ReqwestTransport,
}

impl HttpTransport for S3Transport {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let method = req.method().clone();
        let listing = req.uri().query().is_some_and(|q| q.contains("list-type"));
        let mut refused = 0;
        loop {
            match self.inner.fetch(req.clone()).await {
                Ok(resp) => return check_answer(resp, &method, listing).await,
                Err(e) => match ConnectFailure::of(&e) {
                    Some(ConnectFailure::Refused) if refused < REFUSED_RETRIES => {
                        refused += 1;
                        tokio::time::sleep(REFUSED_DELAY * refused).await;
                    }
                    Some(ConnectFailure::NotHttp) => {
                        return Err(not_s3("bytes that are not HTTP".into(), false, Some(e)));
                    }
                    Some(f) if f == ConnectFailure::Refused || f.is_permanent() => {
                        return Err(e.set_persistent());
                    }
                    _ => return Err(e),
                },
            }
        }
    }
}

fn not_s3(what: String, temporary: bool, cause: Option<Error>) -> Error {
    let mut e = Error::new(ErrorKind::Unexpected, "not an S3 answer").set_source(NotS3 { what });
    if let Some(c) = cause {
        e = e.with_context("transport", c.message().to_string());
    }
    if temporary {
        e.set_temporary()
    } else {
        e.set_persistent()
    }
}

/// S3 answers errors with an XML `<Error>` body, everything but object
/// data with XML or nothing (HEAD never has a body; an object read may be
/// anything, HTML included). The body is checked, not the content type:
/// some servers (moto) label their empty PUT answers `text/html`.
async fn check_answer(
    resp: Response<HttpBody>,
    method: &Method,
    listing: bool,
) -> opendal::Result<Response<HttpBody>> {
    let status = resp.status();
    let data_read = *method == Method::GET && !listing;
    if *method == Method::HEAD || (data_read && status.is_success()) {
        return Ok(resp);
    }
    let html = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    let (parts, mut body) = resp.into_parts();
    let buf = body.to_buffer().await?;
    let bytes = buf.to_bytes();
    if !(bytes.is_empty() || looks_like_xml(&bytes)) {
        let what = if html || looks_like_html(&bytes) {
            format!("HTTP {status} with an HTML page")
        } else if status.is_success() {
            format!("HTTP {status} with a body that is not S3's XML")
        } else {
            format!("HTTP {status} with a body that is not S3's XML error")
        };
        let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        return Err(not_s3(what, transient, None));
    }
    // S3 explains a refused method in an XML body; a web server that only
    // serves files (a public bucket URL, a CDN) answers 405 with nothing.
    if bytes.is_empty() && status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(http::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .map(|a| format!(" (it allows only {a})"))
            .unwrap_or_default();
        let what = format!("HTTP {status} to a {method} without S3's XML error{allow}");
        return Err(not_s3(what, false, None));
    }
    let len = bytes.len() as u64;
    let body = HttpBody::new(stream::iter([Ok(Buffer::from(bytes))]), Some(len));
    Ok(Response::from_parts(parts, body))
}

fn head_text(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(512)];
    String::from_utf8_lossy(head)
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase()
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let t = head_text(bytes);
    t.starts_with("<!doctype") || t.starts_with("<html")
}

/// An XML document (S3's answers and errors), not an HTML page.
fn looks_like_xml(bytes: &[u8]) -> bool {
    let t = head_text(bytes);
    t.starts_with("<?xml") || (t.starts_with('<') && !looks_like_html(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_are_recognised_and_pages_are_not() {
        assert!(looks_like_xml(
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>"
        ));
        assert!(looks_like_xml(b"  <Error><Code>X</Code></Error>"));
        assert!(looks_like_xml(b"<ListBucketResult></ListBucketResult>"));
        assert!(!looks_like_xml(
            b"<!DOCTYPE html><html><body>404</body></html>"
        ));
        assert!(!looks_like_xml(b"<html><body>404</body></html>"));
        assert!(!looks_like_xml(b"404 page not found"));
    }

    #[test]
    fn connect_failures_are_read_from_the_source_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = Error::new(ErrorKind::Unexpected, "send http request").set_source(refused);
        assert_eq!(ConnectFailure::of(&e), Some(ConnectFailure::Refused));
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        let e = Error::new(ErrorKind::Unexpected, "send").set_source(dns);
        assert_eq!(ConnectFailure::of(&e), Some(ConnectFailure::NoSuchHost));
        let again = std::io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        let e = Error::new(ErrorKind::Unexpected, "send").set_source(again);
        assert_eq!(ConnectFailure::of(&e), Some(ConnectFailure::DnsTemporary));
        assert!(!ConnectFailure::DnsTemporary.is_permanent());
        let other = Error::new(ErrorKind::Unexpected, "SlowDown");
        assert_eq!(ConnectFailure::of(&other), None);
    }

    #[test]
    fn tls_failures_are_found_inside_nested_io_errors_and_are_permanent() {
        let nest = |tls: rustls::Error| {
            let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
            let outer = std::io::Error::other(inner);
            Error::new(ErrorKind::Unexpected, "send http request").set_source(outer)
        };
        let plain = nest(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert_eq!(ConnectFailure::of(&plain), Some(ConnectFailure::NotTls));
        let cert = nest(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            ConnectFailure::of(&cert),
            Some(ConnectFailure::UntrustedCertificate)
        );
        let alert = nest(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        assert_eq!(
            ConnectFailure::of(&alert),
            Some(ConnectFailure::TlsHandshake)
        );
        for f in [
            ConnectFailure::NotTls,
            ConnectFailure::UntrustedCertificate,
            ConnectFailure::TlsHandshake,
        ] {
            assert!(f.is_permanent(), "{f:?}");
        }
    }
}
