//! Crypt targets against the real S3 server and stock rclone: a tree that
//! rclone encrypted restores to its plaintext, a tree coltecd pushed reads
//! back through `rclone copy` and passes `rclone cryptcheck`, and the
//! bucket never shows a plaintext name or content.
//!
//! rclone is Debian's package, installed by `tests/provision-rclone.sh`
//! when missing (never skipped), configured by `RCLONE_CONFIG_*` variables.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use coltecd::crypt::obscure::obscure;

use crate::support::s3::S3Server;
use crate::support::{coltecd_bin, repo_root, s3};

/// The S3 server of the crypt tests. Crypt sits above the S3 layer (the
/// same requests as a plain target, encrypted), so one server is enough
/// here; the plain S3 paths run on both servers elsewhere.
const SERVER: S3Server = S3Server::Moto;

#[path = "crypt_spec.rs"]
mod spec;

pub const PASSWORD: &str = "correct-horse-battery-staple-crypt";
pub const SALT: &str = "pepper-and-salt-for-the-crypt";
pub const PW_VAR: &str = "COLTEC_TEST_CRYPT_PW";
pub const SALT_VAR: &str = "COLTEC_TEST_CRYPT_SALT";
/// Appears in every test file's content and name: grep the bucket for it.
pub const MARKER: &str = "plainmarker";

/// Install rclone once per test process.
pub fn rclone_bin() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let o = Command::new("bash")
            .arg(repo_root().join("tests/provision-rclone.sh"))
            .output()
            .expect("run tests/provision-rclone.sh");
        assert!(
            o.status.success(),
            "provisioning rclone failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    });
    "rclone"
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One workspace with one crypt target on a fresh bucket.
pub struct Fx {
    pub tmp: tempfile::TempDir,
    pub bucket: String,
    pub names: &'static str,
    pub dirs: bool,
    pub server: S3Server,
    /// Where coltecd reaches the server (the server, or a proxy in front
    /// of it); rclone always talks to the server itself.
    pub endpoint: String,
    /// Indented YAML under `persistence.daemon`.
    pub daemon_extra: String,
}

impl Fx {
    pub fn new(tag: &str, names: &'static str, dirs: bool) -> Fx {
        Fx::on(SERVER, tag, names, dirs)
    }

    /// The same on `server`.
    pub fn on(server: S3Server, tag: &str, names: &'static str, dirs: bool) -> Fx {
        Fx {
            tmp: tempfile::tempdir().unwrap(),
            bucket: server.bucket(tag),
            names,
            dirs,
            server,
            endpoint: server.endpoint().to_string(),
            daemon_extra: String::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn spec(&self) -> PathBuf {
        let yaml = format!(
            "name: crypt-test
metadata: {{org: o, project: p, environment: e}}
persistence:
  enabled: true
  remotes:
    moto:
      type: s3
      bucket: {bucket}
      path_prefix: pfx
      options: {{provider: Other, endpoint: \"{endpoint}\", region: us-east-1}}
    enc:
      type: crypt
      wrap_remote: moto
      wrap_path: encrypted
      crypt:
        password_env: {PW_VAR}
        password2_env: {SALT_VAR}
        filename_encryption: {names}
        directory_name_encryption: {dirs}
  sync:
    - name: secrets
      path: {local}
      remote: enc
      remote_path: ws/secrets
      direction: bidirectional
  daemon:
    state_dir: {state}
    log_dir: {logs}
{daemon_extra}",
            bucket = self.bucket,
            endpoint = self.endpoint,
            names = self.names,
            dirs = self.dirs,
            local = self.path("local").display(),
            state = self.path("state").display(),
            logs = self.path("logs").display(),
            daemon_extra = self.daemon_extra,
        );
        let p = self.path("workspace-spec.yaml");
        fs::write(&p, yaml).unwrap();
        p
    }

    /// `coltecd` with S3 credentials and the (obscured) password and salt.
    pub fn coltecd(&self, args: &[&str], password: Option<&str>) -> Output {
        let mut c = Command::new(coltecd_bin());
        c.arg("--config").arg(self.spec()).args(args);
        c.env("RCLONE_S3_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("RCLONE_S3_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .env(SALT_VAR, obscure(SALT))
            .env_remove("COLTEC_STATE_DIR");
        match password {
            Some(p) => c.env(PW_VAR, obscure(p)),
            None => c.env_remove(PW_VAR),
        };
        c.output().unwrap()
    }

    /// Stock rclone with remotes `moto:` and `enc:` (the crypt remote).
    pub fn rclone(&self, args: &[&str]) -> Output {
        let mut c = Command::new(rclone_bin());
        // rclone's S3 client refuses a custom CA bundle over its transport;
        // the test server is plain HTTP anyway.
        c.args(args)
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG", self.path("no-rclone.conf"))
            .env("RCLONE_CONFIG_MOTO_TYPE", "s3")
            .env("RCLONE_CONFIG_MOTO_PROVIDER", "Other")
            .env("RCLONE_CONFIG_MOTO_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .env("RCLONE_CONFIG_MOTO_ENDPOINT", self.server.endpoint())
            .env("RCLONE_CONFIG_MOTO_REGION", "us-east-1")
            .env("RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE", "true")
            .env("RCLONE_CONFIG_MOTO_NO_CHECK_BUCKET", "true")
            .env("RCLONE_CONFIG_ENC_TYPE", "crypt")
            .env(
                "RCLONE_CONFIG_ENC_REMOTE",
                format!("moto:{}/pfx/encrypted", self.bucket),
            )
            .env("RCLONE_CONFIG_ENC_PASSWORD", obscure(PASSWORD))
            .env("RCLONE_CONFIG_ENC_PASSWORD2", obscure(SALT))
            .env("RCLONE_CONFIG_ENC_FILENAME_ENCRYPTION", self.names)
            .env(
                "RCLONE_CONFIG_ENC_DIRECTORY_NAME_ENCRYPTION",
                self.dirs.to_string(),
            );
        c.output().unwrap()
    }

    /// Every object in the bucket with its raw bytes (fetched by rclone
    /// from the bucket itself, not through the crypt remote).
    pub fn raw_objects(&self) -> Vec<(String, Vec<u8>)> {
        let dir = self.path("raw");
        let _ = fs::remove_dir_all(&dir);
        let o = self.rclone(&[
            "copy",
            &format!("moto:{}", self.bucket),
            dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "rclone copy raw: {}", text(&o));
        let objects = snapshot(&dir);
        assert_eq!(
            objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>(),
            self.server.list_keys(&self.bucket, "")
        );
        objects
    }

    pub fn assert_no_plaintext_in_bucket(&self) {
        let objects = self.raw_objects();
        assert!(
            objects.len() >= 5,
            "{:?}",
            objects.iter().map(|o| &o.0).collect::<Vec<_>>()
        );
        for (key, body) in objects {
            if self.names != "off" {
                for plain in [MARKER, "ws/", "secrets", "dir"] {
                    assert!(!key.contains(plain), "key {key} shows {plain}");
                }
            }
            let body = String::from_utf8_lossy(&body);
            assert!(!body.contains(MARKER), "object {key} has plaintext content");
        }
    }
}

/// The test tree: a file larger than one block, an empty file, exactly one
/// block, unicode names, a symlink.
pub fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("dir/ünïcödé 名前")).unwrap();
    fs::write(root.join("small.txt"), format!("hello {MARKER}\n")).unwrap();
    let big: Vec<u8> = format!("{MARKER} ")
        .bytes()
        .cycle()
        .take(3 * 65536 + 4321)
        .collect();
    fs::write(root.join(format!("dir/{MARKER}-big.bin")), big).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    let exact: Vec<u8> = format!("{MARKER}!").bytes().cycle().take(65536).collect();
    fs::write(root.join("dir/ünïcödé 名前/exact-64k"), exact).unwrap();
    symlink("small.txt", root.join("link")).unwrap();
}

/// Relative path -> file content or `-> target` for symlinks.
pub fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.push((rel, format!("-> {}", t.display()).into_bytes()));
            } else if md.is_dir() {
                walk(base, &p, out);
            } else {
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn rclone_tree_restores_to_its_plaintext(names: &'static str, dirs: bool) {
    let fx = Fx::new(&format!("crypt-in-{names}"), names, dirs);
    make_tree(&fx.path("src"));
    let src = fx.path("src");
    let o = fx.rclone(&["copy", "--links", src.to_str().unwrap(), "enc:ws/secrets"]);
    assert!(o.status.success(), "rclone copy: {}", text(&o));
    fx.assert_no_plaintext_in_bucket();

    let out = fx.path("restored");
    let o = fx.coltecd(&["restore", "--to", out.to_str().unwrap()], Some(PASSWORD));
    assert_eq!(o.status.code(), Some(0), "restore: {}", text(&o));
    assert_eq!(snapshot(&out), snapshot(&src));
    // rclone's mtime (object metadata) came along.
    let want = fs::metadata(src.join("small.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let got = fs::metadata(out.join("small.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let skew = want.duration_since(got).unwrap_or_else(|e| e.duration());
    assert!(skew.as_millis() < 2, "mtime {got:?} vs {want:?}");

    // Adoption: the same tree already in place locally uploads nothing.
    let o = Command::new("cp")
        .args([
            "-a",
            src.to_str().unwrap(),
            fx.path("local").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = fx.coltecd(&["sync", "--json"], Some(PASSWORD));
    assert_eq!(o.status.code(), Some(0), "adopt: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v[0]["uploaded"].as_u64(), v[0]["downloaded"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
}

fn coltecd_tree_reads_back_with_rclone(names: &'static str, dirs: bool) {
    let fx = Fx::new(&format!("crypt-out-{names}"), names, dirs);
    make_tree(&fx.path("local"));
    let o = fx.coltecd(&["sync"], Some(PASSWORD));
    assert_eq!(o.status.code(), Some(0), "sync: {}", text(&o));
    fx.assert_no_plaintext_in_bucket();

    let copy = fx.path("rclone-copy");
    let o = fx.rclone(&["copy", "--links", "enc:ws/secrets", copy.to_str().unwrap()]);
    assert!(o.status.success(), "rclone copy: {}", text(&o));
    assert_eq!(snapshot(&copy), snapshot(&fx.path("local")));

    let local = fx.path("local");
    let o = fx.rclone(&[
        "cryptcheck",
        "--links",
        local.to_str().unwrap(),
        "enc:ws/secrets",
    ]);
    assert!(o.status.success(), "rclone cryptcheck: {}", text(&o));
    let synced = fx.path("rclone-sync");
    let o = fx.rclone(&[
        "sync",
        "--links",
        "enc:ws/secrets",
        synced.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "rclone sync: {}", text(&o));

    // A second pass finds nothing to do (sizes, mtimes and ids agree).
    let o = fx.coltecd(&["sync", "--verify"], Some(PASSWORD));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("up to date"),
        "{}",
        text(&o)
    );
}

#[test]
fn rclone_encrypted_tree_restores_to_plaintext_standard_names() {
    rclone_tree_restores_to_its_plaintext("standard", true);
}

#[test]
fn rclone_encrypted_tree_restores_to_plaintext_names_off() {
    rclone_tree_restores_to_its_plaintext("off", false);
}

#[test]
fn coltecd_push_is_read_by_stock_rclone_and_passes_cryptcheck_standard_names() {
    coltecd_tree_reads_back_with_rclone("standard", true);
}

#[test]
fn coltecd_push_is_read_by_stock_rclone_and_passes_cryptcheck_names_off() {
    coltecd_tree_reads_back_with_rclone("off", false);
}
