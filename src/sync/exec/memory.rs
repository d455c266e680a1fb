//! Bounding the file content a run holds in memory for uploads.
//!
//! Small files are uploaded from an in-memory snapshot (up to
//! [`SNAPSHOT_MAX`]) and large ones stream as multipart uploads whose
//! parts are buffers of their own (`upload`: chunk × (concurrency + 2)).
//! With `transfers` of each at once the peak was their sum: three 64 MiB
//! files in one push held 3 × 32 MiB of buffers and the process peaked at
//! ~120 MiB. Every file upload first reserves its share of one
//! budget of [`UPLOAD_MEMORY`]: a snapshot its size, a stream its
//! buffers. At most one multipart stream is waiting for (or holding) the
//! budget at a time, so a stream that cannot start yet never holds up the
//! small files queued behind it (the budget's queue is first come, first
//! served); the other transfer slots keep uploading small files. Large
//! files thus stream one at a time, which costs little: one stream with a
//! part in flight already keeps a link busy, the other slots do the rest.

use tokio::sync::{Semaphore, SemaphorePermit};

use super::Exec;
use super::snapshot::SNAPSHOT_MAX;
use crate::sync::SyncError;

/// Bytes of file content the uploads of one run may hold at once.
/// One multipart stream (20 MiB) plus room for small files beside it.
pub(super) const UPLOAD_MEMORY: u64 = 28 * 1024 * 1024;
/// Permits count KiB (a `u32` of bytes would not hold large budgets).
const UNIT: u64 = 1024;

/// The budget itself (one per [`Exec`]).
pub(super) struct Budget {
    bytes: Semaphore,
    streams: Semaphore,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            bytes: Semaphore::new((UPLOAD_MEMORY / UNIT) as usize),
            streams: Semaphore::new(1),
        }
    }
}

/// A reservation, given back when dropped.
pub(super) struct Reserved<'a> {
    _stream: Option<SemaphorePermit<'a>>,
    _bytes: SemaphorePermit<'a>,
}

/// The KiB to reserve for `bytes`: at least one, at most the whole budget
/// (a larger need still runs, alone).
fn units(bytes: u64) -> u32 {
    let u = bytes.div_ceil(UNIT).clamp(1, UPLOAD_MEMORY / UNIT);
    u32::try_from(u).unwrap_or(u32::MAX)
}

impl Exec<'_> {
    /// Reserve memory for uploading a file of `size` bytes; a file larger
    /// than a snapshot streams and needs `stream_need` bytes of buffers.
    pub(super) async fn reserve_upload_memory(
        &self,
        size: u64,
        stream_need: u64,
    ) -> Result<Reserved<'_>, SyncError> {
        let b = &self.memory;
        let fut = async {
            let (stream, need) = if size <= SNAPSHOT_MAX {
                (None, size)
            } else {
                (Some(b.streams.acquire().await?), stream_need)
            };
            let bytes = b.bytes.acquire_many(units(need)).await?;
            Ok::<_, tokio::sync::AcquireError>(Reserved {
                _stream: stream,
                _bytes: bytes,
            })
        };
        tokio::select! {
            r = fut => r.map_err(|e| SyncError::Internal(e.to_string())),
            _ = self.cancel.cancelled() => Err(SyncError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_up_and_stay_within_the_budget() {
        assert_eq!(units(0), 1);
        assert_eq!(units(1), 1);
        assert_eq!(units(1025), 2);
        assert_eq!(units(u64::MAX), (UPLOAD_MEMORY / UNIT) as u32);
    }
}
