//! The catalogue of broken specs: each case names the exact field path and
//! the fix hint it must produce, and no case may leak a secret.

use std::collections::HashMap;
use std::path::Path;

use coltecd::spec::{self, Spec, SpecError};

use super::{SECRET, test_env};

pub const SPEC_PATH: &str = "/ws/.devcontainer/workspace-spec.yaml";

/// A valid spec; cases edit it with `replace`.
pub const BASE: &str = r#"name: t
metadata:
  org: acme
  project: widget
  environment: dev-a
persistence:
  enabled: true
  mode: replicated
  default_remote: r2
  remotes:
    r2:
      type: s3
      bucket: bkt
      options:
        endpoint: ${RCLONE_S3_ENDPOINT}
        access_key_id: ${RCLONE_S3_ACCESS_KEY_ID}
        secret_access_key: ${RCLONE_S3_SECRET_ACCESS_KEY}
  sync:
    - name: ctx
      path: /w/ctx
      remote_path: "{org}/{project}/{env}/ctx"
      interval: 60
"#;

/// A second target appended to `BASE`'s sync list.
fn with_second(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn edit(from: &str, to: &str) -> String {
    assert!(
        BASE.contains(from),
        "case edits text that is not in BASE: {from}"
    );
    BASE.replacen(from, to, 1)
}

pub fn load_text(text: &str, env: &HashMap<String, String>) -> Result<Spec, SpecError> {
    spec::load_str(text, Path::new(SPEC_PATH), &|k| env.get(k).cloned())
}

#[test]
fn base_is_valid() {
    let spec = load_text(BASE, &test_env()).unwrap();
    assert_eq!(spec.targets.len(), 1);
    assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
}

struct Case {
    name: &'static str,
    yaml: String,
    env: HashMap<String, String>,
    field: &'static str,
    message: &'static str,
    hint: &'static str,
}

fn case(
    name: &'static str,
    yaml: String,
    field: &'static str,
    message: &'static str,
    hint: &'static str,
) -> Case {
    Case {
        name,
        yaml,
        env: test_env(),
        field,
        message,
        hint,
    }
}

fn without(vars: &[&str]) -> HashMap<String, String> {
    let mut env = test_env();
    for v in vars {
        env.remove(*v);
    }
    env
}

fn cases() -> Vec<Case> {
    let crypt_remotes = |remotes: &str| edit("  sync:\n", &format!("{remotes}  sync:\n"));
    vec![
        case(
            "yaml syntax error",
            edit("      path: /w/ctx", "     path: /w/ctx"),
            "",
            "did not find expected",
            "fix the YAML syntax",
        ),
        case(
            "wrong type: boolean as string",
            edit("enabled: true", "enabled: \"yes\""),
            "persistence.enabled",
            "invalid type: string \"yes\", expected a boolean",
            "write `true` or `false`",
        ),
        case(
            "wrong type: sync is a mapping",
            BASE.split("  sync:\n").next().unwrap().to_string() + "  sync: {ctx: /w/ctx}\n",
            "persistence.sync",
            "expected a sequence",
            "write a list",
        ),
        case(
            "wrong type: transfers is a word",
            with_second("      transfers: many\n"),
            "persistence.sync[0].transfers",
            "invalid type: string \"many\"",
            "write a whole number here",
        ),
        case(
            "missing required field",
            with_second("    - path: /w/other\n"),
            "persistence.sync[1]",
            "missing field `name`",
            "add `name:` here",
        ),
        case(
            "unknown direction",
            with_second("      direction: both\n"),
            "persistence.sync[0].direction",
            "unknown variant `both`",
            "use one of `bidirectional`, `push-only`, `pull-only`",
        ),
        case(
            "unknown key in persistence, with suggestion",
            edit("  default_remote: r2", "  default_remote: r2\n  defualts: {transfers: 2}"),
            "persistence.defualts",
            "unknown key `defualts`",
            "did you mean `defaults`?",
        ),
        case(
            "unknown key in a sync entry, with suggestion",
            with_second("      exlude: [\"*.tmp\"]\n"),
            "persistence.sync[0].exlude",
            "unknown key `exlude`",
            "did you mean `exclude`?",
        ),
        case(
            "unknown key in a remote, with suggestion",
            edit("      bucket: bkt", "      bucket: bkt\n      path_prefx: x"),
            "persistence.remotes.r2.path_prefx",
            "unknown key `path_prefx`",
            "did you mean `path_prefix`?",
        ),
        case(
            "misspelt top-level section",
            BASE.replace("persistence:", "persistance:"),
            "persistance",
            "unknown key `persistance`",
            "did you mean `persistence`?",
        ),
        case(
            "unknown key in metadata",
            edit("  environment: dev-a", "  enviroment: dev-a"),
            "metadata.enviroment",
            "unknown key `enviroment`",
            "did you mean `environment`?",
        ),
        case(
            "bad glob",
            with_second("      exclude: [\"ok/**\", \"[abc\"]\n"),
            "persistence.sync[0].exclude[1]",
            "`[abc` is not a valid glob",
            "rclone glob syntax",
        ),
        case(
            "empty glob",
            with_second("      exclude: [\"\"]\n"),
            "persistence.sync[0].exclude[0]",
            "the pattern is empty",
            "rclone glob syntax",
        ),
        case(
            "bad bwlimit unit",
            with_second("      bwlimit: 10Q\n"),
            "persistence.sync[0].bwlimit",
            "`10Q` has an unknown unit `Q`",
            "use rclone syntax",
        ),
        case(
            "bwlimit timetable",
            edit("  default_remote: r2", "  default_remote: r2\n  defaults:\n    bwlimit: \"08:00,512k 12:00,10M\""),
            "persistence.defaults.bwlimit",
            "timetable",
            "use rclone syntax",
        ),
        case(
            "interval below the minimum",
            edit("interval: 60", "interval: 5"),
            "persistence.sync[0].interval",
            "5s is below the minimum of 10s",
            "set `interval: 10` or more",
        ),
        case(
            "interval as a too-short duration string",
            edit("interval: 60", "interval: 9s"),
            "persistence.sync[0].interval",
            "9s is below the minimum of 10s",
            "set `interval: 10` or more",
        ),
        case(
            "bad duration",
            edit("interval: 60", "interval: soon"),
            "persistence.sync[0].interval",
            "`soon` is not a duration",
            "`90s`, `5m`",
        ),
        Case {
            env: without(&["RCLONE_S3_ACCESS_KEY_ID"]),
            ..case(
                "missing environment variable",
                BASE.to_string(),
                "persistence.remotes.r2.options.access_key_id",
                "uses ${RCLONE_S3_ACCESS_KEY_ID}, which is not set",
                "set RCLONE_S3_ACCESS_KEY_ID in the container's environment",
            )
        },
        case(
            "malformed variable reference",
            edit("bucket: bkt", "bucket: ${RCLONE_BUCKET"),
            "persistence.remotes.r2.bucket",
            "has no closing `}`",
            "write `${NAME}` or `$NAME`",
        ),
        case(
            "nested local paths",
            with_second("    - name: sub\n      path: /w/ctx/sub\n      remote_path: \"{org}/{project}/{env}/sub\"\n"),
            "persistence.sync[1].path",
            "/w/ctx/sub is inside /w/ctx of target `ctx`",
            "give every target its own directory",
        ),
        case(
            "equal local paths",
            with_second("    - name: again\n      path: /w/ctx/\n      remote_path: \"{org}/{project}/{env}/again\"\n"),
            "persistence.sync[1].path",
            "is the same directory as",
            "give every target its own directory",
        ),
        case(
            "nested remote paths",
            with_second("    - name: other\n      path: /w/other\n      remote_path: \"{org}/{project}/{env}/ctx/deeper\"\n"),
            "persistence.sync[1].remote_path",
            "s3://bkt/acme/widget/dev-a/ctx/deeper is inside s3://bkt/acme/widget/dev-a/ctx of target `ctx`",
            "give every target its own remote prefix",
        ),
        case(
            "remote paths nest through a crypt remote",
            crypt_remotes("    enc:\n      type: crypt\n      wrap_remote: r2\n      wrap_path: acme/widget/dev-a\n      crypt: {password_env: RCLONE_CRYPT_PASSWORD}\n")
                + "    - name: secret\n      path: /w/secret\n      remote: enc\n      remote_path: ctx/x\n",
            "persistence.sync[1].remote_path",
            "of target `ctx`",
            "give every target its own remote prefix",
        ),
        case(
            "dangling remote",
            with_second("      remote: r3\n"),
            "persistence.sync[0].remote",
            "remote `r3` is not defined in persistence.remotes",
            "did you mean `r2`?",
        ),
        case(
            "dangling default_remote",
            edit("default_remote: r2", "default_remote: primary"),
            "persistence.default_remote",
            "remote `primary` is not defined",
            "use one of the remotes defined under persistence.remotes: r2",
        ),
        case(
            "no remotes at all",
            BASE.replace("  default_remote: r2\n", "")
                .replace("  remotes:\n    r2:\n      type: s3\n      bucket: bkt\n      options:\n        endpoint: ${RCLONE_S3_ENDPOINT}\n        access_key_id: ${RCLONE_S3_ACCESS_KEY_ID}\n        secret_access_key: ${RCLONE_S3_SECRET_ACCESS_KEY}\n", ""),
            "persistence.remotes",
            "no remote is defined",
            "type: local",
        ),
        Case {
            env: without(&["RCLONE_BUCKET"]),
            ..case(
                "s3 remote without bucket",
                edit("      bucket: bkt\n", ""),
                "persistence.remotes.r2.bucket",
                "s3 remote `r2` has no bucket",
                "set RCLONE_BUCKET",
            )
        },
        case(
            "crypt loop",
            crypt_remotes("    a:\n      type: crypt\n      wrap_remote: b\n      crypt: {password_env: RCLONE_CRYPT_PASSWORD}\n    b:\n      type: crypt\n      wrap_remote: a\n      crypt: {password_env: RCLONE_CRYPT_PASSWORD}\n"),
            "persistence.remotes.a.wrap_remote",
            "crypt remotes wrap each other in a loop: a -> b -> a",
            "make the innermost crypt remote wrap an s3 or local remote",
        ),
        case(
            "crypt wraps itself",
            crypt_remotes("    enc:\n      type: crypt\n      wrap_remote: enc\n      crypt: {password_env: RCLONE_CRYPT_PASSWORD}\n"),
            "persistence.remotes.enc.wrap_remote",
            "crypt remote `enc` wraps itself",
            "point `wrap_remote:` at an s3 or local remote",
        ),
        case(
            "crypt without wrap_remote",
            crypt_remotes("    enc:\n      type: crypt\n      crypt: {password_env: RCLONE_CRYPT_PASSWORD}\n"),
            "persistence.remotes.enc.wrap_remote",
            "has no wrap_remote",
            "set `wrap_remote:`",
        ),
        case(
            "crypt with a filename_encoding other than base32",
            crypt_remotes("    enc:\n      type: crypt\n      wrap_remote: r2\n      crypt: {password_env: RCLONE_CRYPT_PASSWORD, filename_encoding: base64}\n"),
            "persistence.remotes.enc.crypt.filename_encoding",
            "uses filename_encoding `base64`; coltecd reads and writes only rclone's default, base32",
            "keep syncing it with rclone",
        ),
        case(
            "crypt without crypt settings",
            crypt_remotes("    enc:\n      type: crypt\n      wrap_remote: r2\n"),
            "persistence.remotes.enc.crypt",
            "has no crypt settings",
            "password_env",
        ),
        case(
            "duplicate target names across sync and volumes",
            format!(
                "{BASE}  multi_scope_volumes:\n    environment:\n      - name: ctx\n        mount_path: /w/vol\n        remote_path: \"{{org}}/{{project}}/{{env}}/vol\"\n"
            ),
            "persistence.multi_scope_volumes.environment[0].name",
            "target name `ctx` is already used by persistence.sync[0]",
            "unique name",
        ),
        case(
            "transfers 0",
            with_second("      transfers: 0\n"),
            "persistence.sync[0].transfers",
            "must be at least 1",
            "set it to 1 or more",
        ),
        case(
            "checkers 0 in defaults",
            edit("  default_remote: r2", "  default_remote: r2\n  defaults: {checkers: 0}"),
            "persistence.defaults.checkers",
            "must be at least 1",
            "default 8",
        ),
        case(
            "lease renewal too slow for its ttl",
            edit("  default_remote: r2", "  default_remote: r2\n  lease: {ttl: 60s, renew_every: 30s}"),
            "persistence.lease.renew_every",
            "less than half of ttl (1m)",
            "renew at most every ttl/4",
        ),
        case(
            "lease with a bad word",
            edit("  default_remote: r2", "  default_remote: r2\n  lease: maybe"),
            "persistence.lease",
            "invalid value: string \"maybe\"",
            "`off`, `on`",
        ),
        case(
            "unknown placeholder",
            edit("{org}/{project}/{env}/ctx", "{org}/{project}/{environment}/ctx"),
            "persistence.sync[0].remote_path",
            "unknown placeholder `{environment}`",
            "{org}, {project} and {env}",
        ),
        case(
            "remote_path climbing out",
            edit("{org}/{project}/{env}/ctx", "{org}/{project}/{env}/../../x"),
            "persistence.sync[0].remote_path",
            "contains `..`",
            "remove the `..`",
        ),
        case(
            "metadata missing",
            BASE.replace("metadata:\n  org: acme\n  project: widget\n  environment: dev-a\n", ""),
            "metadata",
            "is missing",
            "add `metadata:` with `org`, `project` and `environment`",
        ),
        case(
            "org with a slash",
            edit("org: acme", "org: acme/corp"),
            "metadata.org",
            "`acme/corp` contains `/`",
            "single path segment",
        ),
        case(
            "read_only volume that pushes",
            format!(
                "{BASE}  multi_scope_volumes:\n    environment:\n      - name: vol\n        mount_path: /w/vol\n        remote_path: \"{{org}}/{{project}}/{{env}}/vol\"\n        sync: push-only\n        read_only: true\n"
            ),
            "persistence.multi_scope_volumes.environment[0].read_only",
            "conflicts with `sync: push-only`",
            "set `sync: pull-only`",
        ),
        case(
            "percentage out of range",
            edit("  default_remote: r2", "  default_remote: r2\n  safety: {mass_delete_max_percent: 150}"),
            "persistence.safety.mass_delete_max_percent",
            "150 is not a percentage",
            "from 0 to 100",
        ),
        case(
            "local remote inside a synced directory",
            edit(
                "  sync:\n",
                "    here:\n      type: local\n      path_prefix: /w/ctx/remote\n  sync:\n",
            ) + "      remote: here\n",
            "persistence.sync[0].remote_path",
            "overlaps the synced directory /w/ctx",
            "outside every synced directory",
        ),
        Case {
            env: without(&["RCLONE_S3_SECRET_ACCESS_KEY"]),
            ..case(
                "access key without secret",
                edit("        secret_access_key: ${RCLONE_S3_SECRET_ACCESS_KEY}\n", ""),
                "persistence.remotes.r2.options.secret_access_key",
                "has an access_key_id but no secret_access_key",
                "set both keys",
            )
        },
        case(
            "force_path_style not a boolean",
            edit("      options:\n", "      options:\n        force_path_style: maybe\n"),
            "persistence.remotes.r2.options.force_path_style",
            "`maybe` is not true or false",
            "`force_path_style: true` or `false`",
        ),
        case(
            "duplicate YAML key",
            edit("  org: acme\n", "  org: acme\n  org: other\n"),
            "metadata",
            "duplicate entry with key \"org\"",
            "remove one of the duplicated keys",
        ),
        case(
            "endpoint that is not a URL",
            edit("endpoint: ${RCLONE_S3_ENDPOINT}", "endpoint: \"ftp://x\""),
            "persistence.remotes.r2.options.endpoint",
            "is not an http(s) URL",
            "https://<account>.r2.cloudflarestorage.com",
        ),
        case(
            "path_prefix climbing out through a variable quotes the raw text",
            edit("bucket: bkt", "bucket: bkt\n      path_prefix: \"${RCLONE_S3_SECRET_ACCESS_KEY}/../x\""),
            "persistence.remotes.r2.path_prefix",
            "`${RCLONE_S3_SECRET_ACCESS_KEY}/../x` contains `..`",
            "remove the `..`",
        ),
        case(
            "target name with a slash",
            edit("name: ctx", "name: a/b"),
            "persistence.sync[0].name",
            "`a/b` contains characters",
            "letters, digits",
        ),
        case(
            "syncing the filesystem root",
            edit("path: /w/ctx", "path: /"),
            "persistence.sync[0].path",
            "refuses to sync the filesystem root",
            "/workspace/agent-context",
        ),
    ]
}

#[test]
fn every_bad_spec_names_the_field_and_the_fix() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        let err = match load_text(&c.yaml, &c.env) {
            Ok(_) => panic!("case `{}` was accepted:\n{}", c.name, c.yaml),
            Err(e) => e,
        };
        let d = err
            .diagnostics
            .iter()
            .find(|d| d.field == c.field && d.message.contains(c.message))
            .unwrap_or_else(|| {
                panic!(
                    "case `{}`: no diagnostic for `{}` containing {:?}; got:\n{err}",
                    c.name, c.field, c.message
                )
            });
        let hint = d.hint.as_deref().unwrap_or_default();
        assert!(
            hint.contains(c.hint),
            "case `{}`: hint {hint:?} does not contain {:?}",
            c.name,
            c.hint
        );
        let text = err.to_string();
        assert!(text.contains(SPEC_PATH), "case `{}`: {text}", c.name);
        assert!(text.contains(c.message), "case `{}`: {text}", c.name);
        assert!(
            text.contains(&format!("help: {hint}")),
            "case `{}`: {text}",
            c.name
        );
        if !c.field.is_empty() {
            assert!(
                text.contains(&format!(": {}: ", c.field)),
                "case `{}`: {text}",
                c.name
            );
        }
        assert!(
            !text.contains(SECRET),
            "case `{}` leaks the secret: {text}",
            c.name
        );
        assert!(
            !format!("{err:?}").contains(SECRET),
            "case `{}` leaks via Debug",
            c.name
        );
        assert_eq!(
            coltecd::error::HasExitStatus::exit_status(&err),
            coltecd::error::ExitStatus::InvalidSpec
        );
    }
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let text = with_second(
        "      interval: 3\n      bwlimit: lots\n      exclude: [\"[x\"]\n      remote: nope\n    - name: ctx\n      path: /w/other\n      remote_path: \"{org}/{project}/{env}/other\"\n",
    )
    .replacen("      interval: 60\n", "", 1);
    let err = load_text(&text, &test_env()).unwrap_err();
    let fields: Vec<&str> = err.diagnostics.iter().map(|d| d.field.as_str()).collect();
    for want in [
        "persistence.sync[0].interval",
        "persistence.sync[0].bwlimit",
        "persistence.sync[0].exclude[0]",
        "persistence.sync[0].remote",
        "persistence.sync[1].name",
    ] {
        assert!(
            fields.contains(&want),
            "{want} missing from {fields:?}\n{err}"
        );
    }
    assert!(err.to_string().contains("(5 problems)"), "{err}");
}

#[test]
fn unknown_keys_and_semantic_errors_are_reported_together() {
    let text = with_second("      exlude: [\"x\"]\n").replace("interval: 60", "interval: 1");
    let err = load_text(&text, &test_env()).unwrap_err();
    let fields: Vec<&str> = err.diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert!(fields.contains(&"persistence.sync[0].exlude"), "{err}");
    assert!(fields.contains(&"persistence.sync[0].interval"), "{err}");
}

#[test]
fn rendered_errors_snapshot_interval_and_missing_variable() {
    let text = BASE.replace("interval: 60", "interval: 5");
    let err = load_text(&text, &without(&["RCLONE_S3_ENDPOINT"])).unwrap_err();
    let expected = "\
/ws/.devcontainer/workspace-spec.yaml is not a valid workspace spec (2 problems):
  /ws/.devcontainer/workspace-spec.yaml:15:9: persistence.remotes.r2.options.endpoint: uses ${RCLONE_S3_ENDPOINT}, which is not set
    help: set RCLONE_S3_ENDPOINT in the container's environment (a Codespaces secret, `devcontainer up --remote-env`, or fnox), or write `${RCLONE_S3_ENDPOINT:-default}` for a default
  /ws/.devcontainer/workspace-spec.yaml:22:7: persistence.sync[0].interval: 5s is below the minimum of 10s
    help: set `interval: 10` or more (whole seconds, or a duration such as `30s`, `5m`); file changes are picked up from events anyway";
    assert_eq!(err.to_string(), expected);
}

#[test]
fn rendered_errors_snapshot_type_error_and_unknown_key() {
    let text = BASE.replace("enabled: true", "enabled: 3").replace(
        "  default_remote: r2",
        "  default_remote: r2\n  lease_ttl: 60",
    );
    let err = load_text(&text, &test_env()).unwrap_err();
    let expected = "\
/ws/.devcontainer/workspace-spec.yaml is not a valid workspace spec (2 problems):
  /ws/.devcontainer/workspace-spec.yaml:7:12: persistence.enabled: invalid type: integer `3`, expected a boolean
    help: write `true` or `false` (without quotes)
  /ws/.devcontainer/workspace-spec.yaml:10:3: persistence.lease_ttl: unknown key `lease_ttl`
    help: did you mean `lease`?";
    assert_eq!(err.to_string(), expected);
}

#[test]
fn empty_and_non_mapping_files_are_rejected() {
    for (text, msg) in [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "not a mapping"),
    ] {
        let err = load_text(text, &test_env()).unwrap_err();
        assert!(err.to_string().contains(msg), "{text:?}: {err}");
    }
}

#[test]
fn far_unknown_top_level_sections_only_warn() {
    let text = format!("{BASE}customizations:\n  foo: 1\n");
    let spec = load_text(&text, &test_env()).unwrap();
    assert!(
        spec.warnings
            .iter()
            .any(|w| w.contains("customizations") && w.contains("ignored")),
        "{:?}",
        spec.warnings
    );
}

#[test]
fn nesting_is_reported_even_when_the_remote_is_broken() {
    let text = with_second(
        "    - name: sub\n      path: /w/ctx/sub\n      remote_path: \"{org}/{project}/{env}/sub\"\n",
    );
    let err = load_text(&text, &without(&["RCLONE_S3_ACCESS_KEY_ID"])).unwrap_err();
    let fields: Vec<&str> = err.diagnostics.iter().map(|d| d.field.as_str()).collect();
    assert!(
        fields.contains(&"persistence.remotes.r2.options.access_key_id"),
        "{err}"
    );
    assert!(fields.contains(&"persistence.sync[1].path"), "{err}");
}

#[test]
fn every_type_error_is_reported_with_its_position() {
    let text = "\
metadata:
  org: a
  project: b
persistence:
  enabled: \"yes\"
  mode: mirrored
  sync:
    - name: x
      path: /x
      transfers: many
    - path: /y
  remotes:
    r: {type: gcs}
  lease: maybe
";
    let err = load_text(text, &test_env()).unwrap_err();
    let got: Vec<(String, Option<usize>)> = err
        .diagnostics
        .iter()
        .map(|d| (d.field.clone(), d.line))
        .collect();
    let want = [
        ("persistence.enabled", 5),
        ("persistence.mode", 6),
        ("persistence.sync[0].transfers", 10),
        ("persistence.sync[1]", 11),
        ("persistence.remotes.r.type", 13),
        ("persistence.lease", 14),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(f, l)| (f.to_string(), Some(*l)))
            .collect::<Vec<_>>(),
        "{err}"
    );
    assert!(err.diagnostics.iter().all(|d| d.hint.is_some()));
}
