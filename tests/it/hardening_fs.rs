//! Issue 13, through the binary: hostile names round-trip or are refused,
//! special files are reported (once per path), and a `local` remote never
//! follows a symlink it did not write, in either direction.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{Daemon, World, eventually, status_json};
use crate::support::s3::{self, S3Server};
use crate::support::{coltecd_bin, s3_test};

/// Any run that takes longer is hanging (e.g. blocked on a FIFO).
const HANG: Duration = Duration::from_secs(120);

/// One workspace: a target `notes` synced bidirectionally to a local
/// directory or an S3 bucket.
struct Ws {
    tmp: tempfile::TempDir,
    bucket: Option<(S3Server, String)>,
}

impl Ws {
    fn local() -> Ws {
        Ws::new(None)
    }

    fn s3(server: S3Server) -> Ws {
        Ws::new(Some((server, server.bucket("hardening"))))
    }

    fn new(bucket: Option<(S3Server, String)>) -> Ws {
        let tmp = tempfile::tempdir().unwrap();
        let remote = match &bucket {
            None => format!(
                "    disk:\n      type: local\n      path_prefix: {}\n",
                tmp.path().join("remote").display()
            ),
            Some((server, b)) => server.yaml_remote("disk", b, server.endpoint()),
        };
        let yaml = format!(
            "name: hardening\nmetadata:\n  org: o\n  project: p\n  environment: e\npersistence:\n  enabled: true\n  default_remote: disk\n  remotes:\n{remote}  sync:\n    - name: notes\n      path: {}\n      remote_path: \"{{org}}/{{project}}/{{env}}/notes\"\n      direction: bidirectional\n      interval: 60\n  daemon:\n    state_dir: {}\n    log_dir: {}\n",
            tmp.path().join("notes").display(),
            tmp.path().join("state").display(),
            tmp.path().join("logs").display(),
        );
        fs::write(tmp.path().join("spec.yaml"), yaml).unwrap();
        fs::create_dir_all(tmp.path().join("notes")).unwrap();
        if bucket.is_none() {
            fs::create_dir_all(tmp.path().join("remote/o/p/e/notes")).unwrap();
        }
        Ws { tmp, bucket }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn root(&self) -> PathBuf {
        self.path("notes")
    }

    /// The local remote's directory of the target.
    fn remote_dir(&self) -> PathBuf {
        self.path("remote/o/p/e/notes")
    }

    /// Run coltecd; a run that does not end within [`HANG`] is killed and
    /// fails the test.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(coltecd_bin());
        cmd.arg("--config")
            .arg(self.path("spec.yaml"))
            .args(args)
            .env_remove("COLTEC_STATE_DIR")
            .env_remove("RUST_LOG")
            .env("RCLONE_S3_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("RCLONE_S3_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > HANG {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!("coltecd {args:?} hangs: {}", text(&o));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    /// Object keys of the target (control objects left out).
    fn keys(&self) -> Vec<String> {
        let prefix = "o/p/e/notes/";
        match &self.bucket {
            Some((server, b)) => server
                .list_keys(b, prefix)
                .into_iter()
                .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
                .filter(|k| !k.starts_with(".coltec/"))
                .collect(),
            None => {
                let mut out = Vec::new();
                for e in fs::read_dir(self.remote_dir()).unwrap().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n != ".coltec" {
                        out.push(n);
                    }
                }
                out.sort();
                out
            }
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// Names Linux allows that some layer used to alter or drop; with
/// `longest`, also a name of NAME_MAX (255) bytes.
fn hostile_names(longest: bool) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = [
        &b"notes.txt "[..],
        b"notes.txt",
        b" alone.txt",
        b"a\rb",
        b"a\nb",
        b"bad-\xff\xfe",
        b"tab\tend\t",
        b"ctl\x01\x1f\x7f",
        "\u{2420}looks-encoded\u{201B}".as_bytes(),
        "nbsp\u{a0}".as_bytes(),
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect();
    if longest {
        names.push(vec![b'x'; 255]);
    }
    names
}

fn round_trip_every_name(ws: &Ws, longest: bool) {
    let names = hostile_names(longest);
    for (i, n) in names.iter().enumerate() {
        fs::write(ws.root().join(OsStr::from_bytes(n)), format!("content {i}")).unwrap();
    }
    let o = ws.run(&["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("uploaded {}", names.len())),
        "{}",
        text(&o)
    );
    // One object per name: none trimmed onto another.
    assert_eq!(ws.keys().len(), names.len(), "{:?}", ws.keys());

    // A full reconcile sees every name as it stored it: nothing to do.
    let o = ws.run(&["sync", "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "notes: up to date"
    );
    for (i, n) in names.iter().enumerate() {
        let p = ws.root().join(OsStr::from_bytes(n));
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("content {i}"),
            "{p:?}"
        );
    }

    // Another machine gets byte-identical names back.
    let copy = ws.path("copy");
    let o = ws.run(&["restore", "--to", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(fs::read_dir(&copy).unwrap().count(), names.len());
    for (i, n) in names.iter().enumerate() {
        let p = copy.join(OsStr::from_bytes(n));
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("content {i}"),
            "{p:?}"
        );
    }
}

s3_test! {
    #[test]
    fn every_linux_name_round_trips_through_s3_and_verify_deletes_nothing(server) {
        let ws = Ws::s3(server);
        // s3s-fs keeps each object in a file with a longer name than the
        // key's last segment, so it cannot store a 255-byte one (its 500
        // says "File name too long"); moto and real S3 can.
        round_trip_every_name(&ws, server != S3Server::S3s);
        // Stored as rclone encodes them: distinct, nothing trimmed.
        let keys = ws.keys();
        for k in [
            "notes.txt\u{2420}",
            "notes.txt",
            "\u{2420}alone.txt",
            "a\u{240D}b",
        ] {
            assert!(keys.contains(&k.to_string()), "{k:?} not in {keys:?}");
        }
    }
}

#[test]
fn every_linux_name_round_trips_through_a_local_remote_and_verify_deletes_nothing() {
    round_trip_every_name(&Ws::local(), true);
}

#[test]
fn a_255_byte_name_is_stored_in_a_local_remote() {
    let ws = Ws::local();
    let name = "n".repeat(255);
    fs::write(ws.root().join(&name), "long").unwrap();
    let o = ws.run(&["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(ws.remote_dir().join(&name)).unwrap(),
        "long"
    );
}

#[test]
fn fifo_and_socket_in_a_target_are_reported_once_each_and_never_block() {
    let ws = Ws::local();
    fs::write(ws.root().join("plain.txt"), "x").unwrap();
    mkfifo(&ws.root().join("pipe"));
    let _sock = std::os::unix::net::UnixListener::bind(ws.root().join("sock")).unwrap();
    let o = ws.run(&["sync", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v[0]["uploaded"], 1, "{v}");
    assert_eq!(v[0]["failed"], serde_json::json!([]), "{v}");
    let skipped = v[0]["skipped"].as_array().unwrap();
    let paths: Vec<&str> = skipped
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["pipe", "sock"], "{v}");
    assert!(
        skipped[0]["reason"].as_str().unwrap().contains("FIFO"),
        "{v}"
    );
    assert!(
        skipped[1]["reason"].as_str().unwrap().contains("socket"),
        "{v}"
    );
    // Text output says so too, once per path.
    let o = ws.run(&["sync"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(err.matches("skipped: \"pipe\"").count(), 1, "{err}");
    assert_eq!(err.matches("skipped: \"sock\"").count(), 1, "{err}");
}

#[test]
fn the_daemon_logs_a_skipped_fifo_once_and_status_shows_it() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    mkfifo(&w.path("notes/pipe"));
    let _guard = Daemon { world: &w };
    let o = w.run(&["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for _ in 0..3 {
        let o = w.run(&["sync", "--now"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let (_, v) = status_json(&w);
    assert_eq!(v["targets"][0]["skipped"][0]["path"], "pipe", "{v}");
    let o = w.run(&["status"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("skipped: 1"),
        "{}",
        text(&o)
    );
    eventually("the log is written", || w.log_text().contains("not synced"));
    let log = w.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("not synced") && l.contains("pipe"))
        .count();
    assert_eq!(lines, 1, "{log}");
}

#[test]
fn a_symlink_in_a_local_remote_is_never_followed_by_sync_or_restore() {
    let ws = Ws::local();
    let secret = ws.path("shadow");
    fs::write(&secret, "root:SECRET-HASH").unwrap();
    fs::create_dir_all(ws.path("secrets")).unwrap();
    fs::write(ws.path("secrets/key"), "SECRET-KEY").unwrap();
    let r = ws.remote_dir();
    fs::write(r.join("good.txt"), "good").unwrap();
    symlink(&secret, r.join("innocent.txt")).unwrap();
    symlink(ws.path("secrets"), r.join("dir")).unwrap();

    let o = ws.run(&["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("innocent.txt") && err.contains("symlink"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(ws.root().join("good.txt")).unwrap(),
        "good"
    );
    assert!(fs::symlink_metadata(ws.root().join("innocent.txt")).is_err());
    assert!(fs::symlink_metadata(ws.root().join("dir")).is_err());

    let copy = ws.path("copy");
    let o = ws.run(&["restore", "--to", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got: Vec<_> = fs::read_dir(&copy)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(got, ["good.txt"], "{}", text(&o));
    // The targets are untouched.
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root:SECRET-HASH");
}

#[test]
fn a_directory_symlink_in_a_local_remote_is_never_written_through() {
    let ws = Ws::local();
    let outside = ws.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim.txt"), "original").unwrap();
    symlink(&outside, ws.remote_dir().join("dir")).unwrap();
    fs::create_dir_all(ws.root().join("dir")).unwrap();
    fs::write(ws.root().join("dir/victim.txt"), "pwned").unwrap();
    fs::write(ws.root().join("dir/new.txt"), "new").unwrap();

    let o = ws.run(&["sync"]);
    // The two files fail (refused), loudly.
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("dir/victim.txt") && err.contains("symlink"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(outside.join("victim.txt")).unwrap(),
        "original"
    );
    let outside_now: Vec<_> = fs::read_dir(&outside).unwrap().flatten().collect();
    assert_eq!(outside_now.len(), 1, "{outside_now:?}");
    assert!(
        fs::symlink_metadata(ws.remote_dir().join("dir"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_fifo_in_a_local_remote_is_skipped_and_restore_does_not_hang() {
    let ws = Ws::local();
    fs::write(ws.remote_dir().join("good.txt"), "good").unwrap();
    mkfifo(&ws.remote_dir().join("pipe"));
    let copy = ws.path("copy");
    let o = ws.run(&["restore", "--to", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pipe") && err.contains("FIFO"), "{err}");
    assert_eq!(fs::read_to_string(copy.join("good.txt")).unwrap(), "good");
    assert!(fs::symlink_metadata(copy.join("pipe")).is_err());
    let o = ws.run(&["sync", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&o)[0]["skipped"][0]["path"], "pipe");
}

#[test]
fn a_file_beside_its_symlink_object_is_a_conflict_that_never_flips() {
    let ws = Ws::local();
    fs::write(ws.root().join("x"), "mine").unwrap();
    fs::write(ws.remote_dir().join("x"), "theirs").unwrap();
    fs::write(ws.remote_dir().join("x.rclonelink"), "elsewhere").unwrap();
    for pass in 0..3 {
        let o = ws.run(&["sync"]);
        assert_eq!(o.status.code(), Some(6), "pass {pass}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("conflict") && err.contains("x.rclonelink"),
            "{err}"
        );
        let md = fs::symlink_metadata(ws.root().join("x")).unwrap();
        assert!(md.is_file(), "pass {pass}");
        assert_eq!(fs::read_to_string(ws.root().join("x")).unwrap(), "mine");
        assert_eq!(
            fs::read_to_string(ws.remote_dir().join("x")).unwrap(),
            "theirs"
        );
        assert_eq!(
            fs::read_to_string(ws.remote_dir().join("x.rclonelink")).unwrap(),
            "elsewhere"
        );
    }
}
