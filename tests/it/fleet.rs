//! Issue 15: `coltecd fleet` and `status --idle-for` through real daemons
//! (one running, one stopped cleanly, one killed with `kill -9`, one never
//! leased) on one local remote, and the listing's request cost on S3
//! through the counting proxy.

use std::process::Output;

use serde_json::Value;

use crate::daemon::{Daemon, World, eventually, text};
use crate::support::proxy::Proxy;
use crate::support::s3::{self, S3Server};
use crate::support::s3_test;

/// A world syncing `data` to `<shared>/fleet/<name>/data` (lease ttl 10s,
/// the loader's minimum); `extra` goes into `persistence`.
pub(crate) fn local_world(shared: &std::path::Path, name: &str, extra: &str) -> World {
    let w = World::new();
    std::fs::create_dir_all(w.path("data")).unwrap();
    w.write_spec(
        &format!(
            "  default_remote: shared\n  remotes:\n    shared:\n      type: local\n      path_prefix: {}\n  sync:\n    - name: data\n      path: {}\n      remote_path: \"fleet/{name}/data\"\n      direction: bidirectional\n      interval: 10\n{extra}",
            shared.display(),
            w.path("data").display()
        ),
        "",
    );
    w
}

pub(crate) const SHORT_LEASE: &str = "  lease:\n    ttl: 10s\n    renew_every: 2s\n";

pub(crate) fn run_as(w: &World, host: &str, args: &[&str]) -> Output {
    w.cmd().env("HOSTNAME", host).args(args).output().unwrap()
}

fn fleet_json(w: &World, extra: &[&str]) -> Value {
    let mut args = vec!["fleet", "--json"];
    args.extend_from_slice(extra);
    let o = w.run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)))
}

/// The entry of `fleet/<name>/data`.
fn entry<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == format!("fleet/{name}/data"))
}

#[test]
fn fleet_shows_running_stopped_killed_and_never_leased_targets_and_idle_exit_codes() {
    let shared = tempfile::tempdir().unwrap();
    let running = local_world(shared.path(), "running", SHORT_LEASE);
    let stopped = local_world(shared.path(), "stopped", SHORT_LEASE);
    let killed = local_world(shared.path(), "killed", SHORT_LEASE);
    let never = local_world(shared.path(), "never", "  lease: off\n");
    let _guards = [&running, &stopped, &killed].map(|w| Daemon { world: w });
    for (w, host) in [
        (&running, "slot-running"),
        (&stopped, "slot-stopped"),
        (&killed, "slot-killed"),
    ] {
        std::fs::write(w.path("data/notes.md"), host).unwrap();
        let o = run_as(w, host, &["start"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    std::fs::write(never.path("data/notes.md"), "never").unwrap();
    let o = run_as(&never, "slot-never", &["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // `stop` acts only on this container's daemon: run it "in" the same one.
    let o = run_as(&stopped, "slot-stopped", &["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pid = killed.pid().expect("killed's pidfile");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // The running daemon's lease is held; its activity rides on the next
    // renewal (within `renew_every`).
    eventually("the running daemon's activity in its lease", || {
        let v = fleet_json(&running, &[]);
        entry(&v, "running").is_some_and(|e| e["last_local_change_at"].is_u64())
    });
    let v = fleet_json(&running, &[]);
    assert_eq!(v["schema"], 1);
    let e = entry(&v, "running").expect("running target listed");
    assert_eq!(e["lease"], "held", "{e}");
    assert_eq!(e["holder"]["container_id"], "slot-running", "{e}");
    assert_eq!(e["target"], "data");
    assert_eq!(e["workspace"], "acme/widget/dev-a");
    assert!(e["last_local_change_at"].is_u64(), "{e}");
    assert!(e["idle_secs"].is_u64(), "{e}");
    for name in ["stopped", "never"] {
        let e = entry(&v, name).unwrap_or_else(|| panic!("{name} listed: {v}"));
        assert_eq!(e["lease"], "none", "{name}: {e}");
        assert!(e["holder"].is_null(), "{name}: {e}");
    }

    // The killed holder's lease goes stale once its TTL passes unrenewed.
    eventually("the killed holder's lease looks stale", || {
        let v = fleet_json(&running, &[]);
        entry(&v, "killed").is_some_and(|e| e["lease"] == "stale")
    });
    let v = fleet_json(&running, &["--sizes"]);
    let e = entry(&v, "killed").unwrap();
    assert_eq!(e["holder"]["container_id"], "slot-killed", "{e}");
    assert_eq!(e["files"], 1, "{e}");
    assert_eq!(entry(&v, "running").unwrap()["lease"], "held");

    // --idle keeps only targets idle at least that long (known idleness).
    let v = fleet_json(&running, &["--idle", "1h"]);
    assert_eq!(v["targets"].as_array().unwrap().len(), 0, "{v}");
    let v = fleet_json(&running, &["--idle", "0s", "--sort", "idle"]);
    let paths: Vec<&str> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["path"].as_str().unwrap())
        .collect();
    // The killed daemon died before a renewal carried its activity: its
    // idleness is unknown, so only the running one passes the filter.
    assert_eq!(paths, ["fleet/running/data"], "{v}");

    // The table names every target.
    let o = running.run(&["fleet"]);
    let table = String::from_utf8_lossy(&o.stdout);
    for s in ["held", "stale", "slot-running"] {
        assert!(table.contains(s), "{s} missing:\n{table}");
    }

    // status --idle-for: 0 when idle at least that long, 1 otherwise.
    assert_eq!(
        run_as(&running, "slot-running", &["status", "--idle-for", "0s"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run_as(&running, "slot-running", &["status", "--idle-for", "1h"])
            .status
            .code(),
        Some(1)
    );
    let o = run_as(&running, "slot-running", &["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(st["idle"]["idle_secs"].is_u64(), "{st}");
    assert!(st["idle"]["last_local_change_at"].is_u64(), "{st}");
    let o = run_as(&running, "slot-running", &["status"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("since the last local change"),
        "{}",
        text(&o)
    );
}

/// `n` synthetic workspaces `org/proj/env-<i>/data`, each with a user file
/// and a live lease record, plus nested markers at the root.
fn synthetic_fleet(server: S3Server, bucket: &str, n: usize) {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    for i in 0..n {
        let base = format!("/{bucket}/org/proj/env-{i}/data");
        let rec = serde_json::json!({
            "format": 1, "lease_id": format!("{i:032x}"), "host": "h",
            "container_id": format!("c{i}"), "pid": i, "coltecd_version": "0",
            "workspace": format!("org/proj/env-{i}"), "location": base,
            "acquired_at": now, "renewed_at": now, "ttl_ms": 600_000,
            "session": "s", "seq": 1, "targets": ["data"],
        });
        let body = serde_json::to_vec(&rec).unwrap();
        for (key, body) in [
            (format!("{base}/.coltec/lease.json"), body.as_slice()),
            (format!("{base}/notes/a.md"), b"user data".as_slice()),
            (
                format!("/{bucket}/.coltec/nested/org%252Fproj%252Fenv-{i}%252Fdata@{i:032x}.json"),
                b"{}".as_slice(),
            ),
        ] {
            let r = server.request("PUT", &key, &[], body);
            assert_eq!(r.status, 200, "PUT {key}: {}", r.text());
        }
    }
}

/// How many synthetic workspaces the cost test lists (`FLEET_BENCH_N`,
/// default 20; benches/README.md "fleet" was measured with 500).
fn bench_n() -> usize {
    std::env::var("FLEET_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

s3_test! {
#[test]
fn the_fleet_listing_costs_one_walk_and_one_lease_read_per_target(server) {
    let n = bench_n();
    let bucket = server.bucket("fleet-cost");
    synthetic_fleet(server, &bucket, n);
    let proxy = Proxy::start(server.endpoint());
    let w = World::new();
    std::fs::create_dir_all(w.path("data")).unwrap();
    w.write_spec(
        &format!(
            "  default_remote: moto\n  remotes:\n    moto:\n      type: s3\n      bucket: {bucket}\n      options:\n        provider: Other\n        endpoint: {}\n        region: us-east-1\n  sync:\n    - name: data\n      path: {}\n      direction: bidirectional\n      interval: 10\n",
            proxy.endpoint,
            w.path("data").display()
        ),
        "",
    );
    proxy.reset();
    let started = std::time::Instant::now();
    let o = w
        .cmd()
        .env("RCLONE_S3_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("RCLONE_S3_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .args(["fleet", "--json"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), n, "{v}");
    assert!(targets.iter().all(|t| t["lease"] == "held"), "{v}");
    let seen = proxy.seen();
    let lists: Vec<_> = seen.iter().filter(|s| s.is_list()).collect();
    let gets = seen
        .iter()
        .filter(|s| s.method == "GET" && !s.is_list())
        .count();
    // Root, .coltec/ of the root, org/, org/proj/, then per workspace its
    // env dir, the target dir and the target's .coltec/.
    assert_eq!(lists.len(), 4 + 3 * n, "{lists:#?}");
    assert_eq!(gets, n, "one lease read per target");
    assert!(
        lists
            .iter()
            .all(|s| !s.target.contains("notes") && !s.target.contains("nested")),
        "user data or markers listed: {lists:#?}"
    );
    assert_eq!(
        seen.len(),
        lists.len() + gets,
        "nothing but lists and reads"
    );
    assert_eq!(v["remotes"][0]["requests"]["lists"], lists.len() as u64);
    eprintln!(
        "fleet: {n} workspaces listed in {:.2?} with {} listings and {gets} reads",
        took,
        lists.len()
    );
}
}
