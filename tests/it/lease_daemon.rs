//! Issue 5 through the real daemon: `coltecd start` in several "containers"
//! (own spec, state dir, logs and synced directory each) pointed at one S3
//! prefix on each real S3 server (`support::s3`). Reuses the daemon tests' [`World`] and [`Daemon`] guard.

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{Daemon, World, text};
use crate::support::s3::{self, S3Server};
use crate::support::s3_test;

/// A world whose only target writes `remote_path` in `bucket` of `server`,
/// reached at `endpoint` (lease ttl 10s, the loader's minimum).
fn s3_world_at(server: S3Server, endpoint: &str, bucket: &str, remote_path: &str) -> World {
    let w = World::new();
    std::fs::create_dir_all(w.path("data")).unwrap();
    w.write_spec(
        &format!(
            "  default_remote: s3\n  remotes:\n{}  sync:\n    - name: data\n      path: {}\n      remote_path: \"{remote_path}\"\n      direction: bidirectional\n      interval: 10\n  lease:\n    ttl: 10s\n    renew_every: 2s\n",
            server.yaml_remote("s3", bucket, endpoint),
            w.path("data").display()
        ),
        "",
    );
    w
}

fn s3_world(server: S3Server, bucket: &str, remote_path: &str) -> World {
    s3_world_at(server, server.endpoint(), bucket, remote_path)
}

fn coltecd(w: &World, args: &[&str]) -> std::process::Command {
    let mut c = w.cmd();
    s3::with_credentials(&mut c)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Run to completion, bounded (a hung command fails the test).
fn run(w: &World, args: &[&str]) -> Output {
    let child = coltecd(w, args).spawn().unwrap();
    finish(child)
}

fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "coltecd did not exit: {}",
                text(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn kill9(w: &World) {
    let pid = w.pid().expect("daemon pidfile");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok() {
        assert!(Instant::now() < deadline, "daemon survived kill -9");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lease_objects(server: S3Server, bucket: &str) -> Vec<String> {
    server
        .list_keys(bucket, "")
        .into_iter()
        .filter(|k| k.ends_with(".coltec/lease.json"))
        .collect()
}

s3_test! {
    #[test]
    fn eight_containers_start_at_once_one_daemon_holds_seven_exit_4(server) {
        let bucket = server.bucket("lease-daemon-race");
        // Conditional writes one at a time: moto's are not atomic (see
        // `support::lease_proxy`), real S3's are.
        let proxy = crate::support::lease_proxy::LeaseProxy::start(
            server.endpoint(),
            crate::support::lease_proxy::Mode::Pass,
        );
        for round in 0..20 {
            let worlds: Vec<World> = (0..8)
                .map(|_| {
                    s3_world_at(
                        server,
                        &proxy.endpoint(),
                        &bucket,
                        &format!("{{org}}/{{project}}/{{env}}/r{round}"),
                    )
                })
                .collect();
            let _guards: Vec<Daemon> = worlds.iter().map(|w| Daemon { world: w }).collect();
            let children: Vec<Child> = worlds
                .iter()
                .map(|w| coltecd(w, &["start"]).spawn().unwrap())
                .collect();
            let outs: Vec<Output> = children.into_iter().map(finish).collect();
            let winners: Vec<usize> = (0..8)
                .filter(|&i| outs[i].status.code() == Some(0))
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "round {round}: {:#?}",
                outs.iter().map(text).collect::<Vec<_>>()
            );
            let host = coltecd::state_dir::hostname();
            for (i, o) in outs.iter().enumerate() {
                if i == winners[0] {
                    continue;
                }
                let err = String::from_utf8_lossy(&o.stderr);
                assert_eq!(o.status.code(), Some(4), "round {round}: {}", text(o));
                assert!(err.contains(&format!("host {host}")), "{err}");
                assert!(err.contains("lease break --force"), "{err}");
                assert!(!err.contains(s3::SECRET_KEY));
                assert!(worlds[i].pid().is_none(), "a refused start left a daemon");
            }
            // Graceful stop releases the lease.
            let stop = run(&worlds[winners[0]], &["stop"]);
            assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
            assert!(
                lease_objects(server, &bucket).is_empty(),
                "{:?}",
                lease_objects(server, &bucket)
            );
        }
    }
}

s3_test! {
    #[test]
    fn daemon_killed_with_9_reclaims_at_once_others_take_over_after_ttl(server) {
        let bucket = server.bucket("lease-daemon-kill");
        let path = "{org}/{project}/{env}/state";
        let a = s3_world(server, &bucket, path);
        let b = s3_world(server, &bucket, path);
        let (_ga, _gb) = (Daemon { world: &a }, Daemon { world: &b });

        let o = run(&a, &["start"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        kill9(&a);

        // The same container restarting reclaims its lease at once.
        let o = run(&a, &["start"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "own restart must reclaim: {}",
            text(&o)
        );
        kill9(&a);

        // Another container: refused first ...
        let o = run(&b, &["start"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("would be considered stale in"),
            "{}",
            text(&o)
        );
        // ... then takes over once it has seen the lease unrenewed for the TTL.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let o = run(&b, &["start"]);
            match o.status.code() {
                Some(0) => break,
                Some(4) => {}
                _ => panic!("{}", text(&o)),
            }
            assert!(Instant::now() < deadline, "never took over");
            std::thread::sleep(Duration::from_millis(500));
        }
        // Now the old container is the one refused.
        let o = run(&a, &["start"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        let o = run(&b, &["stop"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(lease_objects(server, &bucket).is_empty());
    }
}

fn status(w: &World) -> (Option<i32>, serde_json::Value) {
    let o = run(w, &["status", "--json"]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code(), v)
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An object's content, read with real (signed) requests.
fn remote_text(server: S3Server, bucket: &str, key: &str) -> Option<String> {
    let op = coltecd::remote::operator_at(
        &server.remote(bucket),
        &coltecd::spec::Location::S3 {
            bucket: bucket.into(),
            key_prefix: String::new(),
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(op.read(key))
        .ok()
        .map(|b| String::from_utf8_lossy(&b.to_vec()).into_owned())
}

s3_test! {
    #[test]
    fn daemon_cut_off_fences_reports_lost_and_never_overwrites_its_successor(server) {
        use crate::support::lease_proxy::{LeaseProxy, Mode};
        let bucket = server.bucket("lease-daemon-fence");
        let proxy = LeaseProxy::start(server.endpoint(), Mode::Pass);
        let path = "{org}/{project}/{env}/state";
        let key = |f: &str| format!("acme/widget/dev-a/state/{f}");

        // A reaches the server only through the proxy; B directly.
        let a = s3_world_at(server, &proxy.endpoint(), &bucket, path);
        let b = s3_world(server, &bucket, path);
        let (_ga, _gb) = (Daemon { world: &a }, Daemon { world: &b });

        let o = run(&a, &["start"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        std::fs::write(a.path("data/f.txt"), "synced before the cut").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while remote_text(server, &bucket, &key("f.txt")).is_none() {
            assert!(
                Instant::now() < deadline,
                "A never pushed f.txt: {}",
                a.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }

        // Cut A off: it must stop writing and say so.
        proxy.set_mode(Mode::Down);
        eventually("A reports the lease lost", || {
            let (_, v) = status(&a);
            v["leases"]["writes_allowed"] == false && v["leases"]["detail"][0]["state"] == "lost"
        });
        let (code, _) = status(&a);
        assert_eq!(code, Some(1), "status is degraded while the lease is lost");
        std::fs::write(a.path("data/g.txt"), "from the fenced holder").unwrap();

        // B is refused first, then takes over after the TTL and writes g.txt.
        let o = run(&b, &["start"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        eventually("B takes over", || {
            run(&b, &["start"]).status.code() == Some(0)
        });
        std::fs::write(b.path("data/g.txt"), "from the new holder").unwrap();
        eventually("B pushes g.txt", || {
            remote_text(server, &bucket, &key("g.txt")).as_deref() == Some("from the new holder")
        });

        // A comes back: it finds the lease taken over and stops, without writing.
        proxy.set_mode(Mode::Pass);
        eventually("A's daemon stops", || {
            a.pid().is_none_or(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err()
            })
        });
        assert_eq!(
            remote_text(server, &bucket, &key("g.txt")).as_deref(),
            Some("from the new holder"),
            "the fenced holder overwrote its successor"
        );
        let show = run(&b, &["lease", "show", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
        assert_eq!(v[0]["state"], "mine", "{v}");
        let o = run(&b, &["stop"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
}

s3_test! {
    #[test]
    fn one_shot_sync_takes_and_releases_the_lease_and_is_refused_while_held(server) {
        let bucket = server.bucket("lease-daemon-sync");
        let path = "{org}/{project}/{env}/state";
        let a = s3_world(server, &bucket, path);
        let b = s3_world(server, &bucket, path);
        let (_ga, _gb) = (Daemon { world: &a }, Daemon { world: &b });
        std::fs::write(b.path("data/x.txt"), "x").unwrap();

        // Free prefix: the one-shot sync leases it for the run, then releases.
        let o = run(&b, &["sync"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            lease_objects(server, &bucket).is_empty(),
            "{:?}",
            lease_objects(server, &bucket)
        );

        // Another container's daemon holds it: the manual sync is refused.
        let o = run(&a, &["start"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let o = run(&b, &["sync"]);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("lease break --force"),
            "{}",
            text(&o)
        );
        // A dry run writes nothing and needs no lease.
        let o = run(&b, &["sync", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let o = run(&a, &["stop"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
}
