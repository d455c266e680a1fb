//! What a lease object says: the JSON stored at `<prefix>/.coltec/lease.json`.
//!
//! The timestamps in a record are for humans only: no expiry decision reads
//! them (see the module doc of [`crate::lease`]). Who wrote a record is
//! judged by the holder identity (`lease::identity`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bumped when the record layout changes incompatibly.
pub const RECORD_FORMAT: u32 = 1;

/// The lease object. Unknown fields are ignored so newer writers stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub format: u32,
    /// Random id of the holder, kept in its state dir (not a secret).
    pub lease_id: String,
    pub host: String,
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devcontainer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    pub pid: u32,
    pub coltecd_version: String,
    /// `{org}/{project}/{env}` of the holder's spec.
    pub workspace: String,
    /// The leased prefix, for humans browsing the bucket.
    pub location: String,
    /// RFC 3339, the holder's wall clock (informational).
    pub acquired_at: String,
    /// RFC 3339, the holder's wall clock (informational).
    pub renewed_at: String,
    /// The holder fences itself within this time after its last successful
    /// renewal; others wait at least this long on their own clock.
    pub ttl_ms: u64,
    /// Random per acquiring process: lets a writer recognise its own write
    /// after an ambiguous failure (response lost, request retried).
    pub session: String,
    /// Incremented on every write by the holder.
    pub seq: u64,
    /// Set by a graceful release just before the object is deleted.
    #[serde(default)]
    pub released: bool,
    /// Names of the spec's targets that write this prefix (for the fleet
    /// view). Absent in records written by coltecd before it was added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// What the holder's daemon was doing at this renewal (for `coltecd
    /// fleet`); absent from one-shot commands and older coltecd versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
}

/// The holder's activity, refreshed on every renewal at no extra request:
/// what `coltecd fleet` shows as "last change" and "idle for". All times
/// are unix seconds on the holder's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Last time a pass found and pushed local changes (or the watcher
    /// reported ones still pending).
    #[serde(default)]
    pub last_local_change_at: Option<u64>,
    /// Last time a pass changed the remote or found it changed.
    #[serde(default)]
    pub last_remote_change_at: Option<u64>,
    /// Local changes not yet on the remote.
    #[serde(default)]
    pub pending_files: u64,
    /// Last pass that succeeded (any target of the prefix).
    #[serde(default)]
    pub last_success_at: Option<u64>,
    /// When the daemon started (unix seconds).
    #[serde(default)]
    pub started_at: Option<u64>,
    /// `running`, `syncing` or `degraded` (a pass failed).
    #[serde(default)]
    pub daemon_state: String,
}

/// Where a lease set reads the daemon's activity from, at each renewal.
pub type ActivitySource = std::sync::Arc<dyn Fn() -> Activity + Send + Sync>;

impl LeaseRecord {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a plain struct of strings and numbers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Option<LeaseRecord> {
        serde_json::from_slice(bytes).ok()
    }

    /// "host H, container C, slot S, pid P" for messages.
    pub fn describe_holder(&self) -> String {
        let mut s = format!(
            "host {}, container {}",
            self.host,
            short(&self.container_id)
        );
        if let Some(slot) = &self.slot {
            s.push_str(&format!(", slot {slot}"));
        }
        if let Some(dc) = &self.devcontainer_id {
            s.push_str(&format!(", devcontainer {}", short(dc)));
        }
        s.push_str(&format!(
            ", pid {}, coltecd {}, workspace {}",
            self.pid, self.coltecd_version, self.workspace
        ));
        s
    }
}

fn short(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_unknown_fields_are_ignored() {
        let rec = LeaseRecord {
            format: RECORD_FORMAT,
            lease_id: "0123456789abcdef0123456789abcdef".into(),
            host: "h".into(),
            container_id: "c".repeat(64),
            devcontainer_id: None,
            slot: None,
            pid: 1,
            coltecd_version: "0".into(),
            workspace: "o/p/e".into(),
            location: "s3://b/p".into(),
            acquired_at: "t".into(),
            renewed_at: "t".into(),
            ttl_ms: 60_000,
            session: "s".into(),
            seq: 3,
            released: false,
            targets: vec!["claude".into()],
            activity: Some(Activity {
                last_local_change_at: Some(5),
                pending_files: 2,
                daemon_state: "running".into(),
                ..Activity::default()
            }),
        };
        assert_eq!(LeaseRecord::parse(&rec.to_bytes()), Some(rec.clone()));
        let mut v: serde_json::Value = serde_json::from_slice(&rec.to_bytes()).unwrap();
        v["from_the_future"] = serde_json::json!(1);
        assert_eq!(
            LeaseRecord::parse(&serde_json::to_vec(&v).unwrap()),
            Some(rec)
        );
    }

    #[test]
    fn a_record_without_the_fleet_fields_still_parses() {
        // What coltecd wrote before `targets` and `activity` existed.
        let old = br#"{"format":1,"lease_id":"l","host":"h","container_id":"c","pid":1,
            "coltecd_version":"0","workspace":"o/p/e","location":"s3://b/p",
            "acquired_at":"t","renewed_at":"t","ttl_ms":1000,"session":"s","seq":1}"#;
        let rec = LeaseRecord::parse(old).expect("old record parses");
        assert!(rec.targets.is_empty());
        assert_eq!(rec.activity, None);
        assert!(!rec.to_bytes().windows(8).any(|w| w == b"activity"));
    }
}
