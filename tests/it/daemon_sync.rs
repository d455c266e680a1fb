//! The daemon with the real sync engine and lease, through the binary:
//! readiness, one daemon per spec, event- and poll-driven pushes, status in
//! every state, graceful flush, crash recovery, logs.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use crate::daemon::{Daemon, World, eventually, status_json, stdout, text};
use crate::support::{s3, s3_test};

/// Where the `local` remote keeps target `name`'s files.
fn remote_dir(w: &World, name: &str) -> PathBuf {
    w.remote().join("acme/widget/dev-a").join(name)
}

fn start(w: &World) -> Output {
    w.run(&["start"])
}

fn alive(pid: u32) -> bool {
    // A zombie thread-group leader may still have threads exiting (and
    // holding files): dead means gone, or a zombie with no other task left.
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    if tasks == 0 {
        return false;
    }
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .starts_with('Z');
    !(zombie && tasks == 1)
}

fn lease_file(w: &World, name: &str) -> PathBuf {
    remote_dir(w, name).join(".coltec/lease.json")
}

fn lease_released(w: &World, name: &str) -> bool {
    match std::fs::read_to_string(lease_file(w, name)) {
        Err(_) => true,
        Ok(body) => body.contains("\"released\""),
    }
}

#[test]
fn start_is_ready_idempotent_and_gives_one_daemon() {
    let w = World::new();
    w.write_local_spec(&[("notes", "bidirectional"), ("ctx", "push-only")], "");
    // Two concurrent starts on one spec: one daemon, both succeed.
    let w = Arc::new(w);
    let _guard = Daemon { world: &w };
    let outs: Vec<Output> = (0..2)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || start(&w))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let pid = w.pid().expect("pidfile written");
    let mut saw_ready = false;
    for o in &outs {
        assert_eq!(o.status.code(), Some(0), "{}", text(o));
        let line = stdout(o);
        assert_eq!(line.lines().count(), 1, "{}", text(o));
        if line.contains("syncing") {
            assert_eq!(
                line.trim(),
                format!("coltecd: syncing 2 targets for acme/widget/dev-a (pid {pid})")
            );
            saw_ready = true;
        } else {
            assert_eq!(
                line.trim(),
                format!("coltecd: already running (pid {pid})"),
                "{}",
                text(o)
            );
        }
    }
    assert!(saw_ready, "no start reported ready");
    // Ready means the lease is held.
    assert!(lease_file(&w, "notes").exists());
    // And a third, later start is a no-op too.
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("coltecd: already running (pid {pid})")
    );
    assert_eq!(w.pid(), Some(pid));
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!alive(pid));
    drop(_guard);
}

#[test]
fn a_write_is_pushed_via_file_events_and_status_is_healthy() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let _guard = Daemon { world: &w };
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::create_dir_all(w.path("notes/deep/er")).unwrap();
    std::fs::write(w.path("notes/deep/er/a.md"), "hello").unwrap();
    let pushed = remote_dir(&w, "notes").join("deep/er/a.md");
    eventually("the write reaches the remote", || {
        std::fs::read_to_string(&pushed).is_ok_and(|s| s == "hello")
    });
    // Healthy: exit 0, text and JSON agree.
    eventually("status settles to healthy", || {
        w.run(&["status"]).status.code() == Some(0)
    });
    let o = w.run(&["status"]);
    let out = stdout(&o);
    assert!(out.contains("running (pid"), "{out}");
    assert!(out.contains("healthy"), "{out}");
    assert!(out.contains("synced"), "{out}");
    assert!(out.contains("watch: events"), "{out}");
    let (code, v) = status_json(&w);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["state"], "running");
    assert_eq!(v["source"], "live");
    assert_eq!(v["health"], "healthy");
    assert_eq!(v["leases"]["writes_allowed"], true);
    assert_eq!(v["targets"][0]["watch"]["mode"], "events");
    assert!(v["targets"][0]["last_success_at"].is_u64(), "{v}");
    assert!(
        v["uptime_secs"].is_null() || v["started_at"].is_u64(),
        "{v}"
    );
    // The daemon defers rewriting the manifest (a listing of every file);
    // until it does, the dirty marker says the manifest is behind.
    let coltec = remote_dir(&w, "notes").join(".coltec");
    let manifest = || std::fs::read_to_string(coltec.join("manifest.json")).unwrap_or_default();
    assert!(coltec.join("manifest.dirty").exists());
    assert!(!manifest().contains("deep/er/a.md"), "{}", manifest());
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Stopping wrote it.
    assert!(manifest().contains("deep/er/a.md"), "{}", manifest());
    assert!(!coltec.join("manifest.dirty").exists());
    // Stopped: the last status, marked not running; the lease is released.
    let o = w.run(&["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        stdout(&o).contains("not running (last known state"),
        "{}",
        text(&o)
    );
    let (code, v) = status_json(&w);
    assert_eq!(code, 3);
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["source"], "file");
    assert!(lease_released(&w, "notes"));
}

#[test]
fn with_watch_poll_the_interval_scan_pushes() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "    watch: poll\n");
    let _guard = Daemon { world: &w };
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (_, v) = status_json(&w);
    assert_eq!(v["targets"][0]["watch"]["mode"], "polling", "{v}");
    assert!(stdout(&w.run(&["status"])).contains("polling (watch: poll in the spec)"));
    std::fs::write(w.path("notes/polled.txt"), "p").unwrap();
    let pushed = remote_dir(&w, "notes").join("polled.txt");
    eventually("the interval scan pushes the write", || pushed.exists());
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn status_is_degraded_when_passes_fail() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let _guard = Daemon { world: &w };
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Break the remote: its directory becomes a plain file.
    let dir = remote_dir(&w, "notes");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    std::fs::write(w.path("notes/x.txt"), "x").unwrap();
    eventually("status reports degraded", || {
        w.run(&["status"]).status.code() == Some(1)
    });
    let (code, v) = status_json(&w);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["health"], "degraded", "{v}");
    assert!(!v["problems"].as_array().unwrap().is_empty(), "{v}");
    let out = stdout(&w.run(&["status"]));
    assert!(out.contains("DEGRADED"), "{out}");
}

#[test]
fn sigterm_flushes_pending_changes_and_releases_the_lease() {
    let w = World::new();
    // A debounce far longer than the test: only the flush can push.
    w.write_local_spec(&[("notes", "push-only")], "    flush_deadline: 20s\n");
    let spec = std::fs::read_to_string(w.spec())
        .unwrap()
        .replace("debounce: 1s", "debounce: 10m");
    std::fs::write(w.spec(), spec).unwrap();
    let _guard = Daemon { world: &w };
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pid = w.pid().unwrap();
    std::fs::write(w.path("notes/late.txt"), "flush me").unwrap();
    eventually("the daemon sees the change", || {
        let (_, v) = status_json(&w);
        v["targets"][0]["pending_files"].as_u64().unwrap_or(0) >= 1
    });
    let (_, v) = status_json(&w);
    assert!(v["targets"][0]["oldest_pending_at"].is_u64(), "{v}");
    assert!(stdout(&w.run(&["status"])).contains("pending 1 file(s)"));
    let pushed = remote_dir(&w, "notes").join("late.txt");
    assert!(!pushed.exists(), "pushed before the flush");
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    eventually("the daemon exits", || !alive(pid));
    assert_eq!(std::fs::read_to_string(&pushed).unwrap(), "flush me");
    assert!(lease_released(&w, "notes"));
    assert!(w.pid().is_none(), "pidfile left behind");
}

#[test]
fn kill_9_then_start_resumes_without_loss() {
    let w = World::new();
    w.write_local_spec(&[("notes", "bidirectional")], "");
    let _guard = Daemon { world: &w };
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pid = w.pid().unwrap();
    std::fs::write(w.path("notes/a.txt"), "A").unwrap();
    let remote_a = remote_dir(&w, "notes").join("a.txt");
    eventually("a.txt pushed", || remote_a.exists());
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    eventually("the daemon is dead", || !alive(pid));
    // While it is down: a new file and an edit.
    std::fs::write(w.path("notes/b.txt"), "B").unwrap();
    std::fs::write(w.path("notes/a.txt"), "A2").unwrap();
    // The stale pidfile is not trusted; the lease is reclaimed at once.
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("syncing 1 target"), "{}", text(&o));
    let new_pid = w.pid().unwrap();
    assert_ne!(new_pid, pid);
    // Ready means the first pass is done: both changes are on the remote.
    assert_eq!(std::fs::read_to_string(&remote_a).unwrap(), "A2");
    assert_eq!(
        std::fs::read_to_string(remote_dir(&w, "notes").join("b.txt")).unwrap(),
        "B"
    );
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

s3_test! {
    #[test]
    fn logs_rotate_and_never_contain_credentials(server) {
        let w = World::new();
        std::fs::create_dir_all(w.path("notes")).unwrap();
        let bucket = server.bucket("daemon-logs");
        w.write_spec(
            &format!(
                "  default_remote: s3\n  remotes:\n{}  sync:\n    - name: notes\n      path: {}\n      direction: push-only\n      interval: 10\n",
                server.yaml_remote("s3", &bucket, server.endpoint()),
                w.path("notes").display()
            ),
            "",
        );
        let _guard = Daemon { world: &w };
        let with_creds = |c: &mut Command| {
            s3::with_credentials(c).env("COLTEC_LOG_MAX_BYTES", "4096");
        };
        let mut c = w.cmd();
        with_creds(&mut c);
        let o = c.args(["--log-level", "trace", "start"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        for i in 0..20 {
            std::fs::write(w.path(&format!("notes/f{i}.txt")), format!("{i}")).unwrap();
        }
        eventually("files reach the bucket", || {
            server.list_keys(&bucket, "")
                .iter()
                .filter(|k| k.contains("/f"))
                .count()
                >= 20
        });
        eventually("the log rotated", || {
            w.logs().join("coltecd.log.1").exists()
        });
        let mut c = w.cmd();
        with_creds(&mut c);
        let o = c.args(["stop"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let logs = w.log_text();
        assert!(logs.len() > 4096, "expected several log files' worth");
        assert!(
            !w.logs().join("coltecd.log.4").exists(),
            "more than 3 old logs kept"
        );
        for secret in [s3::SECRET_KEY, s3::ACCESS_KEY] {
            assert!(!logs.contains(secret), "a credential appears in the logs");
            let status = stdout(&w.run(&["status", "--json"]));
            assert!(!status.contains(secret), "a credential appears in status");
        }
    }
}

/// Kills a foreground `coltecd run` when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_notifies_systemd_ready_and_watchdog_then_stops_on_sigterm() {
    use std::os::unix::net::UnixDatagram;
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let sock_path = w.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(crate::daemon::EVENTUALLY))
        .unwrap();
    let child = w
        .cmd()
        .arg("run")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    let mut seen = String::new();
    let mut buf = [0u8; 512];
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        let n = sock.recv(&mut buf).expect("no sd_notify message in time");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    // Ready means the lease is held.
    assert!(lease_file(&w, "notes").exists());
    let pid = child.0.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(lease_released(&w, "notes"));
}

#[test]
fn init_runs_the_daemon_alongside_and_flushes_when_the_command_exits() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    // Only the final flush can push: the debounce outlives the test.
    let spec = std::fs::read_to_string(w.spec())
        .unwrap()
        .replace("debounce: 1s", "debounce: 10m");
    std::fs::write(w.spec(), spec).unwrap();
    let notes = w.path("notes");
    let script = format!(
        r#"
        n=0
        until coltecd status >/dev/null 2>&1; do sleep 0.1; n=$((n+1)); [ $n -gt 600 ] && exit 99; done
        echo data > {notes}/x.txt
        n=0
        until coltecd status --json | grep -q '"pending_files": 1'; do sleep 0.1; n=$((n+1)); [ $n -gt 600 ] && exit 98; done
        exit 5
        "#,
        notes = notes.display()
    );
    let bin_dir = crate::support::coltecd_bin()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Not as PID 1 (e.g. under docker --init): same behaviour.
    let o = w
        .cmd()
        .env("PATH", path)
        .current_dir(w.dir.path())
        .args(["init", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    // The same, as PID 1 of its own PID namespace (the real use).
    let w2 = World::new();
    w2.write_local_spec(&[("notes", "push-only")], "");
    let spec = std::fs::read_to_string(w2.spec())
        .unwrap()
        .replace("debounce: 1s", "debounce: 10m");
    std::fs::write(w2.spec(), spec).unwrap();
    let script2 = script.replace(
        &notes.display().to_string(),
        &w2.path("notes").display().to_string(),
    );
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc"])
        .arg(crate::support::coltecd_bin())
        .args(["init", "--", "sh", "-c", &script2])
        .env("COLTEC_CONFIG", w2.spec())
        .env("COLTEC_STATE_DIR", w2.state())
        .env_remove("COLTEC_DISABLED")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(remote_dir(&w2, "notes").join("x.txt")).unwrap(),
        "data\n",
        "{}",
        text(&o)
    );
    assert!(lease_released(&w2, "notes"));
    // And the non-namespaced run above did the same.
    assert_eq!(
        std::fs::read_to_string(remote_dir(&w, "notes").join("x.txt")).unwrap(),
        "data\n"
    );
}

#[test]
fn a_second_container_on_the_same_prefix_is_refused_with_exit_4() {
    let a = World::new();
    a.write_local_spec(&[("notes", "push-only")], "");
    let _guard = Daemon { world: &a };
    let o = start(&a);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // B: its own state dir, same remote prefix.
    let b = World::new();
    std::fs::create_dir_all(b.path("notes")).unwrap();
    b.write_spec(
        &format!(
            "  default_remote: local\n  remotes:\n    local:\n      type: local\n      path_prefix: {}\n  sync:\n    - name: notes\n      path: {}\n      direction: push-only\n",
            a.remote().display(),
            b.path("notes").display()
        ),
        "",
    );
    let _guard_b = Daemon { world: &b };
    let o = start(&b);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("lease break"),
        "{}",
        text(&o)
    );
    assert!(b.pid().is_none(), "a refused daemon left a pidfile");
}

#[test]
fn sighup_reloads_intervals_and_refuses_target_changes() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let _guard = Daemon { world: &w };
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pid = w.pid().unwrap().to_string();
    let spec = std::fs::read_to_string(w.spec()).unwrap();
    std::fs::write(w.spec(), spec.replace("interval: 10", "interval: 20")).unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    eventually("the new interval is in effect", || {
        status_json(&w).1["targets"][0]["interval_secs"] == 20
    });
    std::fs::create_dir_all(w.path("elsewhere")).unwrap();
    let spec = std::fs::read_to_string(w.spec()).unwrap();
    std::fs::write(
        w.spec(),
        spec.replace(
            &format!("path: {}", w.path("notes").display()),
            &format!("path: {}", w.path("elsewhere").display()),
        ),
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    eventually("the refusal is logged", || {
        w.log_text().contains("NOT reloaded")
    });
    let (_, v) = status_json(&w);
    assert_eq!(
        v["targets"][0]["local_path"],
        w.path("notes").display().to_string()
    );
}

#[test]
fn a_lease_broken_by_another_container_stops_the_daemon_fenced() {
    let lease = "  lease:\n    ttl: 10s\n    renew_every: 1s\n";
    let a = World::new();
    std::fs::create_dir_all(a.path("notes")).unwrap();
    let body = |w: &World| {
        format!(
            "  default_remote: local\n  remotes:\n    local:\n      type: local\n      path_prefix: {}\n  sync:\n    - name: notes\n      path: {}\n      direction: push-only\n{lease}",
            a.remote().display(),
            w.path("notes").display()
        )
    };
    a.write_spec(&body(&a), "");
    let _guard = Daemon { world: &a };
    let o = start(&a);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pid = a.pid().unwrap();
    let b = World::new();
    std::fs::create_dir_all(b.path("notes")).unwrap();
    b.write_spec(&body(&b), "");
    let o = b.run(&["lease", "break", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    eventually("the fenced daemon stops", || !alive(pid));
    let log = a.log_text();
    assert!(log.contains("critical failure; stopping"), "{log}");
    let o = a.run(&["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn when_the_inotify_budget_runs_out_the_target_falls_back_to_polling() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    for i in 0..10 {
        std::fs::create_dir_all(w.path(&format!("notes/d{i}"))).unwrap();
    }
    // A user namespace has its own inotify watch limit: set it to 4 for
    // this daemon only (the host's limit is untouched).
    let child = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 4 > /proc/sys/user/max_inotify_watches && exec \"$0\" run")
        .arg(crate::support::coltecd_bin())
        .env("COLTEC_CONFIG", w.spec())
        .env("COLTEC_STATE_DIR", w.state())
        .env_remove("COLTEC_DISABLED")
        .env_remove("NOTIFY_SOCKET")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    eventually("status reports the fallback to polling", || {
        let (_, v) = status_json(&w);
        v["targets"][0]["watch"]["mode"] == "polling"
    });
    let (_, v) = status_json(&w);
    let reason = v["targets"][0]["watch"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("max_user_watches"), "{v}");
    let out = stdout(&w.run(&["status"]));
    assert!(
        out.contains("watch: polling (inotify watch limit reached"),
        "{out}"
    );
    assert!(
        w.log_text()
            .contains("falling back to scanning every interval"),
        "{}",
        w.log_text()
    );
    // Changes still get pushed, by the interval scan.
    std::fs::write(w.path("notes/d7/late.txt"), "l").unwrap();
    let pushed = remote_dir(&w, "notes").join("d7/late.txt");
    eventually("the interval scan pushes the write", || pushed.exists());
    let pid = child.0.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

#[test]
fn stop_under_init_stops_the_sync_and_leaves_the_command_running() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let bin_dir = crate::support::coltecd_bin()
        .parent()
        .unwrap()
        .to_path_buf();
    let script = r#"
        n=0
        until coltecd status >/dev/null 2>&1; do sleep 0.1; n=$((n+1)); [ $n -gt 600 ] && exit 99; done
        coltecd stop > stop.out 2>&1; echo $? > stop.code
        coltecd status > /dev/null 2>&1; echo $? > status.code
        exit 0
    "#;
    let o = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(crate::support::coltecd_bin())
        .args(["init", "--", "sh", "-c", script])
        .env("COLTEC_CONFIG", w.spec())
        .env("COLTEC_STATE_DIR", w.state())
        .env_remove("COLTEC_DISABLED")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(w.path(f)).unwrap_or_default();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\nstop: {}\nlog:\n{}",
        text(&o),
        read("stop.out"),
        w.log_text()
    );
    assert_eq!(read("stop.code").trim(), "0", "{}", read("stop.out"));
    assert!(read("stop.out").contains("stopped"), "{}", read("stop.out"));
    assert_eq!(read("status.code").trim(), "3");
    assert!(lease_released(&w, "notes"));
}

#[test]
fn sync_now_asks_the_running_daemon() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "    watch: poll\n");
    let o = w.run(&["sync", "--now"]);
    assert_eq!(o.status.code(), Some(3), "no daemon: {}", text(&o));
    let _guard = Daemon { world: &w };
    let o = start(&w);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Polling only, interval 10 s: without --now this would wait.
    std::fs::write(w.path("notes/now.txt"), "n").unwrap();
    let o = w.run(&["sync", "--now"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("notes: uploaded 1"), "{}", text(&o));
    assert!(remote_dir(&w, "notes").join("now.txt").exists());
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
