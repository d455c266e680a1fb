//! The daemon, through the real binary: `start`/`run`/`stop`/`status`/
//! `init`, `COLTEC_DISABLED`, credentials, logs, systemd units.
//!
//! Every test has its own tempdir holding the spec, the synced directories,
//! the `local` remote, the state dir and the logs; spawned daemons are
//! killed by a [`Daemon`] guard whatever happens. Nothing asserts on timing:
//! eventual conditions are polled with generous deadlines.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::coltecd_bin;
use crate::support::s3::S3Server;

/// Generous deadline for eventual conditions (a loaded CI machine).
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(60);

pub(crate) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < EVENTUALLY,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One test's world.
pub(crate) struct World {
    pub(crate) dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn new() -> World {
        World {
            dir: tempfile::Builder::new().prefix("cd").tempdir().unwrap(),
        }
    }
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub(crate) fn spec(&self) -> PathBuf {
        self.path("ws/.devcontainer/workspace-spec.yaml")
    }
    pub(crate) fn state(&self) -> PathBuf {
        self.path("state")
    }
    pub(crate) fn logs(&self) -> PathBuf {
        self.path("logs")
    }
    pub(crate) fn remote(&self) -> PathBuf {
        self.path("remote")
    }

    /// A spec with a `local` remote and the given targets (`name`,
    /// direction); extra YAML goes under `persistence.daemon`.
    pub(crate) fn write_local_spec(&self, targets: &[(&str, &str)], daemon_extra: &str) {
        let mut sync = String::new();
        for (name, direction) in targets {
            std::fs::create_dir_all(self.path(name)).unwrap();
            sync.push_str(&format!(
                "    - name: {name}\n      path: {}\n      direction: {direction}\n      interval: 10\n",
                self.path(name).display()
            ));
        }
        self.write_spec(&format!(
            "  default_remote: local\n  remotes:\n    local:\n      type: local\n      path_prefix: {}\n  sync:\n{sync}",
            self.remote().display()
        ), daemon_extra);
    }

    pub(crate) fn write_spec(&self, persistence_body: &str, daemon_extra: &str) {
        let body = format!(
            "name: daemon-test\nmetadata:\n  org: acme\n  project: widget\n  environment: dev-a\npersistence:\n  enabled: true\n{persistence_body}  daemon:\n    log_dir: {}\n    debounce: 1s\n{daemon_extra}",
            self.logs().display()
        );
        std::fs::create_dir_all(self.spec().parent().unwrap()).unwrap();
        std::fs::write(self.spec(), body).unwrap();
    }

    /// `coltecd` with this world's spec and state dir and a clean env.
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(coltecd_bin());
        c.env("COLTEC_CONFIG", self.spec())
            .env("COLTEC_STATE_DIR", self.state())
            .env_remove("COLTEC_DISABLED")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for v in [
            "RCLONE_S3_ACCESS_KEY_ID",
            "RCLONE_S3_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            c.env_remove(v);
        }
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.state().join("coltecd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub(crate) fn log_text(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.logs()) {
            for e in entries.flatten() {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        all
    }
}

/// Kills the daemon of a world (by its pidfile) when the test ends.
pub(crate) struct Daemon<'a> {
    pub(crate) world: &'a World,
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.world.pid() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn status_json(w: &World) -> (i32, serde_json::Value) {
    let o = w.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", text(&o)));
    (o.status.code().unwrap_or(-1), v)
}

#[test]
fn disabled_start_run_and_status_pause_without_touching_anything() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    for v in ["true", "1", "yes"] {
        for cmd in ["start", "run"] {
            let o = w.cmd().env("COLTEC_DISABLED", v).arg(cmd).output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{cmd} {v}: {}", text(&o));
            assert_eq!(
                stdout(&o).trim(),
                "coltecd: disabled by COLTEC_DISABLED",
                "{}",
                text(&o)
            );
        }
    }
    assert!(!w.remote().exists(), "a disabled daemon touched the remote");
    assert!(w.pid().is_none());
    let o = w
        .cmd()
        .env("COLTEC_DISABLED", "true")
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("disabled by COLTEC_DISABLED"),
        "{}",
        text(&o)
    );
    let o = w
        .cmd()
        .env("COLTEC_DISABLED", "yes")
        .args(["status", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "disabled", "{v}");
    assert_eq!(v["health"], "disabled", "{v}");
}

#[test]
fn status_and_stop_without_a_daemon() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let o = w.run(&["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(stdout(&o).contains("not running"), "{}", text(&o));
    assert!(stdout(&o).contains("acme/widget/dev-a"), "{}", text(&o));
    let (code, v) = status_json(&w);
    assert_eq!(code, 3);
    assert_eq!(v["state"], "stopped", "{v}");
    assert_eq!(v["health"], "not-running", "{v}");
    assert_eq!(v["schema"], 1, "{v}");
    assert_eq!(v["targets"][0]["name"], "notes", "{v}");
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("not running"), "{}", text(&o));
}

#[test]
fn missing_credentials_fail_start_with_exit_5_naming_the_variables() {
    let w = World::new();
    std::fs::create_dir_all(w.path("notes")).unwrap();
    w.write_spec(
        &format!(
            "  default_remote: r2\n  remotes:\n    r2:\n      type: s3\n      bucket: some-bucket\n      options:\n        endpoint: {}\n  sync:\n    - name: notes\n      path: {}\n      direction: push-only\n",
            // Never contacted: start refuses before it reaches the server.
            S3Server::Moto.endpoint(),
            w.path("notes").display()
        ),
        "",
    );
    let o = w.run(&["start"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ACCESS_KEY_ID"), "{}", text(&o));
    assert!(w.pid().is_none(), "a daemon was left running");
    // `start` never writes to the terminal after returning; nothing runs.
    let (code, _) = status_json(&w);
    assert_eq!(code, 3);
}

/// Run `coltecd init -- sh -c <script>` as PID 1 of a new PID namespace.
fn init_in_pid_namespace(w: &World, script: &str, disabled: bool) -> Output {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc"])
        .arg(coltecd_bin())
        .args(["init", "--", "sh", "-c", script])
        .env("COLTEC_CONFIG", w.spec())
        .env("COLTEC_STATE_DIR", w.state())
        .current_dir(w.dir.path())
        .stdin(Stdio::null());
    if disabled {
        c.env("COLTEC_DISABLED", "1");
    }
    c.output().unwrap()
}

/// A script that leaves orphans behind (re-parented to PID 1), waits until
/// they are gone *including their zombies*, writes the zombie count it saw
/// last to `zombies`, then exits with `code`.
fn orphan_script(code: i32) -> String {
    format!(
        r#"
        for i in 1 2 3 4 5; do ( sleep 0.2 & ) ; done
        n=0
        while [ $n -lt 600 ]; do
          z=0; s=0
          for f in /proc/[0-9]*/stat; do
            st=$(awk '{{print $3}}' "$f" 2>/dev/null)
            comm=$(awk '{{print $2}}' "$f" 2>/dev/null)
            [ "$st" = Z ] && z=$((z+1))
            [ "$comm" = "(sleep)" ] && s=$((s+1))
          done
          [ $z -eq 0 ] && [ $s -eq 0 ] && break
          sleep 0.1; n=$((n+1))
        done
        echo $z > zombies
        [ "$(cat /proc/1/comm)" = coltecd ] && echo pid1 > whoami
        exit {code}
        "#
    )
}

#[test]
fn init_reaps_orphans_and_propagates_the_exit_code() {
    let w = World::new();
    let o = init_in_pid_namespace(&w, &orphan_script(7), true);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(w.path("whoami"))
            .unwrap_or_default()
            .trim(),
        "pid1",
        "coltecd was not PID 1: {}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(w.path("zombies")).unwrap().trim(),
        "0",
        "orphaned zombies were not reaped: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("disabled by COLTEC_DISABLED"),
        "{}",
        text(&o)
    );
}

#[test]
fn init_reports_a_killed_command_as_128_plus_signal() {
    let w = World::new();
    let o = init_in_pid_namespace(&w, "kill -KILL $$", true);
    assert_eq!(o.status.code(), Some(128 + 9), "{}", text(&o));
}

#[test]
fn init_forwards_sigterm_to_the_command() {
    let w = World::new();
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(coltecd_bin())
        .args([
            "init",
            "--",
            "sh",
            "-c",
            "trap 'echo got-term > term; exit 42' TERM; echo up > up; while :; do sleep 0.1; done",
        ])
        .env("COLTEC_DISABLED", "1")
        .current_dir(w.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the command runs", || w.path("up").exists());
    // The init process is unshare's child (PID 1 inside the namespace).
    let children =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
            .unwrap();
    let init_pid = children.split_whitespace().next().unwrap().to_string();
    let st = Command::new("kill")
        .args(["-TERM", &init_pid])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    assert_eq!(
        std::fs::read_to_string(w.path("term")).unwrap().trim(),
        "got-term"
    );
}

#[test]
fn init_runs_the_command_even_when_sync_cannot_start() {
    let w = World::new();
    // No spec at all: sync cannot run, the command must.
    let o = init_in_pid_namespace(&w, "echo ran > ran; exit 3", false);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(w.path("ran").exists());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sync NOT running"),
        "{}",
        text(&o)
    );
}

#[test]
fn systemd_units_verify() {
    let units = crate::support::repo_root().join("systemd");
    for name in ["coltecd.service", "coltecd@.service"] {
        let body = std::fs::read_to_string(units.join(name)).unwrap();
        for needle in [
            "Type=notify",
            "WatchdogSec=",
            "TimeoutStopSec=",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ] {
            assert!(body.contains(needle), "{name} lacks {needle}");
        }
    }
    // Not a silent skip: tests/run.sh needs systemd-analyze (package
    // `systemd`); only an explicit COLTEC_TEST_NO_SYSTEMD=1 turns this part
    // off, and says so on stderr.
    let analyze = match which("systemd-analyze") {
        Ok(a) => a,
        Err(()) if std::env::var_os("COLTEC_TEST_NO_SYSTEMD").is_some_and(|v| v == "1") => {
            eprintln!(
                "WARNING systemd_units_verify: systemd-analyze verify NOT run (COLTEC_TEST_NO_SYSTEMD=1)"
            );
            return;
        }
        Err(()) => panic!(
            "systemd-analyze is not installed (apt-get install systemd), so the units \
             cannot be verified; set COLTEC_TEST_NO_SYSTEMD=1 to skip this knowingly"
        ),
    };
    let tmp = tempfile::tempdir().unwrap();
    // Point ExecStart at the binary under test so verify can check it exists.
    for name in ["coltecd.service", "coltecd@.service"] {
        let body = std::fs::read_to_string(units.join(name)).unwrap().replace(
            "/usr/local/bin/coltecd",
            &coltecd_bin().display().to_string(),
        );
        std::fs::write(tmp.path().join(name), body).unwrap();
    }
    std::fs::copy(
        tmp.path().join("coltecd@.service"),
        tmp.path().join("coltecd@demo.service"),
    )
    .unwrap();
    for name in ["coltecd.service", "coltecd@demo.service"] {
        let o = Command::new(&analyze)
            .arg("verify")
            .arg(tmp.path().join(name))
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        // verify also complains about unrelated units on the host; only
        // lines about our unit count.
        let ours: Vec<&str> = err.lines().filter(|l| l.contains("coltecd")).collect();
        assert!(
            o.status.success() || ours.is_empty(),
            "{name}: {}",
            text(&o)
        );
        assert!(ours.is_empty(), "{name}: {ours:?}");
    }
}

fn which(bin: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .ok_or(())
}
