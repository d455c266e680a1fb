//! The stop, through the binary: an edit made an instant before SIGTERM is
//! on the remote when the daemon exits (it was probabilistic: the events
//! were still queued when the flush decided there was nothing to do), and
//! the whole stop fits `flush_deadline` even when the remote hangs, with
//! every pre-signal edit on the remote or named in the log.
//!
//! The daemon runs in the foreground (`coltecd run`) so its exit code is
//! the test's to check; SIGTERM is sent straight from the test process
//! (no `kill` child in between) right after the last file operation.

use std::fs::File;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemon::{Daemon, World, eventually, status_json};
use crate::support::lease_proxy::{LeaseProxy, Mode};
use crate::support::s3::{self, S3Server};

/// A foreground `coltecd run`, killed when dropped.
pub(crate) struct Running {
    child: std::process::Child,
    stderr: PathBuf,
}

impl Running {
    /// `coltecd run` for `w` (extra environment from `env`), stderr to a
    /// file (a pipe nobody reads could block the daemon's log).
    pub(crate) fn start(w: &World, env: &[(&str, &str)]) -> Running {
        let stderr = w.path(&format!("run-{}.stderr", unique()));
        let mut c = w.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .arg("run")
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running { child, stderr }
    }

    /// Wait until every target's first pass is done (what `start` calls
    /// ready).
    pub(crate) fn wait_ready(&self, w: &World) {
        eventually("the daemon is ready", || {
            let (_, v) = status_json(w);
            v["state"] == "running"
                && v["source"] == "live"
                && v["targets"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().all(|t| t["last_success_at"].is_u64()))
        });
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// SIGTERM now, from this process.
    pub(crate) fn term(&self) {
        kill(self.pid(), Signal::SIGTERM).unwrap();
    }

    /// Wait for the exit (a hung daemon fails the test after a minute).
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < crate::daemon::EVENTUALLY,
                "the daemon did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Where the `local` remote keeps target `name`'s files.
pub(crate) fn remote_dir(w: &World, name: &str) -> PathBuf {
    w.remote().join("acme/widget/dev-a").join(name)
}

/// Only the stop can push: no debounced pass, no interval scan in the
/// test's lifetime.
pub(crate) fn only_the_stop_pushes(w: &World) {
    let spec = std::fs::read_to_string(w.spec())
        .unwrap()
        .replace("debounce: 1s", "debounce: 10m")
        .replace("interval: 10\n", "interval: 3600\n");
    std::fs::write(w.spec(), spec).unwrap();
}

#[test]
fn edits_made_an_instant_before_sigterm_are_all_on_the_remote() {
    let w = World::new();
    w.write_local_spec(&[("notes", "bidirectional")], "");
    only_the_stop_pushes(&w);
    let _guard = Daemon { world: &w };
    const TRIALS: usize = 5;
    std::fs::write(w.path("notes/edit.txt"), "v0").unwrap();
    for k in 0..TRIALS {
        std::fs::write(w.path(&format!("notes/del-{k}.txt")), "doomed").unwrap();
    }
    let remote = remote_dir(&w, "notes");
    for k in 0..TRIALS {
        let mut d = Running::start(&w, &[]);
        d.wait_ready(&w);
        assert!(remote.join(format!("del-{k}.txt")).exists(), "trial {k}");
        // Modify, delete, create, and at once SIGTERM.
        std::fs::write(w.path("notes/edit.txt"), format!("trial {k}")).unwrap();
        std::fs::remove_file(w.path(&format!("notes/del-{k}.txt"))).unwrap();
        std::fs::write(w.path(&format!("notes/new-{k}.txt")), format!("new {k}")).unwrap();
        d.term();
        let code = d.wait().code();
        // Checked before the next start, whose first pass would push
        // whatever this stop missed.
        let why = || format!("trial {k}: exit {code:?}\n{}", w.log_text());
        assert_eq!(
            std::fs::read_to_string(remote.join("edit.txt")).unwrap(),
            format!("trial {k}"),
            "{}",
            why()
        );
        assert!(!remote.join(format!("del-{k}.txt")).exists(), "{}", why());
        assert_eq!(
            std::fs::read_to_string(remote.join(format!("new-{k}.txt"))).unwrap_or_default(),
            format!("new {k}"),
            "{}",
            why()
        );
        assert_eq!(code, Some(0), "{}", why());
    }
    // A single write, then SIGTERM.
    let mut d = Running::start(&w, &[]);
    d.wait_ready(&w);
    std::fs::write(w.path("notes/single.txt"), "last words").unwrap();
    d.term();
    let code = d.wait().code();
    assert_eq!(
        std::fs::read_to_string(remote.join("single.txt")).unwrap_or_default(),
        "last words",
        "exit {code:?}\n{}",
        w.log_text()
    );
    assert_eq!(code, Some(0));
}

/// An S3 spec for target `notes` (push-only) behind `endpoint`.
pub(crate) fn s3_spec(w: &World, bucket: &str, endpoint: &str, extra: &str, daemon: &str) {
    std::fs::create_dir_all(w.path("notes")).unwrap();
    w.write_spec(
        &format!(
            "  default_remote: moto\n  remotes:\n    moto:\n      type: s3\n      bucket: {bucket}\n      options:\n        endpoint: {endpoint}\n        region: us-east-1\n  sync:\n    - name: notes\n      path: {}\n      direction: push-only\n      interval: 10\n{extra}",
            w.path("notes").display()
        ),
        daemon,
    );
}

pub(crate) const S3_CREDS: [(&str, &str); 2] = [
    ("RCLONE_S3_ACCESS_KEY_ID", s3::ACCESS_KEY),
    ("RCLONE_S3_SECRET_ACCESS_KEY", s3::SECRET_KEY),
];

#[test]
fn the_whole_stop_fits_flush_deadline_when_the_remote_hangs() {
    let w = World::new();
    let bucket = S3Server::Moto.bucket("stop-hang");
    let proxy = LeaseProxy::start(S3Server::Moto.endpoint(), Mode::Pass);
    s3_spec(
        &w,
        &bucket,
        &proxy.endpoint(),
        "",
        "    flush_deadline: 2s\n",
    );
    only_the_stop_pushes(&w);
    let mut d = Running::start(&w, &S3_CREDS);
    d.wait_ready(&w);
    let files = ["notes/a.txt", "notes/sub/b.txt"];
    std::fs::create_dir_all(w.path("notes/sub")).unwrap();
    for f in files {
        std::fs::write(w.path(f), f).unwrap();
    }
    // (The new directory counts as a change too.)
    eventually("the daemon sees both changes", || {
        status_json(&w).1["targets"][0]["pending_files"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    // The remote hangs: every request (renewal, upload, manifest,
    // release) is accepted and never answered.
    proxy.set_mode(Mode::Stall);
    let t0 = Instant::now();
    d.term();
    let code = d.wait().code();
    let took = t0.elapsed();
    let log = w.log_text();
    eprintln!("the stop took {took:?} (flush_deadline 2s)");
    // Before, the stop could take flush 2 s + upload aborts 5 s + manifest
    // 3 s + release 5 s and more; now the budget covers all of it. The
    // slack is generous (a loaded 2-core CI machine; process exit).
    assert!(
        took < Duration::from_secs(2 + 7),
        "the stop took {took:?} with flush_deadline 2s\n{log}"
    );
    assert_eq!(code, Some(6), "{}\n{log}", d.stderr());
    let keys = S3Server::Moto.list_keys(&bucket, "");
    for f in files {
        let rel = f.trim_start_matches("notes/");
        let on_remote = keys.iter().any(|k| k.ends_with(&format!("/notes/{rel}")));
        let named = log
            .lines()
            .any(|l| l.contains("not flushed") && l.contains(&w.path(f).display().to_string()));
        assert!(
            on_remote || named,
            "{f} neither on the remote nor named in the log\n{log}"
        );
    }
    assert!(
        d.stderr().contains("could not be flushed"),
        "{}",
        d.stderr()
    );
}
