//! `coltecd sync` / `coltecd restore` as a user runs them.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use coltecd::state_dir::StateDir;

use crate::support::coltecd_bin;

/// A spec with one bidirectional target synced to a local remote, all
/// under `dir`.
fn write_spec(dir: &Path, remote: &str) -> std::path::PathBuf {
    let remote_block = match remote {
        "local" => format!(
            "    disk:\n      type: local\n      path_prefix: {}\n",
            dir.join("remote").display()
        ),
        _ => "    disk:\n      type: s3\n      bucket: nowhere\n      options:\n        endpoint: http://127.0.0.1:9\n".to_string(),
    };
    let yaml = format!(
        "name: cli-test
metadata:
  org: o
  project: p
  environment: e
persistence:
  enabled: true
  default_remote: disk
  remotes:
{remote_block}  sync:
    - name: notes
      path: {local}
      remote_path: \"{{org}}/{{project}}/{{env}}/notes\"
      direction: bidirectional
      interval: 60
  daemon:
    state_dir: {state}
    log_dir: {logs}
",
        local = dir.join("notes").display(),
        state = dir.join("state").display(),
        logs = dir.join("logs").display(),
    );
    let path = dir.join("workspace-spec.yaml");
    fs::write(&path, yaml).unwrap();
    path
}

fn coltecd(spec: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(coltecd_bin());
    cmd.arg("--config").arg(spec).args(args);
    for var in [
        "COLTEC_STATE_DIR",
        "RCLONE_S3_ACCESS_KEY_ID",
        "RCLONE_S3_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn sync_once_pushes_then_reports_up_to_date_and_restore_pulls() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "local");
    fs::create_dir_all(tmp.path().join("notes/sub")).unwrap();
    fs::write(tmp.path().join("notes/sub/a.md"), "hello").unwrap();

    let o = coltecd(&spec, &["sync", "--dry-run"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains("upload: 1 files") && out.contains("sub/a.md"),
        "{out}"
    );
    assert!(!tmp.path().join("remote/o/p/e/notes/sub/a.md").exists());

    let o = coltecd(&spec, &["sync", "--once"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.starts_with("notes: uploaded 1"), "{out}");
    assert_eq!(
        fs::read_to_string(tmp.path().join("remote/o/p/e/notes/sub/a.md")).unwrap(),
        "hello"
    );
    let o = coltecd(&spec, &["sync", "--only", "notes", "--verify"]);
    let (out, _) = text(&o);
    assert_eq!(out.trim(), "notes: up to date");

    fs::write(tmp.path().join("notes/b.md"), "bee").unwrap();
    let o = coltecd(&spec, &["sync", "--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["target"], "notes");
    assert_eq!(v[0]["uploaded"], 1);
    assert_eq!(v[0]["bytes_up"], 3);
    assert_eq!(v[0]["plan"]["upload"]["first"][0], "b.md");

    let o = coltecd(
        &spec,
        &["restore", "--to", tmp.path().join("copy").to_str().unwrap()],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_eq!(
        fs::read_to_string(tmp.path().join("copy/sub/a.md")).unwrap(),
        "hello"
    );

    let o = coltecd(&spec, &["sync", "--only", "nope"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nope") && err.contains("notes"), "{err}");
}

#[test]
fn sync_refuses_while_a_daemon_holds_the_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "local");
    let _held = StateDir::at(tmp.path().join("state")).lock().unwrap();
    let o = coltecd(&spec, &["sync"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("coltecd sync --now"), "{err}");
}

#[test]
fn sync_exits_6_when_some_files_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "local");
    fs::create_dir_all(tmp.path().join("notes")).unwrap();
    fs::write(tmp.path().join("notes/good.txt"), "ok").unwrap();
    // A regular file named like a symlink object cannot be stored.
    fs::write(tmp.path().join("notes/bad.rclonelink"), "x").unwrap();
    let o = coltecd(&spec, &["sync"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}{err}");
    assert!(
        out.contains("uploaded 1") && out.contains("1 FAILED"),
        "{out}"
    );
    assert!(err.contains("clash with how symlinks are stored"), "{err}");
}

#[test]
fn sync_exits_5_without_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "s3");
    let o = coltecd(&spec, &["sync"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out}{err}");
    assert!(err.contains("credentials"), "{err}");
}
