//! Issue 13 (hardening), the local-attacker items through the binary: the
//! log file and hostile names in output (6), the state dir's ownership
//! (7), two containers sharing one state volume (8), and two smaller ones:
//! a dry run writes nothing (13a), refused remote keys stay visible (13b).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::daemon::{Daemon, World, eventually, status_json, stdout, text};
use crate::support::s3::{self, S3Server};
use crate::support::{coltecd_bin, s3_test};

const INJECTED: &str = "export INJECTED=1";

/// No line of `out` is the injected one, and the name was printed.
fn assert_one_line_per_name(what: &str, out: &str) {
    assert!(
        out.contains(INJECTED),
        "{what} did not print the name at all:\n{out}"
    );
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with(INJECTED)),
        "{what}: a name with a newline started a line of its own:\n{out}"
    );
}

fn touch_hours_ago(p: &Path, hours: u32) {
    let st = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("{hours} hours ago"))
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

// ------------------------------------------------------- 6: log and names

#[test]
fn a_symlinked_log_file_is_refused_and_its_target_never_written() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    std::fs::create_dir_all(w.logs()).unwrap();
    let victim = w.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let log = w.logs().join("coltecd.log");
    std::os::unix::fs::symlink(&victim, &log).unwrap();
    for cmd in ["start", "run"] {
        let o = w.run(&[cmd]);
        let _guard = Daemon { world: &w };
        assert_ne!(o.status.code(), Some(0), "{cmd}: {}", text(&o));
        let all = text(&o);
        assert!(
            all.contains(&log.display().to_string()) && all.contains("symbolic link"),
            "{cmd} must name the symlinked log file: {all}"
        );
        assert!(w.pid().is_none(), "{cmd} left a daemon running: {all}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn a_newline_in_a_file_name_cannot_inject_a_line_into_the_daemon_log() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    // A stale partial download: the daemon logs its path when removing it.
    let temp = w.path(&format!(
        "notes/.a\n{INJECTED}\n.coltec-tmp-0123456789abcdef"
    ));
    std::fs::write(&temp, "partial").unwrap();
    touch_hours_ago(&temp, 3);
    let o = w.run(&["start"]);
    let _guard = Daemon { world: &w };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    eventually("the daemon removes the stale temp file", || !temp.exists());
    eventually("the removal is logged", || {
        w.log_text().contains("removed a partial download")
    });
    assert_one_line_per_name("the daemon log", &w.log_text());
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_newline_in_a_file_name_stays_on_one_line_in_sync_and_restore_output() {
    let w = World::new();
    w.write_local_spec(&[("notes", "bidirectional")], "");
    std::fs::write(w.path(&format!("notes/b\n{INJECTED}")), "x").unwrap();
    let o = w.run(&["sync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_one_line_per_name("sync --dry-run", &stdout(&o));
    let o = w.run(&["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let to = w.path("restored");
    let o = w.run(&["restore", "--dry-run", "--to", to.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_one_line_per_name("restore --dry-run", &stdout(&o));
}

// ------------------------------------------------------------ 7: state dir

#[test]
fn a_state_dir_writable_by_others_or_owned_by_another_user_is_refused() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    std::fs::create_dir(w.state()).unwrap();
    std::fs::set_permissions(w.state(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [&["sync"][..], &["run"]] {
        let o = w.run(args);
        let _guard = Daemon { world: &w };
        let all = text(&o);
        assert_ne!(o.status.code(), Some(0), "{args:?}: {all}");
        assert!(
            all.contains(&w.state().display().to_string())
                && all.contains("writable by group or others")
                && all.contains("chmod go-w"),
            "{args:?} must name the state dir and the fix: {all}"
        );
    }
    assert!(!w.state().join("lock").exists(), "the unsafe dir was used");
    assert!(!w.remote().exists(), "synced with an unsafe state dir");

    // Owned by someone else (as root: chown it away; otherwise a root-owned
    // directory is someone else's).
    let me = nix::unistd::geteuid().as_raw();
    let foreign = if me == 0 {
        std::fs::set_permissions(w.state(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(w.state(), Some(65534), Some(65534)).unwrap();
        w.state()
    } else {
        Path::new("/usr").to_path_buf()
    };
    let o = w
        .cmd()
        .env("COLTEC_STATE_DIR", &foreign)
        .arg("sync")
        .output()
        .unwrap();
    let all = text(&o);
    assert_ne!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&foreign.display().to_string())
            && all.contains(&format!("not by you (uid {me})")),
        "must name the foreign owner: {all}"
    );
}

// ---------------------------------------------------- 8: shared state dir

fn as_container(w: &World, id: &str, args: &[&str]) -> Output {
    w.cmd()
        .env("COLTEC_CONTAINER_ID", id)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn status_and_stop_in_another_container_never_act_on_this_daemon() {
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let o = as_container(&w, "container-a", &["start"]);
    let _guard = Daemon { world: &w };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pid = w.pid().expect("daemon A's pidfile");

    // Container B: its status is its own (not running), and says whose
    // daemon holds the state dir and what to do.
    let o = as_container(&w, "container-b", &["status"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("ANOTHER container")
            && out.contains("container-a")
            && out.contains(&format!("pid {pid}"))
            && out.contains("its own state dir"),
        "{out}"
    );
    assert!(!out.contains("running (pid"), "{out}");
    let o = as_container(&w, "container-b", &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(v["pid"].is_null(), "{v}");

    // B's stop says so and signals nothing; B's run is refused.
    let o = as_container(&w, "container-b", &["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("not stopping") && stdout(&o).contains("container-a"),
        "{}",
        text(&o)
    );
    let o = as_container(&w, "container-b", &["run"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(w.pid(), Some(pid));
    let o = as_container(&w, "container-a", &["status"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "A's daemon was disturbed: {}",
        text(&o)
    );
    assert!(
        stdout(&o).contains(&format!("running (pid {pid}")),
        "{}",
        text(&o)
    );

    // A's own stop still works.
    let o = as_container(&w, "container-a", &["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("stopped"), "{}", text(&o));
    let (code, _) = status_json(&w);
    assert_eq!(code, 3);
}

// ------------------------------------------------------------- 13: smaller

#[test]
fn sync_dry_run_creates_no_state_dir_and_nothing_on_the_remote() {
    let w = World::new();
    w.write_local_spec(&[("notes", "bidirectional")], "");
    std::fs::write(w.path("notes/a.txt"), "a").unwrap();
    let o = w.run(&["sync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("would"), "{}", text(&o));
    assert!(!w.state().exists(), "a dry run created the state dir");
    assert!(
        !w.remote().exists(),
        "a dry run wrote to the remote: {:?}",
        walk(&w.remote())
    );
    // With a state dir and a remote, still nothing new on the remote.
    let o = w.run(&["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let before = walk(&w.remote());
    std::fs::write(w.path("notes/b.txt"), "b").unwrap();
    let o = w.run(&["sync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(walk(&w.remote()), before);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

s3_test! {
    /// moto keeps a `..` key verbatim (s3s-fs normalises it away, so there
    /// both runs are clean): every later `sync` reports it and exits as the
    /// first did, never "up to date".
    #[test]
    fn refused_remote_keys_stay_reported_until_fixed(server) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("ok.txt"), "fine").unwrap();
        let bucket = server.bucket("refused");
        let spec = tmp.path().join("workspace-spec.yaml");
        std::fs::write(
            &spec,
            format!(
                "metadata: {{org: acme, project: widget, environment: dev}}\npersistence:\n  enabled: true\n  default_remote: r\n  remotes:\n{}  sync:\n    - name: data\n      path: {}\n",
                server.yaml_remote("r", &bucket, server.endpoint()),
                data.display()
            ),
        )
        .unwrap();
        let sync_with = |extra: &[&str]| {
            let mut c = std::process::Command::new(coltecd_bin());
            c.env_clear()
                .env("COLTEC_CONFIG", &spec)
                .env("COLTEC_STATE_DIR", tmp.path().join("state"))
                .arg("sync")
                .args(extra);
            s3::with_credentials(&mut c).output().unwrap()
        };
        let sync = || sync_with(&[]);
        let o = sync();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let keys = server.list_keys(&bucket, "");
        let ok = keys.iter().find(|k| k.ends_with("ok.txt")).expect("ok.txt uploaded");
        let prefix = ok.trim_end_matches("ok.txt").trim_end_matches('/');
        let r = server.request(
            "PUT",
            &format!("/{bucket}/{prefix}/x/%2E%2E/%2E%2E/%2E%2E/escape.txt"),
            &[],
            b"evil",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let kept = server
            .list_keys(&bucket, "")
            .iter()
            .any(|k| k.contains("escape.txt") && k.contains(".."));
        assert_eq!(kept, server == S3Server::Moto, "{:?}", server.list_keys(&bucket, ""));

        // The key was written behind coltecd's back: `--verify` lists.
        let first = sync_with(&["--verify"]);
        let second = sync();
        let third = sync();
        for (n, o) in [("first", &first), ("second", &second), ("third", &third)] {
            let all = text(o);
            if kept {
                assert_eq!(o.status.code(), Some(6), "{n}: {all}");
                assert!(all.contains("refused remote key"), "{n}: {all}");
                assert!(!all.contains("up to date"), "{n}: {all}");
            } else {
                assert_eq!(o.status.code(), Some(0), "{n}: {all}");
            }
        }
        assert!(!tmp.path().join("escape.txt").exists());
    }
}
