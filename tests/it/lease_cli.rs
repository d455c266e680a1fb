//! Issue 5 on real `coltecd` processes: YAML specs in tempdirs pointing at
//! each real S3 server (`support::s3`), credentials via the environment, one `COLTEC_STATE_DIR` per
//! "container". `coltecd lease hold` (hidden) is the lease half of the
//! daemon: it acquires, prints `held ...`, renews until SIGTERM, releases.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::s3::{self, S3Server};
use crate::support::{coltecd_bin, s3_test};

/// A spec file for `remote_path`s under one bucket of `server` (lease ttl
/// 10s, the loader's minimum; renew every 2s).
fn write_spec(
    server: S3Server,
    dir: &Path,
    bucket: &str,
    remote_paths: &[(&str, &str)],
) -> PathBuf {
    write_spec_via(server, server.endpoint(), dir, bucket, remote_paths)
}

/// The same with the S3 endpoint given (a `LeaseProxy` in front of the server).
fn write_spec_via(
    server: S3Server,
    endpoint: &str,
    dir: &Path,
    bucket: &str,
    remote_paths: &[(&str, &str)],
) -> PathBuf {
    let remote = server.yaml_remote("remote", bucket, endpoint);
    write_spec_with(dir, &remote, remote_paths)
}

/// The same with a `local` remote rooted at `root`.
fn write_local_spec(dir: &Path, root: &Path, remote_paths: &[(&str, &str)]) -> PathBuf {
    let remote = format!(
        "    remote:\n      type: local\n      path_prefix: {}\n",
        root.display()
    );
    write_spec_with(dir, &remote, remote_paths)
}

fn write_spec_with(dir: &Path, remote: &str, remote_paths: &[(&str, &str)]) -> PathBuf {
    let mut sync = String::new();
    for (name, rp) in remote_paths {
        sync.push_str(&format!(
            "    - name: {name}\n      path: {}\n      remote_path: \"{rp}\"\n      direction: bidirectional\n",
            dir.join(name).display()
        ));
    }
    let yaml = format!(
        "name: lease-cli\n\
         metadata:\n  org: acme\n  project: widget\n  environment: dev-a\n\
         persistence:\n  enabled: true\n  mode: replicated\n  default_remote: remote\n\
         \x20 remotes:\n{remote}\
         \x20 sync:\n{sync}\
         \x20 lease:\n    ttl: 10s\n    renew_every: 2s\n"
    );
    let path = dir.join("workspace-spec.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A "container": its own state dir and home.
struct Box_ {
    tmp: tempfile::TempDir,
}

impl Box_ {
    fn new() -> Box_ {
        Box_ {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, spec: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(coltecd_bin());
        s3::with_credentials(&mut c)
            .arg("--config")
            .arg(spec)
            .args(args)
            .env("COLTEC_STATE_DIR", self.tmp.path().join("state"))
            .env("HOME", self.tmp.path())
            .env_remove("COLTEC_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// Run to completion; a process still running after 120 s (e.g. a
    /// `lease hold` that should have been refused but holds) is killed and
    /// the test fails instead of hanging.
    fn run(&self, spec: &Path, args: &[&str]) -> Output {
        let mut child = self
            .cmd(spec, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "coltecd {args:?} did not exit: {}{}",
                    stdout(&out),
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// `lease hold` in the background; returns once it holds (or exited).
    fn hold(&self, spec: &Path) -> Holder {
        let mut child = self
            .cmd(spec, &["lease", "hold"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
        Holder {
            child,
            first_line: first,
        }
    }
}

struct Holder {
    child: Child,
    first_line: String,
}

impl Holder {
    fn holds(&self) -> bool {
        self.first_line.starts_with("held ")
    }
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
    fn kill9(mut self) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }
    /// SIGTERM (graceful: release) and the exit code.
    fn stop(mut self) -> i32 {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        wait_bounded(&mut self.child, Duration::from_secs(60))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills and reaps children on drop, so a failing test leaves no holder behind.
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_bounded(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

s3_test! {
    #[test]
    fn race_of_eight_processes_one_holds_seven_exit_4(server) {
        let bucket = server.bucket("lease-cli-race");
        let dir = tempfile::tempdir().unwrap();
        // Conditional writes one at a time: moto's are not atomic (see
        // `support::lease_proxy`), real S3's are.
        let proxy = crate::support::lease_proxy::LeaseProxy::start(
            server.endpoint(),
            crate::support::lease_proxy::Mode::Pass,
        );
        race_processes(20, "held s3://", |round| {
            write_spec_via(
                server,
                &proxy.endpoint(),
                dir.path(),
                &bucket,
                &[("state", &format!("{{org}}/{{project}}/{{env}}/r{round}"))],
            )
        });
        assert!(
            !server.list_keys(&bucket, "")
                .iter()
                .any(|k| k.ends_with("lease.json")),
            "every lease released"
        );
    }
}

#[test]
fn race_of_eight_processes_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("remote");
    race_processes(5, "held local:/", |round| {
        write_local_spec(
            dir.path(),
            &root,
            &[("state", &format!("{{org}}/{{project}}/{{env}}/r{round}"))],
        )
    });
    assert!(
        !root
            .join("acme/widget/dev-a/r0/.coltec/lease.json")
            .exists()
    );
}

fn race_processes(rounds: usize, held_prefix: &str, spec_for: impl Fn(usize) -> PathBuf) {
    for round in 0..rounds {
        let spec = spec_for(round);
        let boxes: Vec<Box_> = (0..8).map(|_| Box_::new()).collect();
        let mut guard = Reap(
            boxes
                .iter()
                .map(|b| {
                    b.cmd(&spec, &["lease", "hold"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect(),
        );
        let children = &mut guard.0;
        // Seven must exit 4; the eighth keeps holding.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut exited: Vec<(usize, i32)> = Vec::new();
        while exited.len() < 7 {
            for (i, c) in children.iter_mut().enumerate() {
                if exited.iter().any(|(j, _)| *j == i) {
                    continue;
                }
                if let Some(st) = c.try_wait().unwrap() {
                    exited.push((i, st.code().unwrap_or(-1)));
                }
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} exited",
                exited.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let winner = (0..8)
            .find(|i| !exited.iter().any(|(j, _)| j == i))
            .unwrap();
        let mut line = String::new();
        BufReader::new(children[winner].stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with(held_prefix),
            "round {round}: winner printed {line:?}"
        );
        let host = coltecd::state_dir::hostname();
        for (i, code) in &exited {
            let mut err = String::new();
            std::io::Read::read_to_string(children[*i].stderr.as_mut().unwrap(), &mut err).unwrap();
            assert_eq!(*code, 4, "round {round}: {err}");
            assert!(err.contains(&format!("host {host}")), "{err}");
            assert!(err.contains("lease break --force"), "{err}");
            assert!(err.contains("would be considered stale in"), "{err}");
            assert!(!err.contains(s3::SECRET_KEY));
        }
        kill(Pid::from_raw(children[winner].id() as i32), Signal::SIGTERM).unwrap();
        assert_eq!(
            wait_bounded(&mut children[winner], Duration::from_secs(60)),
            0
        );
    }
}

s3_test! {
    #[test]
    fn kill_9_holder_reclaims_at_once_others_wait_for_ttl(server) {
        let bucket = server.bucket("lease-cli-kill");
        let dir = tempfile::tempdir().unwrap();
        let spec = write_spec(
            server,
            dir.path(),
            &bucket,
            &[("state", "{org}/{project}/{env}/state")],
        );
        let a = Box_::new();
        let holder = a.hold(&spec);
        assert!(holder.holds(), "{}", holder.first_line);
        holder.kill9();

        // The killed container restarting reclaims its lease at once.
        let again = a.hold(&spec);
        assert!(
            again.holds(),
            "own restart must reclaim at once: {}",
            again.first_line
        );
        again.kill9();

        // Another container is refused first (not before the TTL) ...
        let b = Box_::new();
        let refused = b.run(&spec, &["lease", "hold"]);
        assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("would be considered stale in"),
            "{}",
            stderr(&refused)
        );
        // ... and takes over once it has seen the lease unrenewed for the TTL.
        let deadline = Instant::now() + Duration::from_secs(90);
        let winner = loop {
            let h = b.hold(&spec);
            if h.holds() {
                break h;
            }
            drop(h);
            assert!(Instant::now() < deadline, "never took over");
            std::thread::sleep(Duration::from_millis(500));
        };
        // The old container is now the one refused.
        let old = a.run(&spec, &["lease", "hold"]);
        assert_eq!(old.status.code(), Some(4), "{}", stderr(&old));
        assert_eq!(winner.stop(), 0);
    }
}

s3_test! {
    #[test]
    fn show_and_break_force_report_the_holder(server) {
        let bucket = server.bucket("lease-cli-break");
        let dir = tempfile::tempdir().unwrap();
        let spec = write_spec(
            server,
            dir.path(),
            &bucket,
            &[("state", "{org}/{project}/{env}/state")],
        );
        let (a, b) = (Box_::new(), Box_::new());

        let free = b.run(&spec, &["lease", "show"]);
        assert_eq!(free.status.code(), Some(0), "{}", stderr(&free));
        assert!(stdout(&free).contains("free"), "{}", stdout(&free));

        let mut holder = a.hold(&spec);
        assert!(holder.holds(), "{}", holder.first_line);

        let show = b.run(&spec, &["lease", "show"]);
        assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
        let text = stdout(&show);
        assert!(
            text.contains("held by host") && text.contains("stale in"),
            "{text}"
        );
        let json = b.run(&spec, &["lease", "show", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v[0]["state"], "held", "{v}");
        let holder_id = v[0]["holder"]["lease_id"].as_str().unwrap().to_string();
        let mine = a.run(&spec, &["lease", "show", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&mine.stdout).unwrap();
        assert_eq!(v[0]["state"], "mine", "{v}");

        let no_force = b.run(&spec, &["lease", "break"]);
        assert_eq!(no_force.status.code(), Some(2), "{}", stderr(&no_force));
        assert!(stderr(&no_force).contains("--force"));

        let broke = b.run(&spec, &["lease", "break", "--force"]);
        assert_eq!(broke.status.code(), Some(0), "{}", stderr(&broke));
        let text = stdout(&broke);
        assert!(
            text.contains("broke the lease") && text.contains(&holder_id),
            "{text}"
        );

        // The old holder finds out at its next renewal, stays fenced and exits 4.
        let code = wait_bounded(&mut holder.child, Duration::from_secs(60));
        let mut err = String::new();
        std::io::Read::read_to_string(holder.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("taken over"), "{err}");

        // The breaker's container can start at once.
        let next = b.hold(&spec);
        assert!(next.holds(), "{}", next.first_line);
        assert_eq!(next.stop(), 0);
    }
}

s3_test! {
    #[test]
    fn nested_prefixes_conflict_between_processes(server) {
        let bucket = server.bucket("lease-cli-nested");
        let dir_p = tempfile::tempdir().unwrap();
        let dir_c = tempfile::tempdir().unwrap();
        let parent = write_spec(
            server,
            dir_p.path(),
            &bucket,
            &[("all", "ws/{org}/{project}/{env}")],
        );
        let child = write_spec(
            server,
            dir_c.path(),
            &bucket,
            &[("ws", "ws/{org}/{project}/{env}/workspace")],
        );

        let p = Box_::new().hold(&parent);
        assert!(p.holds(), "{}", p.first_line);
        let refused = Box_::new().run(&child, &["lease", "hold"]);
        assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("encloses"),
            "{}",
            stderr(&refused)
        );
        assert_eq!(p.stop(), 0);

        let c = Box_::new().hold(&child);
        assert!(c.holds(), "{}", c.first_line);
        let refused = Box_::new().run(&parent, &["lease", "hold"]);
        assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("nested inside"),
            "{}",
            stderr(&refused)
        );
        assert_eq!(c.stop(), 0);
    }
}

s3_test! {
    #[test]
    fn state_dir_shared_by_two_containers_is_refused(server) {
        let bucket = server.bucket("lease-cli-shared");
        let dir = tempfile::tempdir().unwrap();
        let spec = write_spec(
            server,
            dir.path(),
            &bucket,
            &[("state", "{org}/{project}/{env}/state")],
        );
        let a = Box_::new();
        let holder = a.hold(&spec);
        assert!(holder.holds());
        // Same state dir (one named volume in two containers): not "the same holder".
        let second = a.run(&spec, &["lease", "hold"]);
        assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
        assert!(
            stderr(&second).contains("shares this directory"),
            "{}",
            stderr(&second)
        );
        assert_eq!(holder.stop(), 0);
    }
}

s3_test! {
    #[test]
    fn server_ignoring_conditional_writes_is_refused_with_exit_5(server) {
        use crate::support::lease_proxy::{LeaseProxy, Mode};
        let bucket = server.bucket("lease-cli-strip");
        let proxy = LeaseProxy::start(server.endpoint(), Mode::StripConditional);
        let dir = tempfile::tempdir().unwrap();
        let remote = server.yaml_remote("remote", &bucket, &proxy.endpoint());
        let spec = write_spec_with(
            dir.path(),
            &remote,
            &[("state", "{org}/{project}/{env}/state")],
        );
        let out = Box_::new().run(&spec, &["lease", "hold"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert!(err.contains("does not honour conditional writes"), "{err}");
        assert!(err.contains("lease: off"), "{err}");
        assert!(!err.contains(s3::SECRET_KEY), "{err}");
        assert!(stdout(&out).is_empty());
    }
}
