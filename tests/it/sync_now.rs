//! `coltecd sync --now`: the running daemon does the pass, not a competing
//! one-shot run.

use crate::daemon::{Daemon, World, stdout, text};

#[test]
fn sync_now_asks_the_running_daemon_and_needs_one() {
    let w = World::new();
    // Polling only, with the minimum interval: after the first pass, only
    // `sync --now` can make the daemon push within this test.
    w.write_local_spec(&[("notes", "push-only")], "    watch: poll\n");

    let o = w.run(&["sync", "--now"]);
    assert_eq!(o.status.code(), Some(3), "no daemon: {}", text(&o));
    assert!(
        text(&o).contains("no coltecd daemon is running"),
        "{}",
        text(&o)
    );

    let _guard = Daemon { world: &w };
    let o = w.run(&["start"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::write(w.path("notes/now.txt"), "pushed on request").unwrap();
    let o = w.run(&["sync", "--now"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(stdout(&o).trim(), "notes: uploaded 1, downloaded 0");
    let pushed = w.remote().join("acme/widget/dev-a/notes/now.txt");
    assert_eq!(
        std::fs::read_to_string(pushed).unwrap(),
        "pushed on request"
    );

    // --now is its own mode: combining it with one-shot flags is a usage error.
    let o = w.run(&["sync", "--now", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = w.run(&["stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
