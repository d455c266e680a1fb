//! `status.json` in the state dir: the last status the daemon wrote, for
//! `coltecd status` when no daemon answers (after a crash, or stopped).

use std::path::Path;

use super::{DaemonStatus, STATUS_FILE};

/// Write `status` to `<state_dir>/status.json` atomically (temp file +
/// rename), so a reader never sees half a file even after `kill -9`.
pub fn write_file(state_dir: &Path, status: &DaemonStatus) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&state_dir.join(STATUS_FILE), &body)
}

/// The last status written, if any and readable.
pub fn read_file(state_dir: &Path) -> Option<DaemonStatus> {
    let body = std::fs::read(state_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&body).ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::sample;
    use super::*;
    #[test]
    fn status_file_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let s = sample(1_000_000);
        write_file(tmp.path(), &s).unwrap();
        assert_eq!(read_file(tmp.path()).unwrap(), s);
    }
}
