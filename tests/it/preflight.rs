//! One preflight (#10 item 5): `validate`, `sync` and `start` agree on
//! which targets cannot be served here, and one unusable target does not
//! stop the others. The unusable target is a crypt remote whose password
//! variable is not set, next to a plain local target.

use std::process::Output;

use crate::daemon::{Daemon, World, status_json, stdout, text};

const PW_VAR: &str = "COLTEC_PREFLIGHT_TEST_PASSWORD";

/// `plain` on the local remote, `secret` on a crypt remote over it.
fn world(with_plain: bool) -> World {
    let w = World::new();
    for d in ["plain", "secret"] {
        std::fs::create_dir_all(w.path(d)).unwrap();
        std::fs::write(w.path(&format!("{d}/{d}.txt")), d).unwrap();
    }
    let plain = if with_plain {
        format!(
            "    - {{name: plain, path: {}, direction: push-only}}\n",
            w.path("plain").display()
        )
    } else {
        String::new()
    };
    w.write_spec(
        &format!(
            "  default_remote: local\n  remotes:\n    local: {{type: local, path_prefix: {remote}}}\n    enc:\n      type: crypt\n      wrap_remote: local\n      wrap_path: enc\n      crypt: {{password_env: {PW_VAR}}}\n  sync:\n{plain}    - {{name: secret, path: {secret}, direction: push-only, remote: enc}}\n",
            remote = w.remote().display(),
            secret = w.path("secret").display(),
        ),
        "",
    );
    w
}

fn run(w: &World, args: &[&str]) -> Output {
    w.cmd().env_remove(PW_VAR).args(args).output().unwrap()
}

fn plain_pushed(w: &World) -> bool {
    w.remote()
        .join("acme/widget/dev-a/plain/plain.txt")
        .is_file()
}

#[test]
fn validate_names_the_unusable_target_with_exit_6_and_the_same_reason_sync_gives() {
    let w = world(true);
    let v = run(&w, &["validate"]);
    let vt = text(&v);
    assert_eq!(v.status.code(), Some(6), "{vt}");
    assert!(
        vt.contains("1 target(s) cannot be served here") && vt.contains("- secret: "),
        "{vt}"
    );
    let j = run(&w, &["validate", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&j)).unwrap();
    assert_eq!(json["unusable"][0]["target"], "secret", "{json}");
    assert_eq!(json["unusable"][0]["exit_code"], 5, "{json}");
    let reason = json["unusable"][0]["error"].as_str().unwrap().to_string();
    assert!(reason.contains(PW_VAR), "{reason}");

    let s = run(&w, &["sync"]);
    let st = text(&s);
    assert_eq!(s.status.code(), Some(6), "{st}");
    assert!(st.contains("plain: uploaded 1"), "{st}");
    assert!(st.contains(&reason), "sync and validate disagree: {st}");
    assert!(plain_pushed(&w), "the usable target was not synced: {st}");
}

#[test]
fn start_serves_the_other_targets_and_status_shows_the_unusable_one_waiting_for_you() {
    let w = world(true);
    let _daemon = Daemon { world: &w };
    let o = run(&w, &["start"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("syncing 1 target"), "{t}");
    assert!(
        t.contains("target 'secret' is not served") && t.contains(PW_VAR),
        "{t}"
    );
    assert!(plain_pushed(&w), "{t}");
    let (code, v) = status_json(&w);
    assert_eq!(code, 1, "degraded while a target cannot be served: {v}");
    let secret = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "secret")
        .unwrap();
    assert!(
        secret["last_error"].as_str().unwrap().contains(PW_VAR),
        "{secret}"
    );
    let stop = run(&w, &["stop"]);
    assert_eq!(stop.status.code(), Some(0), "{}", text(&stop));
}

#[test]
fn when_no_target_can_be_served_sync_and_start_fail_with_its_own_exit_code() {
    let w = world(false);
    let _daemon = Daemon { world: &w };
    for args in [&["sync"][..], &["start"][..]] {
        let o = run(&w, args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(5), "{args:?}: {t}");
        assert!(t.contains(PW_VAR), "{args:?}: {t}");
    }
    assert!(
        w.pid().is_none(),
        "a daemon with nothing to serve kept running"
    );
}
