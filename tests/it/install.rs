//! Installing coltecd (issue 16): the devcontainer Feature (its metadata
//! against the published schema, `install.sh` into a throwaway root), the
//! completions, man pages and `--version` a user gets, and the upgrade
//! procedure the README gives (replace the binary under a running daemon,
//! `stop`, `start`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::daemon::{Daemon, World, eventually, text};
use crate::support::{coltecd_bin, repo_root};

fn feature_dir() -> PathBuf {
    repo_root().join("config/devcontainer-feature/coltecd")
}

fn feature_json() -> serde_json::Value {
    let body = std::fs::read(feature_dir().join("devcontainer-feature.json")).unwrap();
    serde_json::from_slice(&body).expect("devcontainer-feature.json is JSON")
}

fn schema_errors(instance: &serde_json::Value) -> Vec<String> {
    let schema =
        std::fs::read(repo_root().join("tests/fixtures/devContainerFeature.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&schema).unwrap();
    let v = jsonschema::validator_for(&schema).expect("the vendored schema compiles");
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn feature_json_validates_against_the_published_schema() {
    let f = feature_json();
    assert_eq!(schema_errors(&f), Vec::<String>::new());
    // The validator does reject what the spec forbids (so the line above can fail).
    let mut bad_default = f.clone();
    bad_default["options"]["disabled"]["default"] = "no".into();
    let mut no_version = f.clone();
    no_version.as_object_mut().unwrap().remove("version");
    for bad in [bad_default, no_version] {
        assert!(!schema_errors(&bad).is_empty(), "accepted: {bad}");
    }
}

#[test]
fn feature_declares_coltecd_start_and_install_sh_reads_every_option() {
    let f = feature_json();
    // The spec: the id is the name of the Feature's folder.
    assert_eq!(f["id"], "coltecd");
    assert_eq!(f["postStartCommand"], "coltecd start");
    let script = std::fs::read_to_string(feature_dir().join("install.sh")).unwrap();
    let options = f["options"].as_object().unwrap();
    for name in ["source", "version", "sha256", "disabled", "specPath"] {
        assert!(options.contains_key(name), "option {name} missing");
    }
    for name in options.keys() {
        // devcontainer option resolution: non-word characters to '_', upper case.
        let var: String = name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        assert!(
            script.contains(&format!("${{{var}:-")),
            "install.sh never reads {var}"
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(feature_dir().join("install.sh"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o111, 0o111, "install.sh is not executable");
}

/// Run the Feature's install.sh as the devcontainer CLI would (options as
/// environment variables), into `root`.
fn install(root: &Path, options: &[(&str, &str)]) -> Output {
    let mut c = Command::new("sh");
    c.arg(feature_dir().join("install.sh"))
        .env("COLTECD_FEATURE_ROOT", root)
        .stdin(Stdio::null());
    for var in ["SOURCE", "VERSION", "SHA256", "DISABLED", "SPECPATH"] {
        c.env_remove(var);
    }
    for (k, v) in options {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// The installed `coltecd` command with a clean coltecd environment.
fn installed(root: &Path) -> Command {
    let mut c = Command::new(root.join("usr/local/bin/coltecd"));
    for v in [
        "COLTEC_CONFIG",
        "COLTEC_DISABLED",
        "COLTEC_STATE_DIR",
        "RCLONE_BUCKET",
    ] {
        c.env_remove(v);
    }
    c.stdin(Stdio::null());
    c
}

#[test]
fn feature_install_sh_installs_binary_completions_and_man_pages_into_a_throwaway_root() {
    let root = tempfile::tempdir().unwrap();
    let bin = coltecd_bin();
    let o = install(
        root.path(),
        &[
            ("SOURCE", bin.to_str().unwrap()),
            ("VERSION", env!("CARGO_PKG_VERSION")),
            ("SHA256", &sha256(&bin)),
            ("DISABLED", "false"),
            ("SPECPATH", ""),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v = installed(root.path()).arg("--version").output().unwrap();
    let line = String::from_utf8_lossy(&v.stdout).into_owned();
    assert!(
        line.starts_with(&format!("coltecd {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    for (file, word) in [
        ("usr/share/bash-completion/completions/coltecd", "restore"),
        (
            "usr/local/share/zsh/site-functions/_coltecd",
            "#compdef coltecd",
        ),
        (
            "usr/share/fish/vendor_completions.d/coltecd.fish",
            "complete -c coltecd",
        ),
        ("usr/local/share/man/man1/coltecd.1", "EXIT STATUS"),
        (
            "usr/local/share/man/man1/coltecd-start.1",
            "coltecd\\-start",
        ),
    ] {
        let body = std::fs::read_to_string(root.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(body.contains(word), "{file} lacks {word}");
    }
    // Without options the command is a plain exec: nothing is defaulted.
    let wrapper = std::fs::read_to_string(root.path().join("usr/local/bin/coltecd")).unwrap();
    assert!(!wrapper.contains("COLTEC_"), "{wrapper}");
}

#[test]
fn feature_options_become_defaults_the_container_env_overrides_and_storage_vars_pass_through() {
    let root = tempfile::tempdir().unwrap();
    let spec = repo_root().join("config/r2.yaml");
    let o = install(
        root.path(),
        &[
            ("SOURCE", &format!("file://{}", coltecd_bin().display())),
            ("DISABLED", "true"),
            ("SPECPATH", spec.to_str().unwrap()),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // disabled: `coltecd start` (the postStartCommand) pauses.
    let o = installed(root.path()).arg("start").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "coltecd: disabled by COLTEC_DISABLED"
    );
    // specPath is the default spec; the storage variables reach coltecd.
    let o = installed(root.path()).arg("validate").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("RCLONE_BUCKET"),
        "{}",
        text(&o)
    );
    let o = installed(root.path())
        .arg("validate")
        .env("RCLONE_BUCKET", "feature-bucket")
        .env("RCLONE_S3_ENDPOINT", "http://127.0.0.1:9")
        .env("RCLONE_S3_ACCESS_KEY_ID", "AKIDFEATURE")
        .env("RCLONE_S3_SECRET_ACCESS_KEY", "feature-secret-value")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("{}: valid", spec.display())), "{out}");
    assert!(out.contains("s3 bucket feature-bucket"), "{out}");
    assert!(!text(&o).contains("feature-secret-value"));
    // The container's own COLTEC_CONFIG / COLTEC_DISABLED win over the options.
    let o = installed(root.path())
        .arg("start")
        .env("COLTEC_DISABLED", "false")
        .env("COLTEC_CONFIG", "/nonexistent/from-container-env.yaml")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/from-container-env.yaml"));
}

#[test]
fn feature_install_refuses_a_wrong_checksum_version_or_binary_and_installs_nothing() {
    let bin = coltecd_bin();
    let not_coltecd = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_coltecd.path(), "#!/bin/sh\necho hello 1.0\n").unwrap();
    let broken = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(broken.path(), b"\x7fELF not really").unwrap();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("SOURCE", bin.to_str().unwrap()), ("SHA256", "00ff")],
            "SHA-256 of",
        ),
        (
            &[("SOURCE", bin.to_str().unwrap()), ("VERSION", "99.0.0")],
            "asked for coltecd 99.0.0",
        ),
        (
            &[("SOURCE", not_coltecd.path().to_str().unwrap())],
            "is not coltecd",
        ),
        (
            &[("SOURCE", broken.path().to_str().unwrap())],
            "does not run in this image",
        ),
        (
            &[("SOURCE", "/nonexistent/coltecd")],
            "no binary at /nonexistent/coltecd",
        ),
    ];
    for (options, expected) in cases {
        let root = tempfile::tempdir().unwrap();
        let o = install(root.path(), options);
        assert_ne!(o.status.code(), Some(0), "{options:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(expected),
            "{options:?}: {}",
            text(&o)
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "{options:?} installed files"
        );
    }
}

/// Serve `body` to one HTTP GET on a loopback port; returns the URL prefix.
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "client closed early");
            req.extend_from_slice(&buf[..n]);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        String::from_utf8_lossy(&req)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    });
    (url, handle)
}

#[test]
fn feature_downloads_from_a_url_with_version_and_arch_substituted() {
    let bin = coltecd_bin();
    let (url, server) = serve_once(std::fs::read(&bin).unwrap());
    let root = tempfile::tempdir().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let o = install(
        root.path(),
        &[
            (
                "SOURCE",
                &format!("{url}/coltecd/{{version}}/coltecd-{{arch}}-linux-gnu"),
            ),
            ("VERSION", version),
            ("SHA256", &sha256(&bin)),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let arch = std::env::consts::ARCH;
    assert_eq!(
        server.join().unwrap(),
        format!("GET /coltecd/{version}/coltecd-{arch}-linux-gnu HTTP/1.1")
    );
    assert!(
        root.path()
            .join("usr/local/libexec/coltecd/coltecd")
            .is_file()
    );
}

#[test]
fn version_flag_names_version_commit_and_target_and_status_json_carries_them() {
    let o = Command::new(coltecd_bin())
        .arg("--version")
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let expected = format!("coltecd {}", coltecd::version::LONG);
    assert_eq!(line, expected);
    let target = coltecd::version::TARGET;
    assert!(target.contains("linux"), "{target}");
    let w = World::new();
    w.write_local_spec(&[("notes", "push-only")], "");
    let (_, v) = crate::daemon::status_json(&w);
    assert_eq!(
        v["build"],
        serde_json::json!({
            "version": coltecd::version::VERSION,
            "commit": coltecd::version::COMMIT,
            "target": target,
        })
    );
}

#[test]
fn completions_and_man_from_the_binary_name_real_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = Command::new(coltecd_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        for sub in ["start", "stop", "status", "restore", "lease", "validate"] {
            assert!(out.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let o = Command::new(coltecd_bin()).arg("man").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(".TH coltecd 1"), "{out}");
    for sub in [
        "coltecd\\-start(1)",
        "coltecd\\-sync(1)",
        "coltecd\\-restore(1)",
    ] {
        assert!(out.contains(sub), "man page lacks {sub}");
    }
}

/// The README's upgrade procedure: `install` a new binary over the path a
/// daemon runs from, `coltecd stop`, `coltecd start`; the new process takes
/// over the state dir and lease, and changes made meanwhile are pushed.
/// Put a copy of the coltecd binary at `to` with install(1) (unlink +
/// create). A child process makes the copy, not `std::fs::copy`: a write
/// descriptor of ours on `to` would be inherited by any process another
/// test thread forks meanwhile, and exec'ing `to` would then fail with
/// ETXTBSY ("Text file busy").
fn install_binary(to: &Path) {
    let o = Command::new("install")
        .args(["-m", "0755"])
        .arg(coltecd_bin())
        .arg(to)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn upgrade_replacing_the_binary_under_a_running_daemon_then_stop_start_resumes() {
    let w = World::new();
    w.write_local_spec(&[("notes", "bidirectional")], "");
    let bin_dir = w.path("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("coltecd");
    install_binary(&bin);
    // The world's environment, this copy of the binary.
    let run = |args: &[&str]| -> Output {
        let mut c = Command::new(&bin);
        for (k, v) in w.cmd().get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(args).stdin(Stdio::null()).output().unwrap()
    };
    let _guard = Daemon { world: &w };
    let o = run(&["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let old_pid = w.pid().expect("pidfile");
    std::fs::write(w.path("notes/before.txt"), "before").unwrap();
    let pushed = |name: &str| {
        let remote = w.remote().join("acme/widget/dev-a/notes").join(name);
        move || remote.is_file()
    };
    eventually("before.txt pushed", pushed("before.txt"));

    // Replace the binary the daemon runs from (unlink + create: `install`).
    install_binary(&bin);
    let exe = std::fs::read_link(format!("/proc/{old_pid}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().ends_with(" (deleted)"),
        "{}",
        exe.display()
    );

    let o = run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::write(w.path("notes/while-stopped.txt"), "meanwhile").unwrap();
    let o = run(&["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let new_pid = w.pid().expect("pidfile");
    assert_ne!(new_pid, old_pid);
    let exe = std::fs::read_link(format!("/proc/{new_pid}/exe")).unwrap();
    assert_eq!(exe, bin, "the new daemon runs the new binary");
    eventually("while-stopped.txt pushed", pushed("while-stopped.txt"));
    let o = run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
