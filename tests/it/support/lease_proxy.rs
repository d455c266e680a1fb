//! A small HTTP/1.1 proxy between coltecd (opendal) and moto, for the lease
//! tests, with switchable modes:
//!
//! - [`Mode::Pass`]: forward every request unchanged;
//! - [`Mode::Down`]: "network down": close every connection without an
//!   answer (also requests already in flight);
//! - [`Mode::StripConditional`]: "backend ignores conditional writes": drop
//!   `If-None-Match` / `If-Match` request headers before forwarding (and
//!   re-sign the request, see `sigv4::resign`);
//! - [`Mode::Stall`]: "the remote hangs": accept, never answer (also
//!   requests already in flight), until the mode changes or the proxy stops.
//!
//! In every mode but `StripConditional`, conditional writes (`If-None-Match`
//! / `If-Match`) are forwarded one at a time. moto checks a precondition and
//! then writes without a lock, in a threaded server: two creates of the same
//! key can both pass the check and both succeed when the machine is busy
//! (seen as "two winners" in the race tests). Real S3, R2 and MinIO apply a
//! conditional write atomically; serializing them here gives moto that
//! semantics, so the race tests test the lease protocol, not moto's locking.
//!
//! One request per client connection (the answer carries `Connection:
//! close`), so request framing stays trivial. Loopback only; every read,
//! write and size is bounded; the proxy runs on its own thread and runtime
//! (usable from sync and async tests) and stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    Down = 1,
    StripConditional = 2,
    Stall = 3,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Down,
            2 => Mode::StripConditional,
            3 => Mode::Stall,
            _ => Mode::Pass,
        }
    }
}

struct Shared {
    mode: AtomicU8,
    /// Held from forwarding a conditional write to reading its answer.
    conditional: tokio::sync::Mutex<()>,
    forwarded: AtomicU64,
    upstream: SocketAddr,
}

pub struct LeaseProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl LeaseProxy {
    /// Start a proxy in front of `upstream` (`http://127.0.0.1:port`).
    pub fn start(upstream: &str, mode: Mode) -> LeaseProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream must be http://<loopback ip>:<port>");
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only talks to loopback"
        );
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(mode as u8),
            conditional: tokio::sync::Mutex::new(()),
            forwarded: AtomicU64::new(0),
            upstream,
        });
        let cancel = CancellationToken::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy addr");
        let (sh, c) = (shared.clone(), cancel.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = c.cancelled() => break,
                        Some(_) = conns.join_next(), if !conns.is_empty() => {}
                        acc = listener.accept() => {
                            let Ok((client, _)) = acc else { continue };
                            let (sh, c) = (sh.clone(), c.clone());
                            conns.spawn(async move {
                                tokio::select! {
                                    _ = c.cancelled() => {}
                                    _ = handle(client, &sh) => {}
                                }
                            });
                        }
                    }
                }
                conns.shutdown().await;
            });
        });
        LeaseProxy {
            addr,
            shared,
            cancel,
        }
    }

    /// The endpoint to give opendal instead of moto's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests answered so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for LeaseProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn mode(sh: &Shared) -> Mode {
    Mode::from_u8(sh.mode.load(Ordering::SeqCst))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read until the end of the head; returns (head, bytes after it).
async fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Rewrite a head: drop hop-by-hop headers (and, if asked, the
/// preconditions), then ask for `Connection: close`.
fn rewrite_head(head: &str, strip_conditions: bool) -> String {
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0 {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let hop = matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-connection"
            );
            let cond = strip_conditions && matches!(name.as_str(), "if-none-match" | "if-match");
            if hop || cond {
                continue;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// While the mode is [`Mode::Stall`], hold on (poll every 50 ms).
async fn stall_while(sh: &Shared) {
    while mode(sh) == Mode::Stall {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn handle(mut client: TcpStream, sh: &Shared) -> Option<()> {
    if mode(sh) == Mode::Down {
        return None;
    }
    stall_while(sh).await;
    let (head, mut body) = read_head(&mut client).await?;
    if header_value(&head, "transfer-encoding").is_some() {
        // Not needed by opendal's S3 requests; refuse rather than mis-frame.
        let _ = client
            .write_all(
                b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return None;
    }
    let len: usize = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if len > MAX_BODY {
        return None;
    }
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(64 * 1024)];
        let n = tokio::time::timeout(IO_TIMEOUT, client.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    let m = mode(sh);
    if m == Mode::Down {
        return None;
    }
    let mut req_head = rewrite_head(&head, m == Mode::StripConditional);
    if m == Mode::StripConditional {
        // The preconditions were signed: a signature-checking server must see
        // the stripped request as the client's own, as from a server that
        // simply ignores them.
        req_head = super::sigv4::resign(&req_head, super::s3::SECRET_KEY, super::s3::REGION);
    }
    let conditional = m != Mode::StripConditional
        && (header_value(&head, "if-none-match").is_some()
            || header_value(&head, "if-match").is_some())
        && head.starts_with("PUT ");
    let _one_at_a_time = match conditional {
        true => Some(sh.conditional.lock().await),
        false => None,
    };
    let mut up = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(sh.upstream))
        .await
        .ok()?
        .ok()?;
    tokio::time::timeout(IO_TIMEOUT, async {
        up.write_all(req_head.as_bytes()).await?;
        up.write_all(&body).await
    })
    .await
    .ok()?
    .ok()?;
    let mut resp = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(IO_TIMEOUT, up.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&chunk[..n]);
        if resp.len() > MAX_BODY + MAX_HEAD {
            return None;
        }
    }
    stall_while(sh).await;
    // Cut off mid-request: the request may have reached the server, the
    // answer never reaches the client (the ambiguous case).
    if mode(sh) == Mode::Down {
        return None;
    }
    let end = find(&resp, b"\r\n\r\n")?;
    let resp_head = String::from_utf8_lossy(&resp[..end + 4]).into_owned();
    let out_head = rewrite_head(&resp_head, false);
    tokio::time::timeout(IO_TIMEOUT, async {
        client.write_all(out_head.as_bytes()).await?;
        client.write_all(&resp[end + 4..]).await?;
        client.shutdown().await
    })
    .await
    .ok()?
    .ok()?;
    sh.forwarded.fetch_add(1, Ordering::SeqCst);
    Some(())
}
