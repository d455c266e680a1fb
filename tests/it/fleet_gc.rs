//! Issue 15 item 4: `coltecd fleet gc` through the binary, on a local remote
//! and on both S3 servers. A live daemon and a crashed holder (a lease
//! record nobody renews, its nested markers, a dirty marker without a
//! manifest, a probe object, user data, an expired and a fresh trash
//! generation) share one root: gc removes the crashed holder's markers,
//! probe and expired trash once the holder is gone by the takeover rule
//! (its lease unchanged here for a TTL), and nothing else; `--dry-run`
//! removes nothing.

use std::path::PathBuf;

use serde_json::Value;

use crate::daemon::{Daemon, World, eventually, text};
use crate::support::s3::{self, S3Server};
use crate::support::s3_test;

/// Where the test's root lives.
enum Root {
    Local(PathBuf),
    S3(S3Server, String),
}

impl Root {
    /// The `persistence.remotes` entry named `shared`.
    fn remote_yaml(&self) -> String {
        match self {
            Root::Local(p) => format!(
                "    shared:\n      type: local\n      path_prefix: {}\n",
                p.display()
            ),
            Root::S3(server, bucket) => server.yaml_remote("shared", bucket, server.endpoint()),
        }
    }

    fn put(&self, key: &str, body: &[u8]) {
        match self {
            Root::Local(p) => {
                let path = p.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, body).unwrap();
            }
            Root::S3(server, bucket) => {
                let target = format!("/{bucket}/{}", key.replace('%', "%25"));
                let r = server.request("PUT", &target, &[], body);
                assert_eq!(r.status, 200, "PUT {key}: {}", r.text());
            }
        }
    }

    fn exists(&self, key: &str) -> bool {
        match self {
            Root::Local(p) => p.join(key).is_file(),
            Root::S3(server, bucket) => server.list_keys(bucket, key).iter().any(|k| k == key),
        }
    }

    /// `coltecd` of `w` with the S3 test credentials when needed.
    fn run(&self, w: &World, host: &str, args: &[&str]) -> std::process::Output {
        let mut c = w.cmd();
        c.env("HOSTNAME", host).args(args);
        if let Root::S3(..) = self {
            s3::with_credentials(&mut c);
        }
        c.output().unwrap()
    }
}

/// A world whose target `data` syncs to `fleet/<name>/data` of `root`.
fn world(root: &Root, name: &str) -> World {
    let w = World::new();
    std::fs::create_dir_all(w.path("data")).unwrap();
    w.write_spec(
        &format!(
            "  default_remote: shared\n  remotes:\n{}  sync:\n    - name: data\n      path: {}\n      remote_path: \"fleet/{name}/data\"\n      direction: bidirectional\n      interval: 10\n  lease:\n    ttl: 10s\n    renew_every: 2s\n",
            root.remote_yaml(),
            w.path("data").display()
        ),
        "",
    );
    w
}

const CRASHED_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";
const OLD_TRASH: &str = "fleet/crashed/data/.coltec/trash/20200101T000000Z/old.md";

/// The crashed holder's objects: a lease nobody renews, its nested markers
/// under the root and `fleet/`, a dirty marker (no manifest), a probe,
/// user data, an expired and a fresh trash generation.
fn seed_crashed(root: &Root) -> Vec<(String, bool)> {
    let now = jiff::Timestamp::now();
    let rec = serde_json::json!({
        "format": 1, "lease_id": CRASHED_ID, "host": "gone", "container_id": "slot-crashed",
        "pid": 4242, "coltecd_version": "0", "workspace": "acme/widget/crashed",
        "location": "fleet/crashed/data", "acquired_at": now.to_string(),
        "renewed_at": now.to_string(), "ttl_ms": 10_000, "session": "s", "seq": 1,
    });
    let fresh = format!(
        "fleet/crashed/data/.coltec/trash/{}/new.md",
        now.strftime("%Y%m%dT%H%M%SZ")
    );
    // (key, whether gc removes it)
    let objects = vec![
        ("fleet/crashed/data/.coltec/lease.json".to_string(), false),
        (
            format!(".coltec/nested/fleet%2Fcrashed%2Fdata@{CRASHED_ID}.json"),
            true,
        ),
        (
            format!("fleet/.coltec/nested/crashed%2Fdata@{CRASHED_ID}.json"),
            true,
        ),
        ("fleet/crashed/data/.coltec/manifest.dirty".into(), true),
        ("fleet/crashed/data/.coltec/probe-0123abcd".into(), true),
        ("fleet/crashed/data/notes.md".into(), false),
        (OLD_TRASH.into(), true),
        (fresh, false),
    ];
    for (key, _) in &objects {
        let body = if key.ends_with("lease.json") {
            serde_json::to_vec(&rec).unwrap()
        } else {
            b"x".to_vec()
        };
        root.put(key, &body);
    }
    objects
}

fn gc_json(root: &Root, w: &World, args: &[&str]) -> Value {
    let mut all = vec!["fleet", "gc", "--json"];
    all.extend_from_slice(args);
    let o = root.run(w, "gc-runner", &all);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&o)))
}

fn locations(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["location"].as_str().unwrap().to_string())
        .collect()
}

fn gc_removes_only_a_crashed_holders_objects(root: Root) {
    let live = world(&root, "live");
    let _guard = Daemon { world: &live };
    std::fs::write(live.path("data/notes.md"), "live").unwrap();
    let o = root.run(&live, "slot-live", &["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let objects = seed_crashed(&root);
    let runner = world(&root, "runner");

    // First look: the crashed holder's lease is seen for the first time,
    // so it counts as live; nothing of it is removed.
    let v = gc_json(&root, &runner, &["--dry-run"]);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["dry_run"], true);
    let removed = locations(&v, "removed");
    assert!(
        !removed.iter().any(|l| l.contains("crashed")),
        "judged gone at first sight: {v:#}"
    );

    // One TTL later (10 s, as seen here) it is gone; the live daemon,
    // renewing every 2 s, never is.
    eventually("the crashed holder is judged gone", || {
        let v = gc_json(&root, &runner, &["--dry-run"]);
        locations(&v, "removed")
            .iter()
            .any(|l| l.contains("nested"))
    });
    let v = gc_json(&root, &runner, &["--dry-run"]);
    for (key, _) in &objects {
        assert!(root.exists(key), "dry run removed {key}");
    }
    let o = root.run(&runner, "gc-runner", &["fleet", "gc", "--dry-run"]);
    let human = String::from_utf8_lossy(&o.stdout);
    assert!(human.contains("would remove"), "{}", text(&o));

    let v2 = gc_json(&root, &runner, &[]);
    assert_eq!(v2["dry_run"], false);
    assert_eq!(
        locations(&v, "removed"),
        locations(&v2, "removed"),
        "the dry run said what gc then removed"
    );
    assert!(v2["failed"].as_array().unwrap().is_empty(), "{v2:#}");
    for (key, gone) in &objects {
        assert_eq!(!root.exists(key), *gone, "{key}: {v2:#}");
    }
    let removed = locations(&v2, "removed");
    assert_eq!(removed.len(), 5, "{v2:#}");
    assert!(removed.iter().all(|l| l.contains("crashed")), "{v2:#}");
    // The live holder's markers (root and fleet/) were seen and kept.
    let kept: Vec<&Value> = v2["kept"].as_array().unwrap().iter().collect();
    let live_markers = kept
        .iter()
        .filter(|i| {
            i["kind"] == "nested_marker" && i["location"].as_str().unwrap().contains("live")
        })
        .count();
    assert!(live_markers >= 2, "live markers not kept: {v2:#}");
    assert!(
        kept.iter().any(|i| i["kind"] == "trash_generation"
            && i["reason"]
                .as_str()
                .unwrap()
                .contains("within the retention")),
        "{v2:#}"
    );
    assert!(root.exists("fleet/live/data/notes.md"));
    assert!(root.exists("fleet/live/data/.coltec/lease.json"));
    assert!(!root.exists(OLD_TRASH));

    // A second run finds nothing more to remove.
    let v3 = gc_json(&root, &runner, &[]);
    assert!(locations(&v3, "removed").is_empty(), "{v3:#}");
}

#[test]
fn fleet_gc_on_a_local_remote_removes_a_crashed_holders_markers_and_nothing_else() {
    let shared = tempfile::tempdir().unwrap();
    gc_removes_only_a_crashed_holders_objects(Root::Local(shared.path().to_path_buf()));
}

s3_test! {
    #[test]
    fn fleet_gc_on_s3_removes_a_crashed_holders_markers_and_nothing_else(server) {
        let bucket = server.bucket("fleet-gc");
        gc_removes_only_a_crashed_holders_objects(Root::S3(server, bucket));
    }
}
