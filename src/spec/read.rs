//! Reading the spec file: a regular file of at most [`MAX_SPEC_BYTES`],
//! read without ever blocking or growing without bound.
//!
//! `--config` is user input: `/dev/zero` would grow the buffer until the
//! machine runs out of memory, a FIFO would block forever, a directory
//! would fail with a confusing message. The file is opened with
//! `O_NONBLOCK` (so opening a FIFO does not wait for a writer), checked to
//! be a regular file on the open descriptor (no race with a rename), and
//! read through a bounded reader that stops one byte past the cap.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::defaults::MAX_SPEC_BYTES;

/// The text of the spec file at `path`. Errors are [`io::Error`]s whose
/// message says what is wrong with the file (the caller adds the path).
pub(crate) fn spec_text(path: &Path) -> io::Result<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", file_kind(&meta.file_type())),
        ));
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    read_bounded(file)
}

fn read_bounded(file: File) -> io::Result<String> {
    let mut bytes = Vec::new();
    // One byte more than allowed: a file that grew after the size check is
    // still caught.
    file.take(MAX_SPEC_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "it is larger than {} KiB, the limit for a workspace spec",
            MAX_SPEC_BYTES / 1024
        ),
    )
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_at_once() {
        let e = spec_text(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = spec_text(Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.yaml");
        std::fs::write(&p, vec![b'#'; MAX_SPEC_BYTES as usize + 1]).unwrap();
        let e = spec_text(&p).unwrap_err();
        assert!(e.to_string().contains("larger than 1024 KiB"), "{e}");
        std::fs::write(&p, vec![b'#'; MAX_SPEC_BYTES as usize]).unwrap();
        assert_eq!(spec_text(&p).unwrap().len(), MAX_SPEC_BYTES as usize);
    }
}
