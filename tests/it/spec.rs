//! The spec loader, `coltecd validate` and `coltecd schema` against the
//! incumbent's real files (tests/fixtures/compat), the shipped config/
//! examples and a catalogue of broken specs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coltecd::spec::{self, Spec, SpecError};

use crate::support::repo_root;

mod bad;
mod cli;
mod s3;
mod schema;

/// A recognisable secret that must never appear in any output.
pub const SECRET: &str = "sEcReT-VaLuE-0123456789-never-print";

/// The environment the tests load specs with: every variable the compat
/// files and config/ examples reference, credentials set to [`SECRET`].
pub fn test_env() -> HashMap<String, String> {
    [
        ("HOME", "/home/tester"),
        ("RCLONE_BUCKET", "coltec-test-bucket"),
        ("RCLONE_S3_ACCESS_KEY_ID", SECRET),
        ("RCLONE_S3_SECRET_ACCESS_KEY", SECRET),
        (
            "RCLONE_S3_ENDPOINT",
            "https://acct.r2.cloudflarestorage.com",
        ),
        ("S3_ACCESS_KEY_ID", SECRET),
        ("S3_SECRET_ACCESS_KEY", SECRET),
        ("S3_ENDPOINT", "https://acct.r2.cloudflarestorage.com"),
        ("RCLONE_CRYPT_PASSWORD", SECRET),
        ("RCLONE_CRYPT_SALT", SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn load_env(path: &Path, env: &HashMap<String, String>) -> Result<Spec, SpecError> {
    spec::load_with_env(path, &|k| env.get(k).cloned())
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/compat").join(name)
}

/// Every `*.yaml` under config/, so a new example is tested automatically.
pub fn config_examples() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root().join("config"), &mut out);
    out.sort();
    out
}

fn compat_files() -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(repo_root().join("tests/fixtures/compat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    assert!(v.len() >= 7, "compat fixtures missing");
    v
}

#[test]
fn fixtures_match_the_shared_compat_files() {
    // The repo carries its own copy of ../shared/compat (beside the
    // repository; CI provides it): it must not drift from the originals.
    let shared = crate::support::shared_dir().join("compat");
    for (name, path) in compat_files() {
        let orig = shared.join(&name);
        assert_eq!(
            std::fs::read_to_string(&orig).unwrap(),
            std::fs::read_to_string(&path).unwrap(),
            "{name} differs from {}",
            orig.display()
        );
    }
}

#[test]
fn every_valid_compat_file_loads_unchanged() {
    let env = test_env();
    let mut n = 0;
    for (name, path) in compat_files() {
        if name.starts_with("invalid_") {
            continue;
        }
        n += 1;
        let spec = load_env(&path, &env).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(spec.enabled, "{name}");
        assert!(!spec.targets.is_empty(), "{name}");
        let dump = format!("{spec:?}\n{}", spec.warnings.join("\n"));
        assert!(!dump.contains(SECRET), "{name} leaks a secret: {dump}");
    }
    assert_eq!(n, 3);
}

#[test]
fn every_invalid_compat_file_is_rejected_naming_the_field() {
    let env = test_env();
    let expect = [
        (
            "invalid_duplicate_sync_name.yaml",
            "persistence.sync[1].name",
        ),
        (
            "invalid_interval_too_low.yaml",
            "persistence.sync[0].interval",
        ),
        ("invalid_replicated_no_sync.yaml", "persistence.sync"),
        ("invalid_workspace.yaml", "persistence.sync"),
    ];
    let invalid: Vec<_> = compat_files()
        .into_iter()
        .filter(|(n, _)| n.starts_with("invalid_"))
        .collect();
    assert_eq!(invalid.len(), expect.len());
    for (name, field) in expect {
        let err = load_env(&fixture(name), &env).expect_err(name);
        assert!(
            err.diagnostics
                .iter()
                .any(|d| d.field == field && d.hint.is_some()),
            "{name}: no diagnostic for {field}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(field), "{name}: {text}");
        assert!(text.contains("help: "), "{name}: {text}");
    }
}

#[test]
fn valid_workspace_volumes_become_targets() {
    let spec = load_env(&fixture("valid_workspace.yaml"), &test_env()).unwrap();
    let names: Vec<_> = spec.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["agent-context", "scratch"]);
    let t = &spec.targets[0];
    assert_eq!(t.local_path, PathBuf::from("/workspace/agent-context"));
    assert_eq!(
        t.remote_path,
        "workspaces/test-org/test-proj/env-test/agent-context"
    );
    assert_eq!(
        t.location().to_string(),
        "s3://coltec-workspaces/workspaces/test-org/test-proj/env-test/agent-context"
    );
    assert_eq!(t.direction, spec::Direction::Bidirectional);
    assert_eq!(t.interval.as_secs(), 60);
    assert!(t.excludes.is_excluded("a/node_modules", true));
    assert_eq!(spec.targets[1].direction, spec::Direction::PushOnly);
    let spec::RemoteKind::S3(s3) = &t.remote.kind else {
        panic!("not s3")
    };
    assert_eq!(
        s3.endpoint.as_deref(),
        Some("https://acct.r2.cloudflarestorage.com")
    );
    assert_eq!(s3.region, "auto");
    assert!(s3.path_style);
    assert_eq!(s3.access_key_id.as_ref().unwrap().expose(), SECRET);
}

#[test]
fn config_local_yaml_loads() {
    let spec = load_env(&repo_root().join("config/local.yaml"), &test_env()).unwrap();
    assert_eq!(spec.workspace.slug(), "demo/coltecd/local");
    assert_eq!(spec.targets.len(), 2);
    assert_eq!(
        spec.targets[0].location(),
        spec::Location::Local {
            dir: PathBuf::from("/home/tester/coltecd-demo/remote/demo/coltecd/local/agent-context")
        }
    );
    assert_eq!(
        spec.targets[0].local_path,
        PathBuf::from("/home/tester/coltecd-demo/agent-context")
    );
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
}

#[test]
fn config_examples_all_validate() {
    let env = test_env();
    let files = config_examples();
    assert_eq!(files.len(), 7, "{files:?}");
    for f in &files {
        let spec = load_env(f, &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(spec.enabled);
        assert!(
            spec.warnings.is_empty(),
            "{}: {:?}",
            f.display(),
            spec.warnings
        );
        assert!(!format!("{spec:?}").contains(SECRET));
    }
}

#[test]
fn five_slots_never_share_a_prefix() {
    let env = test_env();
    let mut locations = Vec::new();
    for slot in ["a", "b", "c", "d", "e"] {
        let spec = load_env(
            &repo_root().join(format!("config/five-slots/dev-{slot}.yaml")),
            &env,
        )
        .unwrap();
        assert_eq!(spec.workspace.slug(), format!("acme/widget/dev-{slot}"));
        let names: Vec<_> = spec.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["agent-context", "azure", "codex", "kube", "workspace"]
        );
        let kube = spec.targets.iter().find(|t| t.name == "kube").unwrap();
        assert_eq!(kube.local_path, PathBuf::from("/home/tester/.kube"));
        for t in &spec.targets {
            let spec::Location::S3 { bucket, key_prefix } = t.location() else {
                panic!()
            };
            assert_eq!(bucket, "coltec-test-bucket");
            assert!(
                key_prefix.starts_with(&format!("acme/widget/dev-{slot}/")),
                "{key_prefix}"
            );
            locations.push(key_prefix);
        }
    }
    for (i, a) in locations.iter().enumerate() {
        for b in &locations[i + 1..] {
            let (a2, b2) = (format!("{a}/"), format!("{b}/"));
            assert!(
                !a2.starts_with(&b2) && !b2.starts_with(&a2),
                "{a} and {b} nest"
            );
        }
    }
}

#[test]
fn r2_config_needs_its_variables() {
    let mut env = test_env();
    env.remove("RCLONE_S3_SECRET_ACCESS_KEY");
    let err = load_env(&repo_root().join("config/r2.yaml"), &env).unwrap_err();
    assert!(err.to_string().contains(
        "persistence.remotes.r2.options.secret_access_key: uses ${RCLONE_S3_SECRET_ACCESS_KEY}, which is not set"
    ), "{err}");
}

fn load(text: &str, env: &HashMap<String, String>) -> Spec {
    bad::load_text(text, env).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults_and_overrides() {
    let spec = load_env(&fixture("named_remotes_workspace.yaml"), &test_env()).unwrap();
    let ws = &spec.targets[0];
    assert_eq!(ws.name, "workspace");
    assert_eq!((ws.transfers, ws.checkers), (8, 16));
    assert_eq!(ws.bwlimit.up.unwrap().get(), 50 * 1024 * 1024);
    assert_eq!(
        ws.location().to_string(),
        "s3://coltec-dev/workspaces/test-org/test-proj/dev/code"
    );
    let logs = &spec.targets[1];
    assert_eq!((logs.transfers, logs.checkers), (4, 16));
    assert_eq!(logs.bwlimit.down.unwrap().get(), 10 * 1024 * 1024);
    assert_eq!(logs.remote_name, "logs-bucket");
    // No `environment` in metadata: `dev`, as the incumbent; no warning since it is set.
    assert_eq!(spec.workspace.env, "dev");

    let spec = load(bad::BASE, &test_env());
    let t = &spec.targets[0];
    assert_eq!(
        (t.transfers, t.checkers),
        (spec::DEFAULT_TRANSFERS, spec::DEFAULT_CHECKERS)
    );
    assert_eq!(t.priority, spec::DEFAULT_PRIORITY);
    assert_eq!(t.direction, spec::Direction::Bidirectional);
    assert_eq!(t.bwlimit, spec::BwLimit::default());
    assert!(spec.lease.enabled);
    assert_eq!(spec.lease.ttl.as_secs(), 60);
    assert_eq!(spec.lease.renew_every.as_secs(), 15);
    assert_eq!(spec.safety.mass_delete_max_files, 50);
    assert!((spec.safety.mass_delete_max_fraction - 0.25).abs() < 1e-9);
    assert_eq!(spec.safety.trash_retention.as_secs(), 7 * 86400);
    assert_eq!(spec.daemon.log_dir, PathBuf::from("/ws/.devcontainer/logs"));
    assert_eq!(spec.daemon.state_dir, None);
    assert_eq!(spec.daemon.debounce.as_secs(), 2);
    assert_eq!(spec.daemon.flush_deadline.as_secs(), 8);
    assert_eq!(spec.daemon.watch, spec::WatchMode::Auto);
    assert_eq!(spec.daemon.max_requests_per_second, 1000);
    assert_eq!(spec.path, PathBuf::from(bad::SPEC_PATH));
}

#[test]
fn missing_environment_defaults_to_dev_with_a_warning() {
    let text = bad::BASE.replace("  environment: dev-a\n", "");
    let spec = load(&text, &test_env());
    assert_eq!(spec.workspace.slug(), "acme/widget/dev");
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.starts_with("metadata.environment:")),
        "{:?}",
        spec.warnings
    );
}

#[test]
fn coltecd_settings_are_read() {
    let text = bad::BASE.replace(
        "  default_remote: r2\n",
        "  default_remote: r2\n  lease: {ttl: 2m, renew_every: 20s}\n  safety: {mass_delete_max_files: 10, mass_delete_max_percent: 50, trash_retention: 0}\n  daemon: {state_dir: ../state, log_dir: ~/logs, debounce: 500ms, flush_deadline: 5s, watch: poll, max_requests_per_second: 20}\n",
    );
    let spec = load(&text, &test_env());
    assert_eq!(spec.lease.ttl.as_secs(), 120);
    assert_eq!(spec.lease.renew_every.as_secs(), 20);
    assert_eq!(spec.safety.mass_delete_max_files, 10);
    assert!((spec.safety.mass_delete_max_fraction - 0.5).abs() < 1e-9);
    assert!(spec.safety.trash_retention.is_zero());
    assert_eq!(spec.daemon.state_dir, Some(PathBuf::from("/ws/state")));
    assert_eq!(spec.daemon.log_dir, PathBuf::from("/home/tester/logs"));
    assert_eq!(spec.daemon.debounce.as_millis(), 500);
    assert_eq!(spec.daemon.watch, spec::WatchMode::Poll);
    assert_eq!(spec.daemon.max_requests_per_second, 20);

    let off = load(
        &bad::BASE.replace(
            "  default_remote: r2\n",
            "  default_remote: r2\n  lease: off\n",
        ),
        &test_env(),
    );
    assert!(!off.lease.enabled);
    assert!(
        off.warnings
            .iter()
            .any(|w| w.starts_with("persistence.lease: the lease is off")),
        "{:?}",
        off.warnings
    );
    let slow = load(
        &bad::BASE.replace(
            "  default_remote: r2\n",
            "  default_remote: r2\n  daemon: {flush_deadline: 30s}\n",
        ),
        &test_env(),
    );
    assert!(
        slow.warnings
            .iter()
            .any(|w| w.starts_with("persistence.daemon.flush_deadline")),
        "{:?}",
        slow.warnings
    );
    // Only ttl given: renewal follows it (ttl/4).
    let ttl = load(
        &bad::BASE.replace(
            "  default_remote: r2\n",
            "  default_remote: r2\n  lease: {ttl: 40}\n",
        ),
        &test_env(),
    );
    assert_eq!(ttl.lease.renew_every.as_secs(), 10);
}

#[test]
fn intervals_and_rates_in_both_notations() {
    let text = format!(
        "{}      bwlimit: 1M:512k\n    - name: b\n      path: /w/b\n      remote_path: \"{{org}}/{{project}}/{{env}}/b\"\n      interval: 5m\n      priority: 1\n      direction: pull-only\n      bwlimit: 512\n",
        bad::BASE
    );
    let spec = load(&text, &test_env());
    // Sorted by (priority, name): b has priority 1.
    assert_eq!(spec.targets[0].name, "b");
    assert_eq!(spec.targets[0].interval.as_secs(), 300);
    assert_eq!(spec.targets[0].direction, spec::Direction::PullOnly);
    assert_eq!(spec.targets[0].bwlimit.up.unwrap().get(), 512 * 1024);
    let ctx = &spec.targets[1];
    assert_eq!(ctx.interval.as_secs(), 60);
    assert_eq!(ctx.bwlimit.up.unwrap().get(), 1024 * 1024);
    assert_eq!(ctx.bwlimit.down.unwrap().get(), 512 * 1024);
}

#[test]
fn credentials_endpoint_and_bucket_fall_back_to_the_environment() {
    let text = "\
metadata: {org: acme, project: widget, environment: dev-a}
persistence:
  enabled: true
  remotes:
    s3: {type: s3}
  sync:
    - {name: a, path: /w/a}
";
    let mut env = HashMap::new();
    env.insert("RCLONE_BUCKET".to_string(), "from-env".to_string());
    env.insert("AWS_ACCESS_KEY_ID".to_string(), SECRET.to_string());
    env.insert("AWS_SECRET_ACCESS_KEY".to_string(), SECRET.to_string());
    env.insert("AWS_SESSION_TOKEN".to_string(), SECRET.to_string());
    let spec = load(text, &env);
    let t = &spec.targets[0];
    // The only remote is used; the default remote_path is {org}/{project}/{env}/<name>.
    assert_eq!(
        t.location().to_string(),
        "s3://from-env/acme/widget/dev-a/a"
    );
    let spec::RemoteKind::S3(s3) = &t.remote.kind else {
        panic!()
    };
    assert_eq!(s3.access_key_id.as_ref().unwrap().expose(), SECRET);
    assert!(s3.session_token.is_some());
    assert_eq!(s3.endpoint, None);
    assert!(!s3.path_style, "plain AWS uses virtual-host addressing");
    assert_eq!(s3.region, "us-east-1");

    // RCLONE_S3_* wins over AWS_*; an endpoint turns on path-style unless forced off.
    env.insert(
        "RCLONE_S3_ACCESS_KEY_ID".to_string(),
        "rclone-key".to_string(),
    );
    env.insert(
        "AWS_ENDPOINT_URL_S3".to_string(),
        "minio.local:9000".to_string(),
    );
    let spec = load(text, &env);
    let spec::RemoteKind::S3(s3) = &spec.targets[0].remote.kind else {
        panic!()
    };
    assert_eq!(s3.access_key_id.as_ref().unwrap().expose(), "rclone-key");
    assert_eq!(s3.endpoint.as_deref(), Some("https://minio.local:9000"));
    assert!(s3.path_style);
    let forced = load(
        &text.replace(
            "{type: s3}",
            "{type: s3, options: {force_path_style: \"false\"}}",
        ),
        &env,
    );
    let spec::RemoteKind::S3(s3) = &forced.targets[0].remote.kind else {
        panic!()
    };
    assert!(!s3.path_style);
}

#[test]
fn variable_forms_and_placeholders() {
    let text = "\
metadata: {org: acme, project: widget, environment: dev-a}
persistence:
  enabled: true
  remotes:
    s3:
      bucket: $BUCKET_NAME
      path_prefix: ${PREFIX:-teams}/x
      options: {endpoint: \"http://127.0.0.1:9000\", access_key_id: k, secret_access_key: s}
  sync:
    - name: a
      path: ${DATA_DIR}/a
      remote_path: \"{org}/{project}/{env}/$$literal\"
";
    let env: HashMap<String, String> = [("BUCKET_NAME", "bkt"), ("DATA_DIR", "/data")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spec = load(text, &env);
    let t = &spec.targets[0];
    assert_eq!(t.local_path, PathBuf::from("/data/a"));
    assert_eq!(t.remote_path, "acme/widget/dev-a/$literal");
    assert_eq!(
        t.location().to_string(),
        "s3://bkt/teams/x/acme/widget/dev-a/$literal"
    );
}

#[test]
fn local_remotes_resolve_against_the_spec_directory() {
    let text = "\
metadata: {org: acme, project: widget, environment: dev-a}
persistence:
  enabled: true
  default_remote: here
  remotes:
    here: {type: local, path_prefix: ../remote}
    root: {type: local}
  sync:
    - {name: a, path: ../a, remote_path: \"{org}/{project}/{env}/a\"}
    - {name: b, path: /abs/b, remote: here, remote_path: /srv/incumbent/b}
    - {name: c, path: ~/c, remote: root, remote_path: \"{org}/{project}/{env}/c\"}
";
    let spec = load(text, &test_env());
    let by = |n: &str| spec.targets.iter().find(|t| t.name == n).unwrap();
    assert_eq!(by("a").local_path, PathBuf::from("/ws/a"));
    assert_eq!(
        by("a").location(),
        spec::Location::Local {
            dir: PathBuf::from("/ws/remote/acme/widget/dev-a/a")
        }
    );
    // An absolute remote_path on a local remote is used as is (with an isolation warning).
    assert_eq!(
        by("b").location(),
        spec::Location::Local {
            dir: PathBuf::from("/srv/incumbent/b")
        }
    );
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.starts_with("persistence.sync[1].remote_path")),
        "{:?}",
        spec.warnings
    );
    assert_eq!(by("c").local_path, PathBuf::from("/home/tester/c"));
    assert_eq!(
        by("c").location(),
        spec::Location::Local {
            dir: PathBuf::from("/ws/.devcontainer/acme/widget/dev-a/c")
        }
    );
}

#[test]
fn remote_path_outside_the_workspace_prefix_is_a_warning() {
    let spec = load(
        &bad::BASE.replace("{org}/{project}/{env}/ctx", "shared/ctx"),
        &test_env(),
    );
    let w = spec
        .warnings
        .iter()
        .find(|w| w.starts_with("persistence.sync[0].remote_path"))
        .expect("warning");
    assert!(w.contains("does not contain acme/widget/dev-a"), "{w}");
    assert!(w.contains("{org}/{project}/{env}"), "{w}");
}

#[test]
fn disabled_persistence_validates_but_warns() {
    let spec = load(
        &bad::BASE.replace("enabled: true", "enabled: false"),
        &test_env(),
    );
    assert!(!spec.enabled);
    assert_eq!(spec.targets.len(), 1);
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.starts_with("persistence.enabled"))
    );
}

#[test]
fn unused_rclone_options_are_warnings_with_suggestions() {
    let spec = load(
        &bad::BASE.replace(
            "      options:\n",
            "      options:\n        acl: private\n        regoin: auto\n",
        ),
        &test_env(),
    );
    let joined = spec.warnings.join("\n");
    assert!(
        joined.contains("persistence.remotes.r2.options.acl: option `acl` is not used"),
        "{joined}"
    );
    assert!(joined.contains("did you mean `region`?"), "{joined}");
}

#[test]
fn volumes_read_only_means_pull_only() {
    let text = format!(
        "{}  multi_scope_volumes:\n    environment:\n      - name: vol\n        mount_path: /w/vol\n        remote_path: \"{{org}}/{{project}}/{{env}}/vol\"\n        read_only: true\n",
        bad::BASE
    );
    let spec = load(&text, &test_env());
    let vol = spec.targets.iter().find(|t| t.name == "vol").unwrap();
    assert_eq!(vol.direction, spec::Direction::PullOnly);
    assert_eq!(vol.interval, spec::DEFAULT_INTERVAL);
}

#[test]
fn missing_file_is_a_clear_invalid_spec_error() {
    let err = load_env(
        Path::new("/nonexistent/dir/workspace-spec.yaml"),
        &test_env(),
    )
    .unwrap_err();
    assert!(err.unreadable);
    let text = err.to_string();
    assert!(
        text.contains("no spec file at /nonexistent/dir/workspace-spec.yaml"),
        "{text}"
    );
    assert!(
        text.contains("--config PATH") && text.contains("COLTEC_CONFIG"),
        "{text}"
    );
    assert_eq!(
        coltecd::error::HasExitStatus::exit_status(&err),
        coltecd::error::ExitStatus::InvalidSpec
    );
}

#[test]
fn yaml_merge_keys_are_applied_not_dropped() {
    let text = "\
metadata: {org: acme, project: widget, environment: dev-a}
x-common: &common
  interval: 120
  exclude: [\".git/**\"]
persistence:
  enabled: true
  remotes:
    l: {type: local, path_prefix: /srv/remote}
  sync:
    - <<: *common
      name: a
      path: /w/a
    - <<: *common
      name: b
      path: /w/b
      interval: 30
";
    let spec = load(text, &test_env());
    assert!(
        spec.warnings.is_empty(),
        "x- keys hold anchors: {:?}",
        spec.warnings
    );
    let a = &spec.targets[0];
    assert_eq!((a.name.as_str(), a.interval.as_secs()), ("a", 120));
    assert_eq!(a.excludes.patterns(), [".git/**"]);
    assert_eq!(spec.targets[1].interval.as_secs(), 30);

    // Errors inside merged values still name the field and find a position.
    let err = bad::load_text(
        &text.replace("interval: 120", "interval: fast"),
        &test_env(),
    )
    .unwrap_err();
    let d = err
        .diagnostics
        .iter()
        .find(|d| d.field == "persistence.sync[0].interval")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(d.line.is_some(), "{err}");
}

#[test]
fn only_selects_targets_in_order_and_rejects_unknown_names() {
    let spec = load_env(&fixture("incumbent_repo_workspace.yaml"), &test_env()).unwrap();
    let all: Vec<_> = spec
        .select(&[])
        .unwrap()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(all, ["agent-context", "encrypted", "scratch"]);
    let some: Vec<_> = spec
        .select(&["scratch".into(), "agent-context".into(), "scratch".into()])
        .unwrap()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(some, ["agent-context", "scratch"]);
    assert_eq!(
        spec.target("scratch").unwrap().direction,
        spec::Direction::PushOnly
    );
    let err = spec.select(&["scrach".into()]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no sync target named `scrach` (did you mean `scratch`?)"),
        "{msg}"
    );
    assert!(msg.contains("agent-context, encrypted, scratch"), "{msg}");
    assert_eq!(
        coltecd::error::HasExitStatus::exit_status(&err),
        coltecd::error::ExitStatus::Usage
    );
}
