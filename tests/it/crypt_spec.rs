//! Crypt targets that must be refused, and the incumbent's own spec.

use std::fs;

use super::*;

#[test]
fn wrong_password_is_refused_naming_the_variable_and_nothing_is_written() {
    let fx = Fx::new("crypt-wrong-pw", "standard", true);
    make_tree(&fx.path("local"));
    let o = fx.coltecd(&["sync"], Some(PASSWORD));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let before = SERVER.list_keys(&fx.bucket, "");

    let out = fx.path("restored");
    let wrong = "not-the-right-password-at-all";
    let o = fx.coltecd(&["restore", "--to", out.to_str().unwrap()], Some(wrong));
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("wrong password or salt"), "{t}");
    assert!(t.contains(PW_VAR) && t.contains(SALT_VAR), "{t}");
    assert!(t.contains("secrets"), "names the target: {t}");
    for secret in [wrong, PASSWORD, SALT, &obscure(wrong)] {
        assert!(!t.contains(secret), "{t}");
    }
    assert!(!out.exists() || fs::read_dir(&out).unwrap().next().is_none());
    for log in fs::read_dir(fx.path("logs")).into_iter().flatten() {
        let body = fs::read_to_string(log.unwrap().path()).unwrap_or_default();
        assert!(
            !body.contains(wrong) && !body.contains(PASSWORD),
            "secret in log"
        );
    }

    // A sync with the wrong password uploads nothing either.
    fs::write(fx.path("local/new.txt"), "new").unwrap();
    let o = fx.coltecd(&["sync"], Some(wrong));
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let after: Vec<String> = SERVER
        .list_keys(&fx.bucket, "")
        .into_iter()
        .filter(|k| !k.contains(".coltec/"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|k| !k.contains(".coltec/"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn missing_password_variable_refuses_with_exit_5_and_validate_says_so() {
    let fx = Fx::new("crypt-no-pw", "standard", true);
    fs::create_dir_all(fx.path("local")).unwrap();
    let o = fx.coltecd(&["sync"], None);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(5), "{t}");
    assert!(t.contains(PW_VAR), "{t}");
    let o = fx.coltecd(&["validate"], None);
    let t = text(&o);
    assert!(t.contains(PW_VAR) && t.contains("not set"), "{t}");
}

/// The incumbent's template spec, unchanged except that its absolute
/// `/workspace` paths point into a temporary directory, synced against the
/// test server with its variables set to test values.
#[test]
fn incumbent_spec_syncs_all_three_targets_including_the_encrypted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("workspace");
    let yaml =
        fs::read_to_string(repo_root().join("tests/fixtures/compat/incumbent_repo_workspace.yaml"))
            .unwrap()
            .replace("path: /workspace/", &format!("path: {}/", ws.display()));
    let spec = tmp.path().join("workspace-spec.yaml");
    fs::write(&spec, yaml).unwrap();
    for (dir, file) in [
        ("agent-context", "notes.md"),
        ("scratch", "draft.txt"),
        ("encrypted", "kube-config"),
    ] {
        fs::create_dir_all(ws.join(dir)).unwrap();
        fs::write(ws.join(dir).join(file), format!("{dir} {MARKER}")).unwrap();
    }
    let r = SERVER.request("PUT", "/coltec-workspaces", &[], b"");
    assert!(
        r.status == 200 || r.status == 409,
        "{} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let o = Command::new(coltecd_bin())
        .arg("--config")
        .arg(&spec)
        .arg("sync")
        .env("RCLONE_S3_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("RCLONE_S3_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .env("RCLONE_S3_ENDPOINT", SERVER.endpoint())
        .env("RCLONE_CRYPT_PASSWORD", obscure(PASSWORD))
        .env("RCLONE_CRYPT_SALT", obscure(SALT))
        .env("COLTEC_STATE_DIR", tmp.path().join("state"))
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    for target in ["agent-context", "scratch", "encrypted"] {
        assert!(
            t.contains(&format!("{target}: uploaded 1")),
            "{target}: {t}"
        );
    }
    let keys = SERVER.list_keys("coltec-workspaces", "");
    let base = "workspaces/coltec/coltec-codespaces/coltec-codespaces-dev";
    assert!(
        keys.contains(&format!("{base}/agent-context/notes.md")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("{base}/scratch/draft.txt")),
        "{keys:?}"
    );
    let encrypted: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("encrypted/") && !k.contains(".coltec/"))
        .collect();
    assert_eq!(encrypted.len(), 1, "{keys:?}");
    assert!(!encrypted[0].contains("secrets") && !encrypted[0].contains("kube"));
}
