//! Issue 13 (hardening), the spec and secrets items, through the binary as
//! a user meets them: secrets at `trace` (5), out-of-range durations and
//! counts (9), placeholders that are not text (10), hostile spec files
//! (11) and misleading errors (12). The spec-loader fuzz target is
//! `hardening_spec_fuzz`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::s3::S3Server;
use crate::support::{coltecd_bin, s3};

mod fuzz;

/// Run `coltecd` with exactly `env` (nothing inherited), in `dir`.
fn coltecd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(coltecd_bin());
    cmd.args(args).env_clear().current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run coltecd")
}

fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_spec(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("workspace-spec.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

const META: &str = "metadata: {org: acme, project: widget, environment: dev}\n";

/// A spec with one target on a local remote, plus `extra` under `persistence`.
fn local_spec(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write_spec(
        dir,
        &format!(
            "{META}persistence:\n  enabled: true\n  remotes:\n    l: {{type: local, path_prefix: {}}}\n  sync:\n    - name: data\n      path: ./data\n{extra}",
            dir.join("remote").display()
        ),
    )
}

// ------------------------------------------------------------------ 5: secrets

const SESSION_TOKEN: &str = "coltecd-test-session-token-never-logged";
const ENDPOINT_USER: &str = "endpointuser";
const ENDPOINT_PASSWORD: &str = "endpoint-password-never-logged";

fn assert_no_secret(what: &str, text: &str) {
    for s in [
        s3::ACCESS_KEY,
        s3::SECRET_KEY,
        SESSION_TOKEN,
        ENDPOINT_PASSWORD,
    ] {
        assert!(!text.contains(s), "{what} printed a secret ({s}):\n{text}");
    }
}

/// An s3 spec whose endpoint carries `user:password@`, credentials in the
/// environment.
fn s3_spec(dir: &Path, endpoint: &str, bucket: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/notes.txt"), "hello").unwrap();
    let with_userinfo = endpoint.replacen(
        "://",
        &format!("://{ENDPOINT_USER}:{ENDPOINT_PASSWORD}@"),
        1,
    );
    write_spec(
        dir,
        &format!(
            "{META}persistence:\n  enabled: true\n  remotes:\n    s3r:\n      type: s3\n      bucket: {bucket}\n      options:\n        endpoint: {with_userinfo}\n  sync:\n    - name: data\n      path: ./data\n      interval: 60\n"
        ),
    )
}

fn secret_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOME", dir.display().to_string()),
        ("COLTEC_STATE_DIR", dir.join("state").display().to_string()),
        ("RCLONE_S3_ACCESS_KEY_ID", s3::ACCESS_KEY.to_string()),
        ("RCLONE_S3_SECRET_ACCESS_KEY", s3::SECRET_KEY.to_string()),
        ("RCLONE_S3_SESSION_TOKEN", SESSION_TOKEN.to_string()),
        ("RUST_BACKTRACE", "1".to_string()),
    ]
}

fn refs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn no_secret_at_trace_in_validate_sync_or_s3_errors() {
    let endpoint = S3Server::Moto.endpoint();
    let bucket = S3Server::Moto.bucket("secrets-trace");
    let dir = tempfile::tempdir().unwrap();
    let spec = s3_spec(dir.path(), endpoint, &bucket);
    let spec = spec.to_str().unwrap();
    let env = secret_env(dir.path());

    // validate and validate --json show the endpoint without its userinfo
    // and say it was left out.
    let out = coltecd(dir.path(), &["validate", "--config", spec], &refs(&env));
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_no_secret("validate", &text);
    assert!(text.contains(&format!("endpoint {endpoint},")), "{text}");
    assert!(text.contains("which S3 does not use"), "{text}");
    let out = coltecd(
        dir.path(),
        &["validate", "--json", "--config", spec],
        &refs(&env),
    );
    assert_no_secret("validate --json", &all_output(&out));

    // A real pass at trace, the level given three ways.
    for (how, args, var) in [
        ("--log-level", vec!["--log-level", "trace"], None),
        ("RUST_LOG", vec![], Some(("RUST_LOG", "trace"))),
        (
            "COLTEC_LOG_LEVEL",
            vec![],
            Some(("COLTEC_LOG_LEVEL", "trace")),
        ),
    ] {
        let mut e = refs(&env);
        e.extend(var);
        let mut a = args.clone();
        a.extend(["--config", spec, "sync"]);
        let out = coltecd(dir.path(), &a, &e);
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(0), "{how}: {text}");
        assert!(text.contains("TRACE"), "{how}: not at trace:\n{text}");
        assert_no_secret(how, &text);
    }

    // An S3 error (the bucket does not exist) quotes the request URL.
    let missing = dir.path().join("missing");
    std::fs::create_dir_all(&missing).unwrap();
    let spec = s3_spec(&missing, endpoint, "no-such-bucket-coltecd");
    let out = coltecd(
        &missing,
        &[
            "--log-level",
            "trace",
            "--config",
            spec.to_str().unwrap(),
            "sync",
        ],
        &refs(&env),
    );
    let text = all_output(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert_no_secret("a failing sync", &text);
}

#[test]
fn retry_warnings_are_one_line_without_backtraces_or_secrets() {
    // Every request is answered `503 SlowDown`, so every one is retried (a
    // closed port no longer is: a refused connection is reported at once).
    let proxy = crate::support::proxy::Proxy::start("http://127.0.0.1:1");
    proxy.fail_next(u32::MAX);
    let dir = tempfile::tempdir().unwrap();
    let spec = s3_spec(dir.path(), &proxy.endpoint, "bkt");
    let env = secret_env(dir.path());
    let out = coltecd(
        dir.path(),
        &[
            "--log-level",
            "trace",
            "--config",
            spec.to_str().unwrap(),
            "sync",
        ],
        &refs(&env),
    );
    let text = all_output(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert_no_secret("retries", &text);
    let retries: Vec<&str> = text.lines().filter(|l| l.contains("will retry")).collect();
    assert!(!retries.is_empty(), "no retry was logged:\n{text}");
    assert!(
        !text.contains("Backtrace") && !text.contains("stack backtrace"),
        "RUST_BACKTRACE=1 put backtraces into the log:\n{text}"
    );
    // One line each: the error's context is on the retry line itself.
    assert!(
        retries.iter().all(|l| l.contains("127.0.0.1")),
        "{retries:?}"
    );
}

// ------------------------------------------------------------------ 9: ranges

#[test]
fn huge_durations_and_counts_are_refused_by_validate_not_panicking_later() {
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(
        dir.path(),
        "      interval: 100000000d\n      transfers: 100000\n      checkers: 18446744073709551615\n      priority: 4294967295\n  lease: {ttl: 60s, renew_every: 9223372036854775808s}\n  daemon: {debounce: 10000000d, flush_deadline: 9223372036854775807, max_requests_per_second: 4294967295}\n  safety: {trash_retention: 100000d}\n",
    );
    let spec = spec.to_str().unwrap();
    let home = dir.path().display().to_string();
    for args in [
        vec!["validate", "--config", spec],
        vec!["--config", spec, "sync"],
        vec!["--config", spec, "status"],
        vec!["--config", spec, "stop"],
    ] {
        let out = coltecd(dir.path(), &args, &[("HOME", &home)]);
        let text = all_output(&out);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        if args[0] == "validate" || args[2] == "sync" {
            assert_eq!(out.status.code(), Some(3), "{args:?}: {text}");
        }
    }
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec],
        &[("HOME", &home)],
    );
    let text = all_output(&out);
    for field in [
        "persistence.sync[0].interval:",
        "is above the maximum of 7days",
        "persistence.sync[0].transfers: 100000 is above the maximum of 256",
        "persistence.sync[0].checkers: 18446744073709551615 is above the maximum of 256",
        "persistence.sync[0].priority: 4294967295 is above the maximum of 1000",
        "persistence.lease.renew_every:",
        "persistence.daemon.debounce:",
        "persistence.daemon.flush_deadline:",
        "persistence.daemon.max_requests_per_second: 4294967295 is above the maximum",
        "persistence.safety.trash_retention:",
    ] {
        assert!(text.contains(field), "missing {field}:\n{text}");
    }
    // Each range is stated in the hint.
    assert!(text.contains("use a duration from 0s to 10m"), "{text}");
    assert!(text.contains("use a duration from 1s to 10m"), "{text}");
}

// ------------------------------------------------------------------ 10: placeholders

#[test]
fn null_boolean_and_number_placeholders_are_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let spec = write_spec(
        dir.path(),
        &format!(
            "metadata: {{org: ~, project: false, environment: 0x1F}}\npersistence:\n  enabled: true\n  remotes:\n    l: {{type: local, path_prefix: {}}}\n  sync:\n    - name: data\n      path: ./data\n      remote_path: \"{{org}}/{{project}}/{{env}}\"\n",
            dir.path().join("remote").display()
        ),
    );
    let spec = spec.to_str().unwrap();
    let env = [("HOME", home.to_str().unwrap())];
    let out = coltecd(dir.path(), &["validate", "--config", spec], &env);
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("metadata.org: invalid type: null"), "{text}");
    for (yaml, want) in [
        ("org: ~, project: p", "metadata.org: invalid type: null"),
        (
            "org: o, project: null",
            "metadata.project: invalid type: null",
        ),
        (
            "org: o, project: false",
            "metadata.project: invalid type: boolean `false`",
        ),
        (
            "org: o, project: p, environment: 0x1F",
            "metadata.environment: invalid type: integer `31`",
        ),
    ] {
        let spec = write_spec(dir.path(), &format!("metadata: {{{yaml}}}\n"));
        let out = coltecd(
            dir.path(),
            &["validate", "--config", spec.to_str().unwrap()],
            &env,
        );
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(3), "{yaml}: {text}");
        assert!(text.contains(want), "{yaml}: missing {want}:\n{text}");
    }
    // Nothing is written, least of all under $HOME (where `~` would lead).
    let spec = write_spec(
        dir.path(),
        &format!(
            "metadata: {{org: ~, project: p, environment: e}}\npersistence:\n  enabled: true\n  remotes:\n    l: {{type: local, path_prefix: {}}}\n  sync:\n    - name: data\n      path: ./data\n      remote_path: \"{{org}}/{{project}}/{{env}}\"\n",
            dir.path().join("remote").display()
        ),
    );
    let out = coltecd(
        dir.path(),
        &["--config", spec.to_str().unwrap(), "sync"],
        &env,
    );
    assert_eq!(out.status.code(), Some(3), "{}", all_output(&out));
    assert!(!home.exists(), "sync wrote under HOME");

    // Quoted, the text is meant literally, and then judged as a name.
    let spec = write_spec(
        dir.path(),
        "metadata: {org: \"~\", project: \"$HOME\", environment: \"0x1F\"}\n",
    );
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec.to_str().unwrap()],
        &env,
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("metadata.org: `~` contains characters"),
        "{text}"
    );
    assert!(
        text.contains("metadata.project: `$HOME` contains"),
        "{text}"
    );
    assert!(!text.contains("metadata.environment"), "{text}");
}

// ------------------------------------------------------------------ 11: bounds

/// Run `coltecd validate` on `path`, failing the test instead of hanging
/// forever on a file that blocks (the deadline is generous: it catches a
/// hang, not slowness).
fn validate_with_deadline(dir: &Path, path: &Path) -> Output {
    let mut child = Command::new(coltecd_bin())
        .args(["validate", "--config", path.to_str().unwrap()])
        .env_clear()
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang, not a timing check: far above what a loaded
    // CI machine needs for the largest spec here.
    let deadline = Instant::now() + Duration::from_secs(600);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("validate --config {} never returned", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn only_regular_spec_files_up_to_1_mib_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("spec.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let big = dir.path().join("big.yaml");
    let mut body = META.to_string();
    body.push_str(&"# padding\n".repeat(110_000));
    std::fs::write(&big, body).unwrap();
    for (path, want) in [
        (
            PathBuf::from("/dev/zero"),
            "it is a character device, not a regular file",
        ),
        (fifo, "it is a FIFO (named pipe), not a regular file"),
        (
            dir.path().to_path_buf(),
            "it is a directory, not a regular file",
        ),
        (big, "it is larger than 1024 KiB"),
    ] {
        let out = validate_with_deadline(dir.path(), &path);
        let text = all_output(&out);
        assert_eq!(out.status.code(), Some(3), "{}: {text}", path.display());
        assert!(text.contains(want), "{}: {text}", path.display());
    }
}

#[test]
fn deep_nesting_is_refused_at_its_line_without_parsing_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let depth = 100_000;
    let spec = write_spec(
        dir.path(),
        &format!("{META}x: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    );
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec.to_str().unwrap()],
        &[],
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "workspace-spec.yaml:2:68: the YAML nests `[...]`/`{...}` more than 64 levels deep"
        ),
        "{text}"
    );
}

#[test]
fn five_thousand_targets_validate_and_their_errors_are_all_placed() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = format!(
        "{META}persistence:\n  enabled: true\n  remotes:\n    l: {{type: local, path_prefix: {}}}\n  sync:\n",
        dir.path().join("remote").display()
    );
    for i in 0..5000 {
        body.push_str(&format!(
            "    - name: t{i}\n      path: ./t/{i}\n      exclude: [\"*.tmp\", \"cache/**\"]\n"
        ));
    }
    let spec = write_spec(dir.path(), &body);
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    assert!(all_output(&out).contains("5000 target(s)"));

    // Every target inside the first: one error each, each with its line.
    let nested = body.replace("path: ./t/0\n", "path: ./t\n");
    let spec = write_spec(dir.path(), &nested);
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec.to_str().unwrap()],
        &[],
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let head = &text[..text.len().min(2000)];
    assert!(text.contains("(4999 problems)"), "{head}");
    assert!(text.contains(":11:7: persistence.sync[1].path: "), "{head}");
    assert!(
        text.contains("and 4799 more problems (fix these first)"),
        "{head}"
    );
}

// ------------------------------------------------------------------ 12: errors

#[test]
fn a_bad_glob_is_blamed_on_its_own_index_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(
        dir.path(),
        "      exclude:\n        - \"*.tmp\"\n        - cache/**\n        - \"[abc\"\n    - name: flow\n      path: ./flow\n      exclude: [\"*.tmp\", \"cache/**\", \"{a,b\"]\n",
    );
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec.to_str().unwrap()],
        &[("HOME", "/nonexistent")],
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "workspace-spec.yaml:12:9: persistence.sync[0].exclude[2]: `[abc` is not a valid glob"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "workspace-spec.yaml:15:38: persistence.sync[1].exclude[2]: `{a,b` is not a valid glob"
        ),
        "{text}"
    );
}

#[test]
fn multi_document_specs_and_bad_merge_keys_are_reported_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &format!("{META}---\n{META}"));
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec.to_str().unwrap()],
        &[],
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("workspace-spec.yaml:2:1: the file holds more than one YAML document"),
        "{text}"
    );
    assert!(!text.contains("check indentation"), "{text}");

    let spec = local_spec(
        dir.path(),
        "    - <<: *list\n      name: b\n      path: ./b\n",
    );
    let body = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("x-list: &list [1, 2]\n{body}")).unwrap();
    let out = coltecd(
        dir.path(),
        &["validate", "--config", spec.to_str().unwrap()],
        &[("HOME", "/nonexistent")],
    );
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("workspace-spec.yaml:10:7: persistence.sync[1].<<: the `<<` merge key holds a list that holds a plain value"),
        "{text}"
    );
    assert!(!text.contains("check indentation"), "{text}");
}

#[test]
fn an_error_does_not_repeat_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let spec = local_spec(dir.path(), "");
    // The state dir would be under a regular file: ENOTDIR.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let state = blocker.join("state");
    let out = coltecd(
        dir.path(),
        &["--config", spec.to_str().unwrap(), "sync"],
        &[
            ("HOME", dir.path().to_str().unwrap()),
            ("COLTEC_STATE_DIR", state.to_str().unwrap()),
        ],
    );
    let text = all_output(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    let cause = "Not a directory (os error 20)";
    assert_eq!(text.matches(cause).count(), 1, "{text}");
}
