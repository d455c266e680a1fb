//! Issue 15 item 5: `coltecd lease release` through the binary, the pool
//! manager's way to free a slot: with a running daemon it stops it (final
//! flush, then release); without one it releases this container's lease
//! (e.g. after a `kill -9`) so the next container starts at once; it
//! refuses, naming the holder, when another container holds the slot.

use crate::daemon::{Daemon, eventually, text};
use crate::fleet::{SHORT_LEASE, local_world, run_as};

#[test]
fn lease_release_frees_a_slot_for_the_next_container_and_refuses_anothers() {
    let shared = tempfile::tempdir().unwrap();
    let remote = shared.path().join("fleet/slot/data");
    let lease = remote.join(".coltec/lease.json");
    let a = local_world(shared.path(), "slot", SHORT_LEASE);
    let b = local_world(shared.path(), "slot", SHORT_LEASE);
    let _guards = [&a, &b].map(|w| Daemon { world: w });

    // Nothing held yet: nothing to release.
    let o = run_as(&a, "slot-a", &["lease", "release"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not held"),
        "{}",
        text(&o)
    );

    // A running daemon: stopped as `stop` does, its last change flushed.
    let o = run_as(&a, "slot-a", &["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(lease.is_file());
    std::fs::write(a.path("data/last.md"), "written just before release").unwrap();
    let o = run_as(&a, "slot-a", &["lease", "release"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(a.pid().is_none(), "the daemon is still running");
    assert!(!lease.exists(), "lease left behind after release");
    assert_eq!(
        std::fs::read_to_string(remote.join("last.md")).unwrap(),
        "written just before release",
        "the final flush did not push the last change"
    );

    // A crashed daemon (kill -9) leaves its lease; releasing from the same
    // container frees it, and the next container starts at once (no TTL wait).
    let o = run_as(&a, "slot-a", &["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pid = a.pid().expect("pidfile");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the killed daemon is gone", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(lease.is_file(), "the killed daemon's lease is still there");
    let o = run_as(&a, "slot-a", &["lease", "release", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["state"], "released", "{v}");
    assert!(!lease.exists());
    let o = run_as(&b, "slot-b", &["start"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the next container must start at once: {}",
        text(&o)
    );

    // Now B holds the slot: A cannot release it (exit 4, naming B).
    let o = run_as(&a, "slot-a", &["lease", "release"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("slot-b") && out.contains("lease break --force"),
        "{}",
        text(&o)
    );
    assert!(lease.is_file(), "another container's lease was released");
    let o = run_as(&b, "slot-b", &["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
