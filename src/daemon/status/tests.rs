//! Health evaluation: errors, lost leases, staleness, overdue renewals,
//! a stop on a takeover.

use super::tests_support::sample;
use super::*;

#[test]
fn errors_lost_lease_and_staleness_degrade() {
    let now = 1_000_000;
    let mut s = sample(now);
    s.targets[0].last_success_at = Some(now - 1000);
    s.evaluate(now);
    assert_eq!(s.health, Health::Degraded);
    assert!(
        s.problems[0].contains("no successful sync for 16 min"),
        "{:?}",
        s.problems
    );

    let mut s = sample(now);
    s.leases.writes_allowed = false;
    s.leases.fenced_reason = Some("renewal failed".into());
    s.targets[0].last_error = Some("boom".into());
    s.evaluate(now);
    assert_eq!(s.health.exit_status(), ExitStatus::Failure);
    assert_eq!(s.problems.len(), 2);
}

#[test]
fn an_overdue_lease_renewal_degrades_with_since_when_and_what_is_pending() {
    let now = 1_000_000;
    // Renewed 10 s ago, every 15 s: fine.
    let mut s = sample(now);
    s.leases.detail[0].last_renewal_secs_ago = Some(10);
    s.evaluate(now);
    assert_eq!(s.health, Health::Healthy, "{:?}", s.problems);
    // 41 s ago (the outage): renewals are failing though the
    // gate is still open.
    s.leases.detail[0].last_renewal_secs_ago = Some(41);
    s.targets[0].oldest_pending_at = Some(now - 35);
    s.evaluate(now);
    assert_eq!(s.health, Health::Degraded);
    assert_eq!(s.health.exit_status(), ExitStatus::Failure);
    let p = &s.problems[0];
    assert!(p.contains("lease renewals failing"), "{p}");
    assert!(p.contains("since 26 s ago"), "{p}");
    assert!(p.contains("last renewed 41 s ago, every 15 s"), "{p}");
    assert!(p.contains("2 file(s) pending, oldest 35 s ago"), "{p}");
    // Leasing off: no renewals to be late.
    s.leases.renew_every_secs = None;
    s.evaluate(now);
    assert_eq!(s.health, Health::Healthy, "{:?}", s.problems);
}

#[test]
fn a_daemon_stopped_by_a_takeover_names_its_unpushed_changes() {
    let now = 1_000_000;
    let mut s = sample(now);
    s.stop = Some(StopNote {
        exit_code: 4,
        reason: "lease on local:/r taken over by host b".into(),
        unpushed: vec![UnpushedFiles {
            target: "claude".into(),
            paths: vec!["/home/u/.claude/a.md".into(), "/home/u/.claude/b.md".into()],
        }],
    });
    let s = s.as_stopped(now);
    assert_eq!(s.health, Health::NotRunning);
    let text = s.render_text(now);
    assert!(
        text.contains("stopped with exit code 4: lease on local:/r taken over"),
        "{text}"
    );
    assert!(
        text.contains("claude: 2 local change(s) were NOT pushed and exist only on this disk: /home/u/.claude/a.md, /home/u/.claude/b.md"),
        "{text}"
    );
    assert!(text.contains("conflict copies"), "{text}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["stop"]["exit_code"], 4);
    let back: DaemonStatus = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
}

/// The user-facing text and JSON of `status`, pinned: any change to what
/// a user or a script reads shows up as a snapshot diff to review.
#[test]
fn status_text_and_json_snapshots() {
    let now = 1_000_000;
    let mut healthy = sample(now);
    healthy.evaluate(now);
    insta::assert_snapshot!("status_text_healthy", healthy.render_text(now));
    insta::assert_json_snapshot!("status_json_healthy", healthy);

    let mut degraded = sample(now);
    degraded.leases.detail[0].last_renewal_secs_ago = Some(41);
    degraded.targets[0].oldest_pending_at = Some(now - 35);
    degraded.targets[0].last_error =
        Some("target 'claude': listing failed on the remote: connection refused".into());
    degraded.targets[0].failing_since = Some(now - 30);
    degraded.evaluate(now);
    insta::assert_snapshot!("status_text_degraded", degraded.render_text(now));

    let mut crypt = sample(now);
    crypt.targets[0].undecryptable = super::UndecryptableNames {
        count: 2,
        first: vec!["not-a-crypt-name".into(), "ab/other".into()],
    };
    crypt.evaluate(now);
    insta::assert_snapshot!("status_text_undecryptable", crypt.render_text(now));
}
