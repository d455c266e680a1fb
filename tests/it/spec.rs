//! The spec loader, `coltecd validate` and `coltecd schema` against the
//! incumbent's real files (tests/fixtures/compat), the shipped config/
//! examples and a catalogue of broken specs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use coltecd::spec::{self, Spec, SpecError};

use crate::support::repo_root;

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
    // The repo carries its own copy; when the shared originals are around,
    // make sure the copy has not drifted.
    let shared = Path::new("/work/shared/compat");
    if !shared.exists() {
        return;
    }
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
