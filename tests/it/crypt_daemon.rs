//! Crypt targets through the daemon and through what users read, on both
//! S3 servers: names in the crypt prefix that do not decrypt are reported
//! by `sync`, `restore` and `status` and never touched; the daemon keeps a
//! crypt target readable by stock rclone as files change, and a restart
//! uploads nothing again.
//!
//! Eventual conditions are polled with a generous deadline (no timing
//! assertion); every daemon is killed by a guard whatever happens.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::crypt::{Fx, MARKER, PASSWORD, snapshot, text};
use crate::support::proxy::Proxy;
use crate::support::s3_test;

/// Generous deadline for eventual conditions (a loaded CI machine).
const EVENTUALLY: Duration = Duration::from_secs(90);

/// A raw object that is not a crypt name (not base32hex; no `.bin`).
const GARBAGE: &str = "not-a-crypt-name!";
const GARBAGE_BODY: &[u8] = b"bytes some other tool wrote";

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < EVENTUALLY,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The interop tree with short paths: s3s-fs keeps each object's metadata
/// in a file named after the bucket and the base64 of the whole key, and
/// answers 500 once that name passes 255 bytes (keys of about 170 bytes),
/// which crypt's 26-character-per-segment names reach at depth (real S3
/// allows 1024-byte keys).
/// More than one chunk, empty, exactly one chunk, unicode, a symlink.
fn make_short_tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("d")).unwrap();
    fs::create_dir_all(root.join("ü名")).unwrap();
    fs::write(root.join("s.txt"), format!("hello {MARKER}\n")).unwrap();
    let big: Vec<u8> = format!("{MARKER} ")
        .bytes()
        .cycle()
        .take(3 * 65536 + 4321)
        .collect();
    fs::write(root.join("d/big"), big).unwrap();
    fs::write(root.join("e"), b"").unwrap();
    let exact: Vec<u8> = format!("{MARKER}!").bytes().cycle().take(65536).collect();
    fs::write(root.join("ü名/x"), exact).unwrap();
    std::os::unix::fs::symlink("s.txt", root.join("l")).unwrap();
}

/// Kills a fixture's daemon (by its pidfile) when the test ends.
struct Daemon<'a>(&'a Fx);

impl Daemon<'_> {
    fn pidfile(&self) -> PathBuf {
        self.0.path("state").join("coltecd.pid")
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(self.pidfile()) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
    }
}

fn start(fx: &Fx) -> Daemon<'_> {
    let d = Daemon(fx);
    let o = fx.coltecd(&["start"], Some(PASSWORD));
    assert_eq!(o.status.code(), Some(0), "start: {}", text(&o));
    d
}

fn stop(fx: &Fx) {
    let o = fx.coltecd(&["stop"], Some(PASSWORD));
    assert_eq!(o.status.code(), Some(0), "stop: {}", text(&o));
}

fn status_json(fx: &Fx) -> serde_json::Value {
    let o = fx.coltecd(&["status", "--json"], Some(PASSWORD));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&o)))
}

/// The physical directory of the target (`pfx/encrypted/<ws>/<secrets>/`),
/// read off the key of its manifest.
fn target_dir(fx: &Fx) -> String {
    let keys = fx.server.list_keys(&fx.bucket, "pfx/encrypted/");
    keys.iter()
        .find_map(|k| {
            k.split_once(".coltec/manifest.json")
                .map(|(d, _)| d.to_string())
        })
        .unwrap_or_else(|| panic!("no manifest among {keys:?}"))
}

fn raw_get(fx: &Fx, key: &str) -> (u16, Vec<u8>) {
    let r = fx
        .server
        .request("GET", &format!("/{}/{key}", fx.bucket), &[], b"");
    (r.status, r.body)
}

/// What stock rclone reads from the crypt remote, as a snapshot.
fn rclone_view(fx: &Fx, n: &mut u32) -> Option<Vec<(String, Vec<u8>)>> {
    *n += 1;
    let dir = fx.path(&format!("rclone-view-{n}"));
    let o = fx.rclone(&["copy", "--links", "enc:ws/secrets", dir.to_str().unwrap()]);
    if !o.status.success() {
        return None;
    }
    let _ = fs::create_dir_all(&dir);
    let got = snapshot(&dir);
    let _ = fs::remove_dir_all(&dir);
    Some(got)
}

s3_test! {
    /// #11: an object in the crypt prefix whose name does not decrypt is
    /// named by `sync` (text and JSON), `restore` and the daemon's `status`
    /// (JSON), and stays on the remote byte for byte; nothing appears
    /// locally for it. A warning: the exit status stays 0.
    #[tokio::test(flavor = "multi_thread")]
    async fn undecryptable_names_are_reported_and_never_touched(server) {
        let fx = Fx::on(server, "cu", "standard", true);
        make_short_tree(&fx.path("local"));
        let o = fx.coltecd(&["sync"], Some(PASSWORD));
        assert_eq!(o.status.code(), Some(0), "first sync: {}", text(&o));
        let key = format!("{}{GARBAGE}", target_dir(&fx));
        let target = format!("/{}/{}", fx.bucket, key.replace('!', "%21"));
        let r = fx.server.request("PUT", &target, &[], GARBAGE_BODY);
        assert_eq!(r.status, 200, "put garbage: {}", r.text());
        let before = snapshot(&fx.path("local"));

        // Another tool wrote: only a verifying pass lists (a plain `sync`
        // trusts the manifest nobody else wrote since).
        let o = fx.coltecd(&["sync", "--verify"], Some(PASSWORD));
        assert_eq!(o.status.code(), Some(0), "sync: {}", text(&o));
        let out = text(&o);
        assert!(out.contains(&format!("undecryptable: {GARBAGE}")), "{out}");
        assert!(out.contains("do not decrypt"), "{out}");
        assert!(out.contains("1 undecryptable names left alone"), "{out}");

        // Still listed by the next plain pass: the manifest is not trusted
        // while the remote holds what the pass could not sync.
        let o = fx.coltecd(&["sync", "--json"], Some(PASSWORD));
        assert_eq!(o.status.code(), Some(0), "sync --json: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v[0]["undecryptable"]["count"], 1, "{v}");
        assert_eq!(v[0]["undecryptable"]["first"][0], GARBAGE, "{v}");
        assert_eq!((v[0]["uploaded"].as_u64(), v[0]["downloaded"].as_u64()), (Some(0), Some(0)), "{v}");

        let restored = fx.path("restored");
        let o = fx.coltecd(&["restore", "--to", restored.to_str().unwrap()], Some(PASSWORD));
        assert_eq!(o.status.code(), Some(0), "restore: {}", text(&o));
        assert!(text(&o).contains(&format!("undecryptable: {GARBAGE}")), "{}", text(&o));
        assert_eq!(snapshot(&restored), before);
        assert_eq!(snapshot(&fx.path("local")), before);

        let _d = start(&fx);
        let v = status_json(&fx);
        let t = &v["targets"][0];
        assert_eq!(t["undecryptable"]["count"], 1, "{v}");
        assert_eq!(t["undecryptable"]["first"][0], GARBAGE, "{v}");
        let o = fx.coltecd(&["status"], Some(PASSWORD));
        assert!(String::from_utf8_lossy(&o.stdout).contains("undecryptable: 1"), "{}", text(&o));
        stop(&fx);

        assert_eq!(raw_get(&fx, &key), (200, GARBAGE_BODY.to_vec()), "the object changed");
        assert_eq!(snapshot(&fx.path("local")), before, "something appeared locally");
        let trash: Vec<String> = fx
            .server
            .list_keys(&fx.bucket, "pfx/encrypted/")
            .into_iter()
            .filter(|k| k.contains(".coltec/trash/"))
            .collect();
        assert!(trash.is_empty(), "trashed: {trash:?}");
    }
}

s3_test! {
    /// #11: the daemon keeps a crypt target (standard names, directory
    /// names encrypted) in step with the watched directory as stock rclone
    /// reads it; after a stop, a restart uploads nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn daemon_keeps_a_crypt_target_readable_by_stock_rclone(server) {
        let proxy = Proxy::start(server.endpoint());
        let mut fx = Fx::on(server, "cd", "standard", true);
        fx.endpoint = proxy.endpoint.clone();
        let local = fx.path("local");
        fs::create_dir_all(&local).unwrap();
        fx.daemon_extra = "    debounce: 1s\n".into();
        let mut n = 0;
        {
            let _d = start(&fx);
            make_short_tree(&local);
            let want = snapshot(&local);
            eventually("rclone reads the pushed tree", || rclone_view(&fx, &mut n) == Some(want.clone()));

            fs::write(local.join("s.txt"), format!("changed {MARKER}\n")).unwrap();
            fs::remove_file(local.join("e")).unwrap();
            fs::create_dir_all(local.join("n")).unwrap();
            fs::write(local.join("n/a"), format!("added {MARKER}")).unwrap();
            let want = snapshot(&local);
            eventually("rclone reads the changes", || rclone_view(&fx, &mut n) == Some(want.clone()));
            stop(&fx);
        }
        fx.assert_no_plaintext_in_bucket();

        proxy.reset();
        {
            let _d = start(&fx);
            stop(&fx);
        }
        let seen = proxy.seen();
        assert!(seen.iter().any(|s| s.is_list() || s.method == "GET"), "the proxy saw nothing: {seen:?}");
        let data_writes: Vec<String> = seen
            .into_iter()
            .filter(|s| s.is_write() && !s.target.contains("/.coltec/"))
            .map(|s| format!("{} {}", s.method, s.target))
            .collect();
        assert!(data_writes.is_empty(), "the restart re-uploaded: {data_writes:?}");
        assert_eq!(rclone_view(&fx, &mut n), Some(snapshot(&local)));
    }
}
