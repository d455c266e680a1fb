//! `kill -9` in the middle of a transfer, as happens when a devcontainer's
//! PID 1 exits: nothing torn lands on either side, and the next run resumes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::cli::{coltecd_s3 as coltecd, described as text};
use crate::support::s3::S3Server;
use crate::support::s3_test;

const BIG: usize = 24 << 20;

fn content(seed: u8) -> Vec<u8> {
    (0..BIG)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A push-only (or pull-only) target `data` on a bucket of `server`,
/// throttled so a 24 MiB transfer takes several seconds and can be interrupted.
fn write_spec(
    server: S3Server,
    dir: &Path,
    bucket: &str,
    direction: &str,
    local: &Path,
) -> PathBuf {
    let yaml = format!(
        "name: crash-test
metadata: {{org: acme, project: widget, environment: crash}}
persistence:
  enabled: true
  default_remote: s3
  remotes:
{remote}  sync:
    - name: data
      path: {local}
      remote_path: \"{{org}}/{{project}}/{{env}}/data\"
      direction: {direction}
      interval: 60
      bwlimit: 4M
  daemon:
    log_dir: {logs}
",
        remote = server.yaml_remote("s3", bucket, server.endpoint()),
        local = local.display(),
        logs = dir.join("logs").display(),
    );
    let path = dir.join(format!("{direction}.yaml"));
    fs::write(&path, yaml).unwrap();
    path
}

/// Start `cmd`, wait until `in_flight` says the transfer is under way, then
/// SIGKILL it. Returns whether it was still running when killed.
fn kill_9_mid_transfer(mut cmd: Command, in_flight: impl Fn() -> bool) -> bool {
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !in_flight() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    running
}

s3_test! {
    #[test]
    fn kill_9_during_an_upload_leaves_no_torn_object_and_the_next_run_resumes(server) {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = server.bucket("crash-up");
        let local = tmp.path().join("data");
        fs::create_dir_all(&local).unwrap();
        fs::write(local.join("small.txt"), "small").unwrap();
        let big = content(7);
        fs::write(local.join("big.bin"), &big).unwrap();
        let spec = write_spec(server, tmp.path(), &bucket, "push-only", &local);
        let state = tmp.path().join("state");
        let key = "acme/widget/crash/data/big.bin";

        // In flight: the lease is held (so the run got past its setup). The
        // throttled upload of 24 MiB then takes ~6 s.
        let lease_key = "acme/widget/crash/data/.coltec/lease.json";
        let killed_running = kill_9_mid_transfer(coltecd(&spec, &state, &["sync"]), || {
            server.list_keys(&bucket, "").iter().any(|k| k == lease_key)
        });
        assert!(
            killed_running,
            "the sync finished before it could be killed"
        );
        // All-or-nothing: the big object is absent, or complete.
        if server.list_keys(&bucket, "").iter().any(|k| k == key) {
            let r = server.request("GET", &format!("/{bucket}/{key}"), &[], b"");
            assert_eq!(r.status, 200);
            assert_eq!(r.body.len(), BIG, "a torn object was stored");
        }

        // The same container runs again: it reclaims its own lease at once and
        // completes the push.
        let o = coltecd(&spec, &state, &["sync"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let keys = server.list_keys(&bucket, "acme/widget/crash/data/");
        assert!(keys.contains(&key.to_string()), "{keys:?}");
        assert!(
            keys.contains(&"acme/widget/crash/data/small.txt".to_string()),
            "{keys:?}"
        );

        // And what is there is exactly the local file: restore it elsewhere.
        let to = tmp.path().join("restored");
        let o = coltecd(&spec, &state, &["restore", "--to", to.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            fs::read(to.join("big.bin")).unwrap() == big,
            "restored content differs"
        );
    }
}

s3_test! {
    #[test]
    fn kill_9_during_a_download_leaves_no_torn_file_and_the_next_run_resumes(server) {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = server.bucket("crash-down");
        // Seed the remote with a push from another directory.
        let seed = tmp.path().join("seed");
        fs::create_dir_all(&seed).unwrap();
        let big = content(3);
        fs::write(seed.join("big.bin"), &big).unwrap();
        let push = write_spec(server, tmp.path(), &bucket, "push-only", &seed);
        let o = coltecd(&push, &tmp.path().join("state-seed"), &["sync"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));

        // A new container pulls it, throttled, and is killed mid-download.
        let local = tmp.path().join("data");
        let pull = write_spec(server, tmp.path(), &bucket, "pull-only", &local);
        let state = tmp.path().join("state");
        let target = local.join("big.bin");
        let killed_running = kill_9_mid_transfer(coltecd(&pull, &state, &["sync"]), || {
            // A temp file next to the target means the download is under way.
            fs::read_dir(&local).is_ok_and(|d| d.count() > 0)
        });
        assert!(
            killed_running,
            "the pull finished before it could be killed"
        );
        // The user-visible file is absent or complete, never torn.
        if let Ok(got) = fs::read(&target) {
            assert!(got == big, "a torn file landed at {}", target.display());
        }

        let o = coltecd(&pull, &state, &["sync"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            fs::read(&target).unwrap() == big,
            "resumed download differs"
        );
    }
}
