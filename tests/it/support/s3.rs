//! A real S3-protocol server for the integration tests: `moto_server`.
//!
//! `tests/run.sh` (the README's test command) installs moto into a venv under
//! `target/`, starts one server for the whole run and exports its endpoint as
//! `COLTEC_TEST_S3_ENDPOINT`. When that variable is missing (plain
//! `cargo test`), the first test that needs S3 provisions and starts a server
//! itself; it is killed when the test process exits (PR_SET_PDEATHSIG), so
//! no test is ever skipped for want of a server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Credentials the tests use. moto accepts any; these values are also what
/// the no-secret-in-output tests grep for.
pub const ACCESS_KEY: &str = "AKIATESTCOLTECDKEY01";
pub const SECRET_KEY: &str = "coltecd-test-secret-value-never-logged";

/// The endpoint of the shared server, e.g. `http://127.0.0.1:41234`.
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| match std::env::var("COLTEC_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => start_own_server(),
    })
}

/// A fresh, uniquely named bucket on the shared server.
pub fn bucket(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    let name = format!(
        "t-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let name = name.trim_end_matches('-').to_string();
    let (status, body) = http_request("PUT", &format!("/{name}"), &[], b"");
    assert!(
        status == 200,
        "creating bucket {name} failed: {status} {body}"
    );
    name
}

/// Send one raw HTTP/1.1 request to the server (moto does not check
/// signatures), returning status and body. For test setup and inspection.
pub fn http_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let addr = endpoint().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).expect("connect to moto");
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    stream.write_all(body).expect("write body");
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).expect("read response");
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Keys currently in `bucket` (ListObjectsV2 through moto), sorted.
pub fn list_keys(bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/{bucket}?list-type=2&prefix={}", urlencode(prefix));
        if let Some(t) = &token {
            path.push_str(&format!("&continuation-token={}", urlencode(t)));
        }
        let (status, body) = http_request("GET", &path, &[], b"");
        assert_eq!(status, 200, "list {bucket}: {body}");
        for part in body.split("<Key>").skip(1) {
            if let Some((k, _)) = part.split_once("</Key>") {
                keys.push(xml_unescape(k));
            }
        }
        token = body
            .split_once("<NextContinuationToken>")
            .and_then(|(_, rest)| rest.split_once("</NextContinuationToken>"))
            .map(|(t, _)| t.to_string());
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Install moto into `target/moto-venv` (once) and start a server on a free
/// loopback port that dies with this process.
fn start_own_server() -> String {
    let venv = repo_root().join("target/moto-venv");
    let server = venv.join("bin/moto_server");
    if !server.exists() {
        let status = Command::new(repo_root().join("tests/provision-moto.sh"))
            .arg(&venv)
            .status()
            .expect("run tests/provision-moto.sh");
        assert!(status.success(), "installing moto[server] failed");
    }
    let port = free_port();
    // The server must outlive every test thread, so it is spawned from a
    // thread that never ends; PDEATHSIG then fires only when the process exits.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(server);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().expect("start moto_server");
        tx.send(()).ok();
        let _keep = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("moto spawner");
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_for_port(port);
    endpoint
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("moto_server did not start on port {port}");
}
