//! Wall-clock time as coltecd records it: unix seconds for status files and
//! lease activity, RFC 3339 (UTC) for timestamps written into remote objects
//! and the state database.
//!
//! One place so every timestamp comes from one library (jiff) in one format;
//! durations a user types or reads are humantime's (`spec::expand`,
//! `cli`). Logic that *decides* on time (lease expiry, debounce, backoff)
//! does not read this clock: it uses tokio's monotonic time, which tests
//! pause and advance.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as unix seconds (0 for a clock before 1970, which never decides
/// anything: these values are shown and compared for display only).
pub fn unix_now() -> u64 {
    to_unix(SystemTime::now())
}

/// `t` as unix seconds (0 before 1970).
pub fn to_unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now in RFC 3339, UTC, whole seconds: `2026-12-01T07:00:00Z`.
pub fn rfc3339_now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// Now in RFC 3339, UTC, with the sub-second part (for records whose order
/// within a second matters, e.g. journal rows).
pub fn rfc3339_now_precise() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_now_has_whole_seconds_and_parses_back() {
        let s = rfc3339_now();
        assert!(s.ends_with('Z') && !s.contains('.'), "{s}");
        let t: jiff::Timestamp = s.parse().expect("parses");
        assert!(t.as_second().abs_diff(unix_now() as i64) <= 2);
    }

    #[test]
    fn a_time_before_the_epoch_is_zero_not_a_panic() {
        let before = UNIX_EPOCH - std::time::Duration::from_secs(10);
        assert_eq!(to_unix(before), 0);
    }
}
