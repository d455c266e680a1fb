//! `coltecd schema`: the JSON Schema accepts every valid compat file and
//! config/ example and rejects structurally wrong input.

use std::process::Command;

use serde_json::Value;

use super::bad::BASE;
use crate::support::{coltecd_bin, repo_root};

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&coltecd::spec::schema()).expect("the schema itself is valid")
}

fn yaml_to_json(text: &str) -> Value {
    serde_yaml::from_str(text).expect("test YAML parses")
}

fn errors(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    v.iter_errors(&yaml_to_json(text))
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn schema_is_draft_07_and_printed_by_the_binary() {
    let schema = coltecd::spec::schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let out = Command::new(coltecd_bin())
        .arg("schema")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, schema);
    // Closed where the loader is strict.
    assert_eq!(
        schema["definitions"]["Persistence"]["additionalProperties"],
        false
    );
    assert_eq!(schema["definitions"]["Sync"]["additionalProperties"], false);
}

#[test]
fn schema_accepts_every_valid_compat_file_and_config_example() {
    let v = validator();
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("tests/fixtures/compat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("invalid_")
        })
        .collect();
    files.extend(super::config_examples());
    assert_eq!(files.len(), 10);
    for f in files {
        let errs = errors(&v, &std::fs::read_to_string(&f).unwrap());
        assert!(errs.is_empty(), "{}: {errs:#?}", f.display());
    }
    // The invalid compat files are semantically wrong, not structurally:
    // the schema accepts them and the loader rejects them.
    let text = std::fs::read_to_string(
        repo_root().join("tests/fixtures/compat/invalid_interval_too_low.yaml"),
    )
    .unwrap();
    assert!(errors(&v, &text).is_empty());
}

#[test]
fn schema_accepts_coltecd_settings_in_all_their_forms() {
    let v = validator();
    for extra in [
        "  lease: off\n",
        "  lease: true\n",
        "  lease: {ttl: 60s, renew_every: 15}\n",
        "  safety: {mass_delete_max_files: 10, mass_delete_max_percent: 12.5, trash_retention: 0}\n",
        "  daemon: {state_dir: /s, log_dir: logs, debounce: 2s, flush_deadline: 8, watch: poll, max_requests_per_second: 50}\n",
        "  defaults: {transfers: 2, checkers: 4, bwlimit: 512}\n",
    ] {
        let text = BASE.replace(
            "  default_remote: r2\n",
            &format!("  default_remote: r2\n{extra}"),
        );
        let errs = errors(&v, &text);
        assert!(errs.is_empty(), "{extra}: {errs:#?}");
    }
    // Unknown top-level sections are ignored, so the schema allows them too.
    assert!(errors(&v, &format!("{BASE}something_else: 1\n")).is_empty());
}

#[test]
fn schema_rejects_structurally_wrong_specs() {
    let v = validator();
    let cases = [
        (
            "string for a boolean",
            BASE.replace("enabled: true", "enabled: \"yes\""),
        ),
        (
            "boolean for an interval",
            BASE.replace("interval: 60", "interval: true"),
        ),
        (
            "mapping for sync",
            BASE.split("  sync:\n").next().unwrap().to_string() + "  sync: {a: 1}\n",
        ),
        (
            "unknown key under persistence",
            BASE.replace("  mode: replicated", "  mode: replicated\n  persistance: 1"),
        ),
        (
            "unknown key in a sync entry",
            format!("{BASE}      exlude: [x]\n"),
        ),
        (
            "unknown key in a remote",
            BASE.replace("      bucket: bkt", "      bucket: bkt\n      buckett: x"),
        ),
        ("bad direction", format!("{BASE}      direction: both\n")),
        ("bad remote type", BASE.replace("type: s3", "type: gcs")),
        (
            "bad mode",
            BASE.replace("mode: replicated", "mode: mirrored"),
        ),
        ("negative transfers", format!("{BASE}      transfers: -1\n")),
        (
            "exclude not a list",
            format!("{BASE}      exclude: \"*.tmp\"\n"),
        ),
        ("metadata without org", BASE.replace("  org: acme\n", "")),
        (
            "sync entry without path",
            BASE.replace("      path: /w/ctx\n", ""),
        ),
        (
            "lease as a number",
            BASE.replace(
                "  default_remote: r2\n",
                "  default_remote: r2\n  lease: 5\n",
            ),
        ),
        (
            "unknown key in lease",
            BASE.replace(
                "  default_remote: r2\n",
                "  default_remote: r2\n  lease: {ttl: 60s, tll: 1}\n",
            ),
        ),
        (
            "bad watch mode",
            BASE.replace(
                "  default_remote: r2\n",
                "  default_remote: r2\n  daemon: {watch: inotify}\n",
            ),
        ),
    ];
    for (name, text) in cases {
        assert!(!errors(&v, &text).is_empty(), "schema accepted: {name}");
    }
}
