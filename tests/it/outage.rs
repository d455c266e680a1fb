//! Outages and takeovers, through the binary: `status` says degraded (with
//! since when and what is pending) while the remote is unreachable, and
//! the edits made meanwhile go out when it returns, without a restart
//! (the fenced lease recovers by itself); a daemon whose lease is taken
//! over exits 4 naming the changes it could not push, and the next start
//! keeps them as conflict copies.

use crate::daemon::{Daemon, World, eventually, status_json, stdout, text};
use crate::stop_flush::{Running, S3_CREDS, only_the_stop_pushes, remote_dir, s3_spec};
use crate::support::lease_proxy::{LeaseProxy, Mode};
use crate::support::s3::S3Server;

const SHORT_LEASE: &str = "  lease:\n    ttl: 10s\n    renew_every: 1s\n";

#[test]
fn status_is_degraded_during_an_outage_and_its_edits_go_out_when_it_ends() {
    let w = World::new();
    let bucket = S3Server::Moto.bucket("outage");
    let proxy = LeaseProxy::start(S3Server::Moto.endpoint(), Mode::Pass);
    s3_spec(&w, &bucket, &proxy.endpoint(), SHORT_LEASE, "");
    let mut d = Running::start(&w, &S3_CREDS);
    d.wait_ready(&w);
    assert_eq!(w.run(&["status"]).status.code(), Some(0));
    // The network goes away: every connection is cut without an answer.
    proxy.set_mode(Mode::Down);
    std::fs::write(w.path("notes/during.txt"), "written during the outage").unwrap();
    eventually(
        "status says degraded, renewals failing, with what is pending",
        || {
            let (code, v) = status_json(&w);
            let problems = v["problems"].to_string();
            code == 1
                && (problems.contains("lease renewals failing")
                    || problems.contains("remote writes are paused"))
                && problems.contains("1 file(s) pending, oldest")
        },
    );
    let out = w.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("DEGRADED"), "{}", text(&out));
    // Long enough to be fenced (TTL 10 s: writes pause 7.5 s after the
    // last renewal).
    eventually("the lease is fenced", || {
        status_json(&w).1["leases"]["writes_allowed"] == false
    });
    // The network returns: the lease is still ours (nobody took it), so
    // it is re-verified, writes resume and the edit goes out.
    proxy.set_mode(Mode::Pass);
    eventually("the edit made during the outage reaches the remote", || {
        S3Server::Moto
            .list_keys(&bucket, "")
            .iter()
            .any(|k| k.ends_with("/notes/during.txt"))
    });
    eventually("status is healthy again", || {
        w.run(&["status"]).status.code() == Some(0)
    });
    let log = w.log_text();
    assert!(log.contains("remote writes allowed again"), "{log}");
    d.term();
    assert_eq!(d.wait().code(), Some(0), "{}", d.stderr());
}

#[test]
fn a_takeover_names_the_unpushed_changes_and_the_next_start_keeps_them_as_conflict_copies() {
    let a = World::new();
    std::fs::create_dir_all(a.path("notes")).unwrap();
    std::fs::write(a.path("notes/keep.txt"), "original").unwrap();
    let body = |w: &World| {
        format!(
            "  default_remote: local\n  remotes:\n    local:\n      type: local\n      path_prefix: {}\n  sync:\n    - name: notes\n      path: {}\n      direction: push-only\n      interval: 10\n{SHORT_LEASE}",
            a.remote().display(),
            w.path("notes").display()
        )
    };
    a.write_spec(&body(&a), "");
    only_the_stop_pushes(&a);
    let _guard = Daemon { world: &a };
    let mut d = Running::start(&a, &[]);
    d.wait_ready(&a);
    let remote = remote_dir(&a, "notes");
    assert_eq!(
        std::fs::read_to_string(remote.join("keep.txt")).unwrap(),
        "original"
    );
    // Two edits, pending (only a stop would push them) ...
    std::fs::write(a.path("notes/keep.txt"), "edited by A").unwrap();
    std::fs::write(a.path("notes/new.txt"), "created by A").unwrap();
    eventually("the daemon sees both edits", || {
        status_json(&a).1["targets"][0]["pending_files"].as_u64() == Some(2)
    });
    // ... when another container breaks the lease.
    let b = World::new();
    std::fs::create_dir_all(b.path("notes")).unwrap();
    b.write_spec(&body(&b), "");
    let o = b.run(&["lease", "break", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let code = d.wait().code();
    let stderr = d.stderr();
    assert_eq!(code, Some(4), "{stderr}");
    let (keep, new) = (a.path("notes/keep.txt"), a.path("notes/new.txt"));
    // Said loudly: the exit message, the log, the status file.
    for p in [&keep, &new] {
        let p = p.display().to_string();
        assert!(
            stderr.contains("NOT pushed") && stderr.contains(&p),
            "{stderr}"
        );
        assert!(
            a.log_text()
                .lines()
                .any(|l| l.contains("not pushed") && l.contains(&p)),
            "{}",
            a.log_text()
        );
    }
    let (code, v) = status_json(&a);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["stop"]["exit_code"], 4, "{v}");
    let unpushed = v["stop"]["unpushed"][0]["paths"].to_string();
    assert!(
        unpushed.contains("keep.txt") && unpushed.contains("new.txt"),
        "{v}"
    );
    let out = stdout(&a.run(&["status"]));
    assert!(out.contains("2 local change(s) were NOT pushed"), "{out}");
    // Nothing was written after the takeover.
    assert_eq!(
        std::fs::read_to_string(remote.join("keep.txt")).unwrap(),
        "original"
    );
    assert!(!remote.join("new.txt").exists());
    assert!(a.state().join("unpushed.json").exists());

    // The next start keeps both edits as conflict copies (which nothing
    // overwrites) and pushes them.
    let o = a.run(&["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let copies: Vec<(String, String)> = std::fs::read_dir(a.path("notes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".conflict-"))
        .map(|n| {
            let body = std::fs::read_to_string(a.path("notes").join(&n)).unwrap();
            (n, body)
        })
        .collect();
    let kept = |stem: &str, body: &str| {
        copies.iter().any(|(n, b)| {
            n.starts_with(&format!("{stem}.conflict-")) && n.ends_with(".txt") && b == body
        })
    };
    assert!(kept("keep", "edited by A"), "{copies:?}");
    assert!(kept("new", "created by A"), "{copies:?}");
    for (name, body) in &copies {
        assert_eq!(
            std::fs::read_to_string(remote.join(name)).unwrap_or_default(),
            *body,
            "{name} not pushed"
        );
    }
    assert!(!a.state().join("unpushed.json").exists());
    let o = a.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
