//! `coltecd validate` as a user runs it: the real binary, exit codes,
//! human and JSON output, and no secret in either.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::{SECRET, fixture, test_env};
use crate::support::{coltecd_bin, repo_root};

/// Run `coltecd` with exactly `env` (nothing inherited from the test process).
fn coltecd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(coltecd_bin());
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn full_env() -> Vec<(String, String)> {
    test_env().into_iter().collect()
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn validate_local_config_prints_the_targets() {
    let local = repo_root().join("config/local.yaml");
    let out = coltecd(
        &["validate", "--config", local.to_str().unwrap()],
        &[("HOME", "/home/demo")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("workspace demo/coltecd/local"), "{stdout}");
    assert!(stdout.contains("agent-context"), "{stdout}");
    assert!(
        stdout.contains("/home/demo/coltecd-demo/agent-context <-> local:/home/demo/coltecd-demo/remote/demo/coltecd/local/agent-context"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bidirectional, every 1m, 3 exclude(s)"),
        "{stdout}"
    );
}

#[test]
fn validate_json_is_stable_and_parses() {
    let env = full_env();
    let f = fixture("valid_workspace.yaml");
    let out = coltecd(
        &["validate", "--json", "--config", f.to_str().unwrap()],
        &refs(&env),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["workspace"]["slug"], "test-org/test-proj/env-test");
    let t = &v["targets"][0];
    assert_eq!(t["name"], "agent-context");
    assert_eq!(t["local_path"], "/workspace/agent-context");
    assert_eq!(
        t["location"],
        "s3://coltec-workspaces/workspaces/test-org/test-proj/env-test/agent-context"
    );
    assert_eq!(t["direction"], "bidirectional");
    assert_eq!(t["interval_secs"], 60);
    assert_eq!(t["excludes"].as_array().unwrap().len(), 5);
    assert_eq!(v["remotes"]["r2coltec"]["credentials"], true);
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "secret leaked"
    );
}

#[test]
fn validate_invalid_spec_exits_3_with_the_field_on_stderr() {
    let env = full_env();
    let f = fixture("invalid_interval_too_low.yaml");
    let out = coltecd(&["validate", "--config", f.to_str().unwrap()], &refs(&env));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("persistence.sync[0].interval: 5s is below the minimum of 10s"),
        "{stderr}"
    );
    assert!(stderr.contains("help: "), "{stderr}");

    let out = coltecd(
        &["validate", "--json", "--config", f.to_str().unwrap()],
        &refs(&env),
    );
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"persistence.sync[0].interval"),
        "{fields:?}"
    );
    assert!(v["errors"][0]["hint"].is_string());
}

#[test]
fn validate_reads_coltec_config_and_explains_a_missing_file() {
    let env = full_env();
    let f = fixture("named_remotes_workspace.yaml");
    let mut e = refs(&env);
    e.push(("COLTEC_CONFIG", f.to_str().unwrap()));
    let out = coltecd(&["validate"], &e);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let out = coltecd(
        &["validate", "--config", "/nonexistent/workspace-spec.yaml"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr.contains("no spec file at /nonexistent/workspace-spec.yaml"),
        "{stderr}"
    );
    assert!(stderr.contains("--config PATH"), "{stderr}");

    // Without --config or COLTEC_CONFIG the documented default is tried.
    let out = coltecd(&["validate"], &[]);
    let (_, stderr) = text(&out);
    if !Path::new(coltecd::cli::DEFAULT_SPEC_PATH).exists() {
        assert_eq!(out.status.code(), Some(3));
        assert!(stderr.contains(coltecd::cli::DEFAULT_SPEC_PATH), "{stderr}");
    }
}

#[test]
fn no_secret_in_any_validate_output() {
    let env = full_env();
    let tmp = tempfile::tempdir().unwrap();
    // A literal secret in a field that is wrong, plus secrets from the environment.
    let bad = tmp.path().join("workspace-spec.yaml");
    std::fs::write(
        &bad,
        super::bad::BASE
            .replace(
                "bucket: bkt",
                "bucket: bkt\n      path_prefix: \"${RCLONE_S3_SECRET_ACCESS_KEY}/../x\"",
            )
            .replace("interval: 60", "interval: 1"),
    )
    .unwrap();
    for f in [
        fixture("incumbent_repo_workspace.yaml"),
        fixture("valid_workspace.yaml"),
        bad,
    ] {
        for json in [false, true] {
            let mut args = vec!["validate", "--config", f.to_str().unwrap()];
            if json {
                args.push("--json");
            }
            let out = coltecd(&args, &refs(&env));
            let (stdout, stderr) = text(&out);
            assert!(!stdout.is_empty() || !stderr.is_empty());
            assert!(
                !stdout.contains(SECRET),
                "{}: secret in stdout:\n{stdout}",
                f.display()
            );
            assert!(
                !stderr.contains(SECRET),
                "{}: secret in stderr:\n{stderr}",
                f.display()
            );
        }
    }
}

/// `validate`'s summary of a valid spec and its report on every invalid
/// compat file, pinned as snapshots (tests/it/spec/snapshots/): any change
/// to what a user reads shows up as a diff to review.
#[test]
fn validate_output_snapshot() {
    let f = fixture("named_remotes_workspace.yaml");
    let out = coltecd(
        &["validate", "--config", f.to_str().unwrap()],
        &[
            ("RCLONE_S3_ACCESS_KEY_ID", SECRET),
            ("RCLONE_S3_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout)
        .unwrap()
        .replace(repo_root().to_str().unwrap(), "<repo>");
    insta::assert_snapshot!("validate_named_remotes", stdout);
}

#[test]
fn spec_error_snapshots_for_every_invalid_compat_file() {
    let env = full_env();
    let mut names: Vec<_> = std::fs::read_dir(repo_root().join("tests/fixtures/compat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("invalid_"))
        })
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for path in names {
        let out = coltecd(
            &["validate", "--config", path.to_str().unwrap()],
            &refs(&env),
        );
        assert_eq!(out.status.code(), Some(3));
        let stderr = String::from_utf8(out.stderr)
            .unwrap()
            .replace(repo_root().to_str().unwrap(), "<repo>");
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("spec_error_{name}"), stderr);
    }
}

#[test]
fn validate_exit_codes_for_every_compat_file() {
    let env = full_env();
    for entry in std::fs::read_dir(repo_root().join("tests/fixtures/compat")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = coltecd(
            &["validate", "--config", path.to_str().unwrap()],
            &refs(&env),
        );
        // The test env's RCLONE_CRYPT_PASSWORD is not in rclone's obscured
        // form: the incumbent's encrypted target cannot be served (6, the
        // preflight), its other targets can.
        let want = if name.starts_with("invalid_") {
            3
        } else if name == "incumbent_repo_workspace.yaml" {
            6
        } else {
            0
        };
        assert_eq!(out.status.code(), Some(want), "{name}: {:?}", text(&out));
    }
}
