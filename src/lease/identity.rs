//! Who "we" are, as far as leases are concerned: the holder identity
//! written into every record, and how a record is recognised as ours.
//!
//! Identity is the pair (lease id kept in the local state dir, container
//! id): a restarted container finds both unchanged and reclaims its own
//! lease at once, while a different container with the same host name has
//! neither. The per-process session id tells this very process's writes
//! apart (an ambiguous write whose response was lost).

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::error::LeaseError;
use super::record::{LeaseRecord, RECORD_FORMAT};
use crate::fsutil::write_atomic;

/// Who this process is, as far as leases are concerned.
#[derive(Debug, Clone)]
pub struct Identity {
    pub lease_id: String,
    pub host: String,
    pub container_id: String,
    pub devcontainer_id: Option<String>,
    pub slot: Option<String>,
    pub pid: u32,
    pub session: String,
}

const LEASE_ID_FILE: &str = "lease-id";

impl Identity {
    /// The identity of a set that holds nothing (`lease: off`): it never
    /// reaches the protocol, and matches no record.
    pub fn nobody() -> Identity {
        Identity {
            lease_id: String::new(),
            host: String::new(),
            container_id: String::new(),
            devcontainer_id: None,
            slot: None,
            pid: 0,
            session: String::new(),
        }
    }

    /// Load the lease id kept in `state_dir` (creating it the first time).
    pub fn load_or_create(state_dir: &Path) -> Result<Identity, LeaseError> {
        let path = state_dir.join(LEASE_ID_FILE);
        let lease_id = match fs::read_to_string(&path) {
            Ok(s) if is_lease_id(s.trim()) => s.trim().to_string(),
            Ok(_) | Err(_) => {
                let id = random_hex();
                write_atomic(&path, id.as_bytes()).map_err(|source| LeaseError::StateDir {
                    path: path.clone(),
                    source,
                })?;
                id
            }
        };
        Ok(Identity {
            lease_id,
            host: crate::state_dir::hostname(),
            container_id: container_id(),
            devcontainer_id: env_nonempty("DEVCONTAINER_ID")
                .or_else(|| env_nonempty("CODESPACE_NAME")),
            slot: env_nonempty("COLTEC_SLOT"),
            pid: std::process::id(),
            session: random_hex(),
        })
    }

    /// Whether `rec` was written by this container's state dir (own restart).
    pub fn owns(&self, rec: &LeaseRecord) -> bool {
        rec.lease_id == self.lease_id && rec.container_id == self.container_id
    }

    /// Whether `rec` was written by this very process (same session).
    pub fn wrote(&self, rec: &LeaseRecord) -> bool {
        rec.session == self.session && rec.lease_id == self.lease_id
    }

    pub fn record(
        &self,
        workspace: &str,
        location: &str,
        ttl: Duration,
        acquired_at: &str,
        seq: u64,
    ) -> LeaseRecord {
        LeaseRecord {
            format: RECORD_FORMAT,
            lease_id: self.lease_id.clone(),
            host: self.host.clone(),
            container_id: self.container_id.clone(),
            devcontainer_id: self.devcontainer_id.clone(),
            slot: self.slot.clone(),
            pid: self.pid,
            coltecd_version: env!("CARGO_PKG_VERSION").to_string(),
            workspace: workspace.to_string(),
            location: location.to_string(),
            acquired_at: acquired_at.to_string(),
            renewed_at: crate::clock::rfc3339_now(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            session: self.session.clone(),
            seq,
            released: false,
            targets: Vec::new(),
            activity: None,
        }
    }
}

fn is_lease_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 128 random bits as hex.
pub fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Overrides the detected container id (a runtime coltecd cannot see
/// through; tests simulate two containers with it).
pub const CONTAINER_ID_ENV: &str = "COLTEC_CONTAINER_ID";

/// The id of the container we run in: [`CONTAINER_ID_ENV`] when set, else a
/// 64-hex id found in `/proc/self/cgroup` (cgroup v1, or v2 with a
/// container-scoped path) or in `/proc/self/mountinfo` (docker bind-mounts
/// `/etc/hostname` from `.../containers/<id>/hostname`), else `$HOSTNAME`,
/// else the host name.
pub fn container_id() -> String {
    if let Some(id) = env_nonempty(CONTAINER_ID_ENV) {
        return id;
    }
    for file in ["/proc/self/cgroup", "/proc/self/mountinfo"] {
        if let Ok(text) = fs::read_to_string(file)
            && let Some(id) = find_container_id(&text)
        {
            return id;
        }
    }
    env_nonempty("HOSTNAME").unwrap_or_else(crate::state_dir::hostname)
}

fn find_container_id(text: &str) -> Option<String> {
    for line in text.lines() {
        // Only paths that name a container runtime; a bare 64-hex token
        // elsewhere (e.g. an overlay layer digest) is not a container id.
        let interesting = [
            "docker",
            "containers/",
            "cri-containerd",
            "crio-",
            "libpod",
            "kubepods",
        ]
        .iter()
        .any(|m| line.contains(m));
        if !interesting {
            continue;
        }
        for token in line.split(|c: char| !c.is_ascii_hexdigit()) {
            if token.len() == 64 {
                return Some(token.to_ascii_lowercase());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_from_cgroup_v1_and_mountinfo() {
        let id = "a".repeat(64);
        let cg = format!("12:pids:/docker/{id}\n0::/\n");
        assert_eq!(find_container_id(&cg), Some(id.clone()));
        let mi = format!(
            "612 590 254:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(find_container_id(&mi), Some(id.clone()));
        let scope = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(find_container_id(&scope), Some(id));
        assert_eq!(find_container_id("0::/\n"), None);
    }

    #[test]
    fn lease_id_is_kept_in_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(tmp.path()).unwrap();
        let b = Identity::load_or_create(tmp.path()).unwrap();
        assert_eq!(a.lease_id, b.lease_id);
        assert_ne!(a.session, b.session);
        let other = tempfile::tempdir().unwrap();
        let c = Identity::load_or_create(other.path()).unwrap();
        assert_ne!(a.lease_id, c.lease_id);
        let rec = a.record("o/p/e", "s3://b/p", Duration::from_secs(60), "t", 0);
        assert!(b.owns(&rec));
        assert!(!b.wrote(&rec));
        assert!(!c.owns(&rec));
        assert_eq!(LeaseRecord::parse(&rec.to_bytes()), Some(rec));
    }
}
