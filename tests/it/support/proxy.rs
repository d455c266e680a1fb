//! A small counting and fault-injecting HTTP proxy for S3 tests.
//!
//! Sits between opendal and moto: every request is recorded (method + target)
//! so tests can assert "no LIST / no HEAD / no PUT", and the first N requests
//! can be answered with `503 SlowDown` to exercise retries, or every request
//! a rule picks with `500 InternalError` ([`Proxy::fail_when`]). Each connection
//! carries exactly one request (responses say `Connection: close`), which
//! keeps the framing trivial. [`Proxy::hold_answers_when`] forwards the
//! requests a rule picks but keeps their answers back until
//! [`Proxy::release`] ("the answer arrives late"). [`Proxy::inject`]
//! turns on seeded random faults ([`FaultPlan`]: errors, resets before or
//! after forwarding, stalls, truncated GET bodies), counted by kind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub use super::fault_proxy::{Fault, FaultCounts, FaultPlan};

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, e.g. `/bucket/key?uploadId=...`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// Answered with an injected 503.
    pub faulted: bool,
    /// The server's answer to a POST (e.g. CreateMultipartUpload's
    /// `<UploadId>`), filled in once it arrived; empty for other methods.
    pub reply: String,
}

impl Seen {
    pub fn is_list(&self) -> bool {
        self.method == "GET" && self.target.contains("list-type=")
    }
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
    /// An object write: PUT (single, part or copy) or a multipart create/complete.
    pub fn is_write(&self) -> bool {
        self.method == "PUT" || (self.method == "POST" && !self.target.contains("?delete"))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Picks requests (see where it is used).
type Pick = Mutex<Option<Box<dyn Fn(&Seen) -> bool + Send>>>;

/// Picks the requests answered with `500 InternalError`.
type Rule = Arc<Pick>;

/// Requests whose answers are held back, and whether they are released.
#[derive(Default)]
struct Hold {
    rule: Pick,
    released: Mutex<bool>,
    wake: std::sync::Condvar,
    /// Answers received from upstream and held so far.
    held: AtomicU32,
}

pub struct Proxy {
    pub endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_next: Arc<AtomicU32>,
    rule: Rule,
    hold: Arc<Hold>,
    faults: Faults,
}

type Faults = Arc<Mutex<Option<FaultPlan>>>;

impl Proxy {
    /// Start a proxy in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let upstream = upstream.trim_start_matches("http://").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fail_next = Arc::new(AtomicU32::new(0));
        let rule: Rule = Arc::new(Mutex::new(None));
        let hold = Arc::new(Hold::default());
        let faults: Faults = Arc::new(Mutex::new(None));
        let (s2, f2, r2, h2) = (seen.clone(), fail_next.clone(), rule.clone(), hold.clone());
        let p2 = faults.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (up, s3, f3, r3) = (upstream.clone(), s2.clone(), f2.clone(), r2.clone());
                let (h3, p3) = (h2.clone(), p2.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &up, &s3, &f3, &r3, &h3, &p3);
                });
            }
        });
        Proxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            seen,
            fail_next,
            rule,
            hold,
            faults,
        }
    }

    /// Inject seeded random faults from now on (replacing any plan).
    pub fn inject(&self, plan: FaultPlan) {
        *self.faults.lock().unwrap() = Some(plan);
    }

    /// Stop injecting; what the plan injected.
    pub fn stop_faults(&self) -> FaultCounts {
        let plan = self.faults.lock().unwrap().take();
        plan.map(|p| p.counts()).unwrap_or_default()
    }

    /// Forward the requests `rule` picks (applied upstream) but hold
    /// their answers back until [`Proxy::release`].
    pub fn hold_answers_when(&self, rule: impl Fn(&Seen) -> bool + Send + 'static) {
        *self.hold.released.lock().unwrap() = false;
        *self.hold.rule.lock().unwrap() = Some(Box::new(rule));
    }

    /// How many answers have been applied upstream and held so far.
    pub fn held(&self) -> u32 {
        self.hold.held.load(Ordering::SeqCst)
    }

    /// Deliver every held answer (and stop holding).
    pub fn release(&self) {
        *self.hold.rule.lock().unwrap() = None;
        *self.hold.released.lock().unwrap() = true;
        self.hold.wake.notify_all();
    }

    /// Answer every request `rule` picks with `500 InternalError` (until
    /// [`Proxy::clear_rule`]).
    pub fn fail_when(&self, rule: impl Fn(&Seen) -> bool + Send + 'static) {
        *self.rule.lock().unwrap() = Some(Box::new(rule));
    }

    pub fn clear_rule(&self) {
        *self.rule.lock().unwrap() = None;
    }

    /// Answer the next `n` requests with 503.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.seen.lock().unwrap().clear();
    }
}

fn handle(
    conn: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<Seen>>,
    fail_next: &AtomicU32,
    rule: &Rule,
    hold: &Hold,
    faults: &Faults,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // De-chunk; re-sent upstream with a Content-Length.
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0; n];
            reader.read_exact(&mut chunk)?;
            body.extend(chunk);
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
        headers.push(("Content-Length".into(), body.len().to_string()));
    }
    let fault = fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut this = Seen {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        faulted: fault,
        reply: String::new(),
    };
    let ruled = !fault && rule.lock().unwrap().as_ref().is_some_and(|r| r(&this));
    this.faulted |= ruled;
    let held = hold.rule.lock().unwrap().as_ref().is_some_and(|r| r(&this));
    let (drawn, stall) = match faults.lock().unwrap().as_mut() {
        Some(p) if !fault && !ruled => (p.pick(&method), p.stall),
        _ => (None, std::time::Duration::ZERO),
    };
    this.faulted |= drawn.is_some();
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push(this);
        seen.len() - 1
    };
    let mut client = conn;
    match drawn {
        Some(Fault::ResetBefore) => return Ok(()),
        Some(Fault::Stall) => {
            std::thread::sleep(stall);
            return Ok(());
        }
        _ => {}
    }
    let slow_down = drawn == Some(Fault::SlowDown);
    if fault || ruled || drawn == Some(Fault::Error500) || slow_down {
        let (status, code) = if !slow_down && (ruled || drawn.is_some()) {
            ("500 Internal Server Error", "InternalError")
        } else {
            ("503 Service Unavailable", "SlowDown")
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        );
        write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        client.flush()?;
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in &headers {
        if k.eq_ignore_ascii_case("connection") {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    up.flush()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if method == "POST"
        && let Some(s) = seen.lock().unwrap().get_mut(index)
    {
        s.reply = String::from_utf8_lossy(&resp).into_owned();
    }
    if drawn == Some(Fault::ResetAfter) {
        return Ok(());
    }
    if drawn == Some(Fault::Truncate)
        && resp.starts_with(b"HTTP/1.1 200")
        && let Some(pos) = resp.windows(4).position(|w| w == b"\r\n\r\n")
        && resp.len() > pos + 5
    {
        let half = pos + 4 + (resp.len() - pos - 4) / 2;
        if let Some(p) = faults.lock().unwrap().as_mut() {
            p.applied(Fault::Truncate);
        }
        client.write_all(&resp[..half])?;
        client.flush()?;
        return Ok(());
    }
    if held {
        hold.held.fetch_add(1, Ordering::SeqCst);
        let mut released = hold.released.lock().unwrap();
        while !*released {
            released = hold.wake.wait(released).unwrap();
        }
    }
    // Make sure the client does not reuse this connection.
    if let Some(pos) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&resp[..pos]).to_string();
        let mut out = String::new();
        for (i, line) in head.split("\r\n").enumerate() {
            if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        client.write_all(out.as_bytes())?;
        client.write_all(&resp[pos + 4..])?;
    } else {
        client.write_all(&resp)?;
    }
    client.flush()?;
    Ok(())
}
