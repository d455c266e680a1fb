//! Issue 12 item 6, issue 13 item 12: server and connectivity errors a user
//! can act on, through the binary. Each case asserts its own message (naming
//! the endpoint and bucket), its exit code, that no secret is printed, that
//! the conditional-write advice (`lease: off`) is never given for it, and
//! that it returns without spending the retry budget (no "will retry"
//! warning, or a bounded request count) — never a wall-clock time.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use coltecd::lease::LeaseError;
use coltecd::lease::store::{Prefix, Store};
use coltecd::remote::Problem;
use coltecd::spec::Location;

use crate::support::proxy::Proxy;
use crate::support::s3::{self, ACCESS_KEY, S3Server, SECRET_KEY};
use crate::support::{coltecd_bin, s3_test};

/// A spec with one bidirectional target on an s3 remote `remote` at
/// `endpoint`; `extra` is appended under `persistence` (e.g. `lease: off`)
/// and `options` under the remote's options.
fn write_spec(dir: &Path, endpoint: &str, bucket: &str, options: &str, extra: &str) -> PathBuf {
    let local = dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("a.txt"), b"hello").unwrap();
    let yaml = format!(
        "name: server-errors\n\
         metadata:\n  org: acme\n  project: widget\n  environment: dev-a\n\
         persistence:\n  enabled: true\n  mode: replicated\n  default_remote: remote\n\
         \x20 remotes:\n    remote:\n      type: s3\n      bucket: \"{bucket}\"\n      options:\n\
         \x20       provider: Other\n        endpoint: \"{endpoint}\"\n        region: us-east-1\n{options}\
         \x20 sync:\n    - name: state\n      path: {}\n      remote_path: \"{{org}}/{{project}}/{{env}}/state\"\n      direction: bidirectional\n{extra}",
        local.display()
    );
    let path = dir.join("workspace-spec.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `coltecd <args>` with the test credentials (overridable by `env`), its
/// own state dir, no inherited configuration.
fn coltecd(dir: &Path, spec: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(coltecd_bin());
    s3::with_credentials(&mut c)
        .arg("--config")
        .arg(spec)
        .args(args)
        .env("COLTEC_STATE_DIR", dir.join("state"))
        .env("HOME", dir)
        .env_remove("COLTEC_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What every case shares: exit code, no secret, no lease advice, no retries.
fn assert_actionable(out: &Output, code: i32, expect: &[&str], secrets: &[&str]) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    for e in expect {
        assert!(t.contains(e), "missing {e:?} in:\n{t}");
    }
    for s in secrets.iter().chain([&SECRET_KEY]) {
        assert!(!t.contains(s), "a secret was printed:\n{t}");
    }
    assert!(
        !t.contains("lease: off") && !t.contains("conditional writes"),
        "blamed on conditional writes / advised turning the lease off:\n{t}"
    );
    assert!(
        !t.contains("will retry"),
        "a permanent failure was retried:\n{t}"
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    s3::free_port()
}

/// A listener answering every connection with `reply`; counts connections.
fn answering(reply: &'static [u8]) -> (String, Arc<AtomicU32>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", l.local_addr().unwrap());
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            n2.fetch_add(1, Ordering::SeqCst);
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 65536];
            let _ = c.read(&mut buf);
            let _ = c.write_all(reply);
        }
    });
    (endpoint, n)
}

#[test]
fn closed_port_is_cannot_reach_exit_5_for_sync_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let spec = write_spec(dir.path(), &endpoint, "acme-state", "", "");
    for cmd in ["sync", "start"] {
        let out = coltecd(dir.path(), &spec, &[cmd], &[]);
        assert_actionable(
            &out,
            5,
            &[
                &format!("cannot reach {endpoint}"),
                "bucket 'acme-state'",
                "connection refused",
            ],
            &[],
        );
    }
    // Without the lease, a pass says the same.
    let spec = write_spec(dir.path(), &endpoint, "acme-state", "", "  lease: off\n");
    let out = coltecd(dir.path(), &spec, &["sync"], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(5), "{t}");
    assert!(t.contains(&format!("cannot reach {endpoint}")), "{t}");
    assert!(!t.contains("will retry"), "{t}");
}

/// TLS is rustls on ring, installed by coltecd itself (reqwest is built
/// without a provider): an `https://` endpoint gets a real TLS ClientHello,
/// and a server that answers it with plain HTTP is a clear exit 5, never a
/// panic about a missing crypto provider, and not retried.
#[test]
fn an_https_endpoint_gets_a_tls_handshake_and_a_plain_text_answer_is_cannot_reach_exit_5() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("https://{}", l.local_addr().unwrap());
    let first_bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = first_bytes.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 5];
            if c.read_exact(&mut buf).is_ok() {
                seen.lock().unwrap().push(buf);
            }
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &endpoint, "acme-state", "", "");
    let out = coltecd(dir.path(), &spec, &["sync"], &[]);
    let t = text(&out);
    assert_actionable(
        &out,
        5,
        &[
            &format!("cannot reach {endpoint}"),
            "does not speak TLS",
            "http://",
        ],
        &[],
    );
    assert!(
        !t.contains("panicked") && !t.contains("CryptoProvider"),
        "{t}"
    );
    let hellos = first_bytes.lock().unwrap().clone();
    // A TLS record header: handshake (22), TLS major version 3.
    assert!(
        !hellos.is_empty() && hellos.iter().all(|h| h[0] == 22 && h[1] == 3),
        "no TLS ClientHello seen: {hellos:?}\n{t}"
    );
}

#[test]
fn unresolvable_host_is_cannot_reach_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    // `.invalid` never resolves (RFC 6761).
    let endpoint = "http://coltecd-no-such-host.invalid";
    let spec = write_spec(dir.path(), endpoint, "acme-state", "", "");
    let out = coltecd(dir.path(), &spec, &["sync"], &[]);
    assert_actionable(
        &out,
        5,
        &[&format!("cannot reach {endpoint}"), "does not resolve"],
        &[],
    );
}

#[test]
fn an_endpoint_answering_garbage_or_html_is_not_an_s3_server() {
    for (reply, what) in [
        (
            &b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01garbage\r\n"[..],
            "bytes that are not HTTP",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 26\r\nConnection: close\r\n\r\n<html>Welcome nginx</html>"[..],
            "HTML page",
        ),
        (
            &b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: close\r\n\r\n404 page not found"[..],
            "not S3's XML error",
        ),
        (
            // A static file server or public bucket URL: no S3 API behind it.
            &b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET,HEAD\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
            "it allows only GET,HEAD",
        ),
    ] {
        let (endpoint, connections) = answering(reply);
        let dir = tempfile::tempdir().unwrap();
        let spec = write_spec(dir.path(), &endpoint, "acme-state", "", "");
        let out = coltecd(dir.path(), &spec, &["sync"], &[]);
        assert_actionable(
            &out,
            5,
            &[&format!("{endpoint} (remote 'remote', bucket 'acme-state') is not an S3 server"), what],
            &[],
        );
        // The first request was enough: nothing retried, nothing written.
        assert_eq!(connections.load(Ordering::SeqCst), 1, "{}", text(&out));
    }
}

#[test]
fn a_bucket_name_breaking_the_s3_rules_is_an_invalid_spec() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    for bucket in ["Bad_Bucket", "ab", "192.168.1.2", "-acme"] {
        let spec = write_spec(dir.path(), &endpoint, bucket, "", "");
        for cmd in ["validate", "sync"] {
            let out = coltecd(dir.path(), &spec, &[cmd], &[]);
            assert_actionable(
                &out,
                3,
                &[
                    "persistence.remotes.remote.bucket",
                    "is not a valid S3 bucket name",
                    "3-63 characters of lowercase letters",
                ],
                &[],
            );
        }
    }
}

s3_test! {
    /// A bucket name the server rejects (s3s-fs: `InvalidBucketName`; moto
    /// answers `NoSuchBucket`) is reported as such by the conditional-write
    /// probe, not as a server without conditional writes. The name breaks
    /// the S3 rules, so it can only get here around the spec loader.
    #[tokio::test]
    async fn a_bucket_name_the_server_rejects_is_not_blamed_on_conditional_writes(server) {
        let bucket = "Bad_Bucket";
        let remote = server.remote(bucket);
        let location = Location::S3 {
            bucket: bucket.into(),
            key_prefix: "acme/widget/dev-a/state".into(),
        };
        let store = Store::for_location(&remote, &location).unwrap();
        let prefix = Prefix::of(&location);
        let err = store
            .probe(&remote.name, &prefix, Duration::from_secs(20))
            .await
            .unwrap_err();
        let expected = match server {
            S3Server::S3s => Problem::InvalidBucketName,
            S3Server::Moto => Problem::NoSuchBucket,
        };
        match &err {
            LeaseError::Server(e) => assert_eq!(e.problem, expected, "{err}"),
            other => panic!("not diagnosed: {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("'Bad_Bucket'") && msg.contains(server.endpoint()), "{msg}");
        assert!(!msg.contains("lease: off"), "{msg}");
    }
}

s3_test! {
    /// A missing bucket is named, and coltecd does not create it (s3s-fs
    /// would on the first PUT; the probe looks before it writes).
    #[test]
    fn a_missing_bucket_is_named_and_not_created(server) {
        let dir = tempfile::tempdir().unwrap();
        let bucket = format!("coltecd-missing-{}", std::process::id());
        let spec = write_spec(dir.path(), server.endpoint(), &bucket, "", "");
        for cmd in ["sync", "restore"] {
            let out = coltecd(dir.path(), &spec, &[cmd], &[]);
            assert_actionable(
                &out,
                5,
                &[
                    &format!("bucket '{bucket}' does not exist at {}", server.endpoint()),
                    "coltecd never creates buckets",
                ],
                &[],
            );
        }
        let head = server.request("HEAD", &format!("/{bucket}"), &[], b"");
        assert_eq!(head.status, 404, "the bucket was created");
    }
}

#[test]
fn a_wrong_secret_key_is_a_credentials_error_naming_the_variable() {
    let server = S3Server::S3s;
    let bucket = server.bucket("wrong-secret");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), server.endpoint(), &bucket, "", "");
    let wrong = "this-wrong-secret-must-not-be-printed";
    for cmd in ["sync", "run"] {
        let out = coltecd(
            dir.path(),
            &spec,
            &[cmd],
            &[("RCLONE_S3_SECRET_ACCESS_KEY", wrong)],
        );
        assert_actionable(
            &out,
            5,
            &[
                &format!(
                    "{} rejected the credentials of remote 'remote'",
                    server.endpoint()
                ),
                &format!("bucket '{bucket}'"),
                "SignatureDoesNotMatch",
                "RCLONE_S3_ACCESS_KEY_ID (access key id) and RCLONE_S3_SECRET_ACCESS_KEY (secret access key)",
            ],
            &[wrong, ACCESS_KEY],
        );
    }
}

#[test]
fn a_wrong_access_key_from_spec_fields_names_the_fields_and_variables() {
    let server = S3Server::S3s;
    let bucket = server.bucket("wrong-key");
    let dir = tempfile::tempdir().unwrap();
    let options = "        access_key_id: ${MY_KEY_ID}\n        secret_access_key: ${MY_SECRET}\n";
    let spec = write_spec(dir.path(), server.endpoint(), &bucket, options, "");
    let wrong_key = "AKIAWRONGWRONGWRONG1";
    let out = coltecd(
        dir.path(),
        &spec,
        &["sync"],
        &[("MY_KEY_ID", wrong_key), ("MY_SECRET", SECRET_KEY)],
    );
    assert_actionable(
        &out,
        5,
        &[
            "rejected the credentials of remote 'remote'",
            "persistence.remotes.remote.options.access_key_id (${MY_KEY_ID})",
            "persistence.remotes.remote.options.secret_access_key (${MY_SECRET})",
        ],
        &[wrong_key, ACCESS_KEY],
    );
}

s3_test! {
    /// `503 SlowDown` is retried with backoff: a few of them and the pass
    /// succeeds; a server that never stops answering it is given up on
    /// after the retry budget (7 attempts of the first request).
    #[test]
    fn slow_down_is_retried_within_the_request_budget(server) {
        let bucket = server.bucket("slowdown");
        let proxy = Proxy::start(server.endpoint());
        let dir = tempfile::tempdir().unwrap();
        let spec = write_spec(dir.path(), &proxy.endpoint, &bucket, "", "");

        proxy.fail_next(3);
        let out = coltecd(dir.path(), &spec, &["sync"], &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        assert_eq!(proxy.seen().iter().filter(|s| s.faulted).count(), 3, "{t}");
        assert!(t.contains("will retry"), "{t}");
        assert!(
            server.list_keys(&bucket, "").iter().any(|k| k.ends_with("/state/a.txt")),
            "{t}"
        );

        proxy.reset();
        proxy.fail_next(1000);
        let out = coltecd(dir.path(), &spec, &["sync"], &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(5), "{t}");
        assert!(t.contains("SlowDown"), "{t}");
        assert!(!t.contains("lease: off"), "{t}");
        assert_eq!(proxy.seen().len(), 7, "one request and its 6 retries: {t}");
        proxy.fail_next(0);
    }
}
