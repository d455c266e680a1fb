//! The real S3-protocol servers of the integration tests, and the one place
//! that builds an S3 remote for them.
//!
//! Two servers, because one is not enough to trust coltecd on "any S3":
//! - [`S3Server::Moto`]: `moto_server` (Python), accepts any signature,
//!   returns ETags in listings;
//! - [`S3Server::S3s`]: `s3s-fs` 0.14.1 with `../shared/s3s-fs`'s patch
//!   (Rust, files on disk), verifies SigV4, returns no ETag in listings.
//!
//! Every S3 test runs against both: it is written once, as
//! `s3_test! { #[tokio::test] async fn name(server) { .. } }`, and the macro
//! (see [`crate::support::s3_test`]) makes a module `name` with two tests,
//! `name::moto` and `name::s3s`. A parameter of the harness rather than
//! copies of tests; `cargo test ::s3s` runs one server's half.
//!
//! `tests/run.sh` (the README's test command) provisions both, starts each
//! once for the whole run and exports `COLTEC_TEST_S3_ENDPOINT` (moto) and
//! `COLTEC_TEST_S3S_ENDPOINT` (s3s-fs). When a variable is missing (plain
//! `cargo test`), the first test that needs that server provisions and
//! starts it itself; it is killed when the test process exits
//! (PR_SET_PDEATHSIG), so no test is ever skipped for want of a server.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use coltecd::spec::{RemoteKind, RemoteSpec, S3Remote, Secret};

use super::sigv4::{self, Response, Signer};

/// Credentials the tests use: s3s-fs is started with exactly these, moto
/// accepts any. They are also what the no-secret-in-output tests grep for.
pub const ACCESS_KEY: &str = "AKIATESTCOLTECDKEY01";
pub const SECRET_KEY: &str = "coltecd-test-secret-value-never-logged";
pub const REGION: &str = "us-east-1";

/// Which server a test talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Server {
    Moto,
    S3s,
}

impl S3Server {
    /// Short name, also the remote's name in specs the tests build.
    pub fn name(self) -> &'static str {
        match self {
            S3Server::Moto => "moto",
            S3Server::S3s => "s3s",
        }
    }

    /// The server's endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(self) -> &'static str {
        static MOTO: OnceLock<String> = OnceLock::new();
        static S3S: OnceLock<String> = OnceLock::new();
        let (cell, var) = match self {
            S3Server::Moto => (&MOTO, "COLTEC_TEST_S3_ENDPOINT"),
            S3Server::S3s => (&S3S, "COLTEC_TEST_S3S_ENDPOINT"),
        };
        cell.get_or_init(|| match std::env::var(var) {
            Ok(e) if !e.is_empty() => e,
            _ => start_own_server(self),
        })
    }

    /// A fresh, uniquely named bucket (created with a signed PUT).
    pub fn bucket(self, tag: &str) -> String {
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
        let r = self.request("PUT", &format!("/{name}"), &[], b"");
        assert!(
            r.status == 200,
            "creating bucket {name} on {} failed: {} {}",
            self.name(),
            r.status,
            r.text()
        );
        name
    }

    /// One signed request straight to the server (path-style target, already
    /// percent-encoded, optional `?query`). For test setup and inspection.
    pub fn request(
        self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let addr = self.endpoint().trim_start_matches("http://");
        Signer {
            addr,
            access_key: ACCESS_KEY,
            secret_key: SECRET_KEY,
            region: REGION,
        }
        .send(method, target, headers, body)
    }

    /// Keys currently in `bucket` under `prefix` (ListObjectsV2), sorted.
    pub fn list_keys(self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!("/{bucket}?list-type=2&prefix={}", sigv4::encode(prefix));
            if let Some(t) = &token {
                target.push_str(&format!("&continuation-token={}", sigv4::encode(t)));
            }
            // s3s-fs answers 500 when an object disappears while it walks
            // the bucket (a concurrent DELETE, e.g. of a lease probe);
            // coltecd's own listings retry 5xx, and so does this inspection.
            let mut r = self.request("GET", &target, &[], b"");
            for _ in 0..5 {
                if r.status != 500 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                r = self.request("GET", &target, &[], b"");
            }
            let body = r.text();
            assert_eq!(r.status, 200, "list {bucket} on {}: {body}", self.name());
            for part in body.split("<Key>").skip(1) {
                if let Some((k, _)) = part.split_once("</Key>") {
                    keys.push(xml_unescape(k));
                }
            }
            token = body
                .split_once("<NextContinuationToken>")
                .and_then(|(_, rest)| rest.split_once("</NextContinuationToken>"))
                .map(|(t, _)| xml_unescape(t));
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// The S3 remote of `bucket` on this server, as the spec loader would
    /// build it (path-style, test credentials).
    pub fn remote(self, bucket: &str) -> RemoteSpec {
        self.remote_at(bucket, self.endpoint())
    }

    /// The same reached through `endpoint` (a proxy in front of the server).
    pub fn remote_at(self, bucket: &str, endpoint: &str) -> RemoteSpec {
        RemoteSpec {
            name: self.name().into(),
            kind: RemoteKind::S3(S3Remote {
                bucket: bucket.into(),
                path_prefix: String::new(),
                endpoint: Some(endpoint.into()),
                region: REGION.into(),
                provider: None,
                access_key_id: Some(Secret::new(ACCESS_KEY)),
                secret_access_key: Some(Secret::new(SECRET_KEY)),
                session_token: None,
                credentials_from: "the test's constants".into(),
                path_style: true,
            }),
        }
    }

    /// The YAML of an s3 remote `name` for `bucket` at `endpoint` (this
    /// server or a proxy in front of it), indented to sit under
    /// `persistence.remotes`. Credentials come from `RCLONE_S3_*` in the
    /// environment, see [`with_credentials`].
    pub fn yaml_remote(self, name: &str, bucket: &str, endpoint: &str) -> String {
        format!(
            "    {name}:\n      type: s3\n      bucket: {bucket}\n      options:\n        provider: Other\n        endpoint: \"{endpoint}\"\n        region: {REGION}\n"
        )
    }
}

/// Give a `coltecd` command the test credentials.
pub fn with_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("RCLONE_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
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

/// Provision `server` into `target/` (once) and start it on a free loopback
/// port; it dies with this process.
fn start_own_server(server: S3Server) -> String {
    let root = repo_root();
    let port = free_port();
    let mut cmd = match server {
        S3Server::Moto => {
            let venv = root.join("target/moto-venv");
            provision(&root.join("tests/provision-moto.sh"), &venv, "moto[server]");
            let mut c = Command::new(venv.join("bin/moto_server"));
            c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            c
        }
        S3Server::S3s => {
            let dest = root.join("target/s3s-fs");
            provision(&root.join("tests/provision-s3s-fs.sh"), &dest, "s3s-fs");
            let parent = root.join("target/s3s-fs-data");
            remove_dead_data_dirs(&parent);
            let data = parent.join(format!("own-{}", std::process::id()));
            std::fs::create_dir_all(&data).expect("create the s3s-fs data dir");
            let mut c = Command::new(dest.join("bin/s3s-fs"));
            c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&data);
            c
        }
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    spawn_for_the_process_lifetime(cmd, server);
    wait_for_port(port, server);
    format!("http://127.0.0.1:{port}")
}

/// The data dirs of earlier self-started s3s-fs servers whose test process
/// is gone (the server died with it; nothing else removes them).
fn remove_dead_data_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("own-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn provision(script: &Path, dest: &Path, what: &str) {
    let status = Command::new(script)
        .arg(dest)
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        status.success(),
        "provisioning {what} failed ({}); see its output above",
        script.display()
    );
}

/// The server must outlive every test thread, so it is spawned from a
/// thread that never ends; PDEATHSIG then fires only when the process exits.
fn spawn_for_the_process_lifetime(mut cmd: Command, server: S3Server) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", server.name()));
        tx.send(()).ok();
        let _keep = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("server spawner");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16, server: S3Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} did not start on port {port}", server.name());
}
