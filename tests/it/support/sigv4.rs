//! Raw, SigV4-signed HTTP/1.1 requests for test setup and inspection.
//!
//! The tests create buckets, list keys and plant objects with odd keys
//! without going through coltecd (so a bug in coltecd cannot hide itself).
//! s3s-fs verifies AWS Signature V4, so every such request is signed here:
//! a plain implementation of the published algorithm (the payload hash is
//! the SHA-256 of the body, the canonical URI is the path exactly as sent,
//! as S3 does not normalise it). Any server that checks signatures proving
//! these requests valid is what keeps this module honest.
//!
//! [`resign`] re-signs a request a test proxy altered on purpose (e.g.
//! dropped its `If-None-Match`), so that a signature-checking server sees
//! the altered request as the client's own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Who signs, and where the requests go.
pub struct Signer<'a> {
    /// `host:port` on loopback.
    pub addr: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
}

/// Status, headers (lower-case names) and body of a response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Signer<'_> {
    /// Send `method target` (`target` = path, already percent-encoded as it
    /// should appear on the wire, plus an optional `?query`), signed.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = canonical_query(query);
        let amz_date = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let payload = hex(&Sha256::digest(body));
        let mut signed: Vec<(String, String)> = vec![
            ("host".into(), self.addr.into()),
            ("x-amz-content-sha256".into(), payload.clone()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        for (k, v) in headers {
            signed.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let auth = authorization(
            self.access_key,
            self.secret_key,
            self.region,
            method,
            target,
            &mut signed,
        );

        let wire_target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut req = format!(
            "{method} {wire_target} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\nAuthorization: {auth}\r\n",
            body.len()
        );
        for (k, v) in &signed {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut stream = TcpStream::connect(self.addr)
            .unwrap_or_else(|e| panic!("connect to the S3 server at {}: {e}", self.addr));
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        stream.write_all(req.as_bytes()).expect("write request");
        stream.write_all(body).expect("write body");
        let mut resp = Vec::new();
        stream.read_to_end(&mut resp).expect("read response");
        parse_response(&resp, method == "HEAD")
    }
}

/// The `Authorization` value for a request whose signed headers are
/// `signed` (lower-case names; must include `x-amz-date` and
/// `x-amz-content-sha256`); sorts `signed`.
fn authorization(
    access_key: &str,
    secret_key: &str,
    region: &str,
    method: &str,
    target: &str,
    signed: &mut [(String, String)],
) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let value = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("signed headers lack {name}"))
    };
    let amz_date = value("x-amz-date");
    let payload = value("x-amz-content-sha256");
    signed.sort();
    let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
    let names = names.join(";");
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{names}\n{payload}",
        canonical_path(path),
        canonical_query(query)
    );
    let day = amz_date.get(..8).expect("x-amz-date is YYYYMMDDTHHMMSSZ");
    let scope = format!("{day}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret_key}").as_bytes(), day);
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex(&hmac(&key, &to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={names}, Signature={signature}"
    )
}

/// Re-sign a raw request head (request line, headers, blank line) whose
/// `Authorization` is SigV4: headers that were signed but are no longer
/// present leave the signed set, the signature is computed anew with
/// `secret_key`. A head without SigV4 is returned unchanged.
pub fn resign(head: &str, secret_key: &str, region: &str) -> String {
    let mut lines: Vec<&str> = head.split("\r\n").filter(|l| !l.is_empty()).collect();
    let Some(request_line) = lines.first().copied() else {
        return head.to_string();
    };
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let header = |l: &str| {
        l.split_once(':')
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
    };
    let Some(auth) = lines
        .iter()
        .skip(1)
        .filter_map(|l| header(l))
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v)
        .filter(|v| v.starts_with("AWS4-HMAC-SHA256 "))
    else {
        return head.to_string();
    };
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(name))
            .unwrap_or("")
            .to_string()
    };
    let credential = field("Credential=");
    let access_key = credential.split('/').next().unwrap_or("");
    let wanted: Vec<String> = field("SignedHeaders=")
        .split(';')
        .map(str::to_string)
        .collect();
    let mut signed: Vec<(String, String)> = lines
        .iter()
        .skip(1)
        .filter_map(|l| header(l))
        .filter(|(k, _)| wanted.contains(k))
        .collect();
    let new_auth = authorization(access_key, secret_key, region, method, target, &mut signed);
    lines.retain(|l| header(l).is_none_or(|(k, _)| k != "authorization"));
    let mut out = lines.join("\r\n");
    out.push_str(&format!("\r\nAuthorization: {new_auth}\r\n\r\n"));
    out
}

fn parse_response(resp: &[u8], head: bool) -> Response {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(resp.len());
    let head_text = String::from_utf8_lossy(&resp[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw = resp.get(split + 4..).unwrap_or_default();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if head {
        Vec::new()
    } else if chunked {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&raw[..eol]);
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .expect("chunk size");
        if n == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..start + n]);
        raw = &raw[start + n + 2..];
    }
    out
}

/// The path in SigV4's canonical form for S3: each segment decoded, then
/// encoded once (so `%2E%2E` is signed as `..`, as the server computes it).
fn canonical_path(path: &str) -> String {
    path.split('/')
        .map(|seg| encode(&decode(seg)))
        .collect::<Vec<_>>()
        .join("/")
}

/// The query in SigV4's canonical form: parameters sorted, names and values
/// percent-encoded with only unreserved characters left bare (`a` alone
/// becomes `a=`). The same string is sent on the wire.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encode everything but SigV4's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decode (`+` is a space, as in a query).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
