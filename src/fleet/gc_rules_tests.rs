//! The gc rules: what is removed and what is kept, per kind of object.

use std::time::Duration;

use super::*;
use crate::lease::Clock;

fn record(id: &str, released: bool) -> (String, Vec<u8>) {
    let rec = serde_json::json!({
        "format": 1, "lease_id": id, "host": "h", "container_id": "c", "pid": 1,
        "coltecd_version": "0", "workspace": "w", "location": "l",
        "acquired_at": "2026-01-01T00:00:00Z", "renewed_at": "2026-01-01T00:00:00Z",
        "ttl_ms": 1000, "session": "s", "seq": 1, "released": released,
    });
    ("v1".into(), serde_json::to_vec(&rec).unwrap())
}

const TTL: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn a_holder_is_gone_only_after_its_lease_is_seen_unchanged_for_a_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let mut obs = Observations::load(tmp.path(), Clock::tokio());
    let r = record("a", false);
    let (h, _) = judge_lease(&mut obs, "loc", Some(&r), TTL);
    assert!(
        matches!(h, Holder::Live(_)),
        "first sighting counts as live"
    );
    tokio::time::advance(TTL + Duration::from_millis(1)).await;
    let (h, _) = judge_lease(&mut obs, "loc", Some(&r), TTL);
    assert!(matches!(h, Holder::Gone(_)), "{h:?}");
    // A renewal (new version) makes it live again.
    let renewed = ("v2".to_string(), r.1.clone());
    let (h, _) = judge_lease(&mut obs, "loc", Some(&renewed), TTL);
    assert!(matches!(h, Holder::Live(_)), "{h:?}");
}

#[test]
fn released_absent_and_unreadable_leases() {
    let tmp = tempfile::tempdir().unwrap();
    let mut obs = Observations::load(tmp.path(), Clock::boot());
    let (h, _) = judge_lease(&mut obs, "l", Some(&record("a", true)), TTL);
    assert!(matches!(h, Holder::Gone(_)));
    assert!(matches!(
        judge_lease(&mut obs, "l", None, TTL).0,
        Holder::Gone(_)
    ));
    let junk = ("v".to_string(), b"not json".to_vec());
    assert!(matches!(
        judge_lease(&mut obs, "l", Some(&junk), TTL).0,
        Holder::Unknown(_)
    ));
}

#[test]
fn a_marker_goes_when_its_writer_no_longer_holds_and_stays_while_it_does() {
    let live = Holder::Live("live".into());
    let gone = Holder::Gone("gone".into());
    let parse = |id, rel| crate::lease::LeaseRecord::parse(&record(id, rel).1);
    let mine = parse("a", false);
    assert!(matches!(
        nested_marker("a", &live, mine.as_ref()),
        Verdict::Keep(_)
    ));
    assert!(matches!(
        nested_marker("a", &gone, mine.as_ref()),
        Verdict::Remove(_)
    ));
    // Another lease id holds the prefix now (live): the marker is an orphan.
    let other = parse("b", false);
    assert!(matches!(
        nested_marker("a", &live, other.as_ref()),
        Verdict::Remove(_)
    ));
    assert!(matches!(
        nested_marker("a", &gone, None),
        Verdict::Remove(_)
    ));
    let unknown = Holder::Unknown("?".into());
    assert!(matches!(
        nested_marker("a", &unknown, None),
        Verdict::Keep(_)
    ));
}

#[test]
fn a_dirty_marker_is_removed_only_without_a_manifest_and_without_a_live_writer() {
    let live = Holder::Live("live".into());
    let gone = Holder::Gone("gone".into());
    assert!(matches!(dirty_marker(&live, false), Verdict::Keep(_)));
    assert!(matches!(dirty_marker(&gone, true), Verdict::Keep(_)));
    assert!(matches!(dirty_marker(&gone, false), Verdict::Remove(_)));
}

#[test]
fn a_probe_goes_only_once_unchanged_for_a_ttl_under_a_gone_holder() {
    let gone = Holder::Gone("gone".into());
    let fresh = Staleness::Live {
        unchanged_for: Duration::ZERO,
        stale_in: TTL,
    };
    let old = Staleness::Stale {
        unchanged_for: TTL * 2,
    };
    assert!(matches!(probe(&gone, fresh), Verdict::Keep(_)));
    assert!(matches!(probe(&gone, old), Verdict::Remove(_)));
    assert!(matches!(
        probe(&Holder::Live("l".into()), old),
        Verdict::Keep(_)
    ));
}

#[test]
fn trash_goes_past_its_retention_when_the_daemon_is_gone() {
    let day = Duration::from_secs(86_400);
    let gone = Holder::Gone("gone".into());
    let live = Holder::Live("live".into());
    assert!(matches!(
        trash_generation(&gone, Some(8 * day), 7 * day),
        Verdict::Remove(_)
    ));
    assert!(matches!(
        trash_generation(&gone, Some(day), 7 * day),
        Verdict::Keep(_)
    ));
    assert!(matches!(
        trash_generation(&live, Some(8 * day), 7 * day),
        Verdict::Keep(_)
    ));
    assert!(matches!(
        trash_generation(&gone, None, 7 * day),
        Verdict::Keep(_)
    ));
    // Retention 0 (trash off in this spec): nothing is known to be expired.
    assert!(matches!(
        trash_generation(&gone, Some(8 * day), Duration::ZERO),
        Verdict::Keep(_)
    ));
}
