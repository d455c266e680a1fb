//! Filesystems whose file events cover only this machine's changes (NFS,
//! SMB, FUSE, 9p, ...): the target keeps its events and says so in
//! `status`; the interval scan picks up the rest.

use std::path::Path;

/// Filesystems on which inotify reports only the changes made through
/// this kernel: what another NFS client, the host of a VM's shared folder
/// or the far side of a FUSE mount changes raises no event (unless the
/// platform forwards events itself, as Docker Desktop does for its bind
/// mounts). statfs magic numbers from `linux/magic.h`; virtiofs reports
/// FUSE.
const PARTIAL_EVENT_FS: &[(u32, &str)] = &[
    (0x6969, "nfs"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x517B, "smb"),
    (
        0x6573_5546,
        "a FUSE filesystem (sshfs, rclone mount, virtiofs, ...)",
    ),
    (0x0102_1997, "9p (a VM shared folder, e.g. WSL2)"),
    (0x00C3_6400, "ceph"),
    (0x5346_414F, "afs"),
    (0x7375_7245, "coda"),
    (0x4750_4653, "gpfs"),
];

/// The kind of filesystem `dir` is on, when file events there cover only
/// local changes.
pub(super) fn partial_events_fs(dir: &Path) -> Option<&'static str> {
    let st = nix::sys::statfs::statfs(dir).ok()?;
    partial_events_kind(st.filesystem_type().0 as u64)
}

fn partial_events_kind(magic: u64) -> Option<&'static str> {
    // The magic is a 32-bit value in a signed or unsigned long.
    let magic = (magic & 0xFFFF_FFFF) as u32;
    PARTIAL_EVENT_FS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn network_and_fuse_filesystems_are_known_to_miss_events() {
        assert_eq!(partial_events_kind(0x6969), Some("nfs"));
        assert!(partial_events_kind(0x6573_5546).unwrap().contains("FUSE"));
        // cifs as a sign-extended 32-bit value in a signed long
        assert_eq!(partial_events_kind(0xFFFF_FFFF_FF53_4D42), Some("cifs"));
        // ext4, tmpfs, overlayfs (Docker's root): events are complete
        for local in [0xEF53, 0x0102_1994, 0x794C_7630] {
            assert_eq!(partial_events_kind(local), None);
        }
        // The test machine's temp dir is local.
        assert_eq!(partial_events_fs(&std::env::temp_dir()), None);
    }
}
