//! The crypt layer's readers, writers, listers and deleters: each wraps the
//! wrapped service's own and translates names, sizes and bytes.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use opendal::raw::*;
use opendal::{Buffer, BytesRange, Error, ErrorKind, Metadata, Result};

use super::Shared;
use crate::crypt::content::{self, BLOCK_DATA, ContentError, Decrypter, Encrypter, HEADER, TAG};

fn content_err(e: ContentError) -> Error {
    Error::new(ErrorKind::Unexpected, e.to_string())
}

fn is_control(path: &str) -> bool {
    path == ".coltec/" || path.starts_with(".coltec/")
}

// ----- read ------------------------------------------------------------------

pub struct CryptReader {
    inner: oio::Reader,
    shared: Arc<Shared>,
}

impl CryptReader {
    pub(super) fn new(inner: oio::Reader, shared: Arc<Shared>) -> Self {
        CryptReader { inner, shared }
    }
}

impl oio::Read for CryptReader {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        self.shared.ready().await?;
        if range.is_suffix() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "crypt remotes do not read suffix ranges",
            ));
        }
        let (offset, size) = (range.offset(), range.size());
        if size == Some(0) {
            return Ok((RpRead::default(), Box::new(Buffer::new())));
        }
        let (start, len, discard, skip) = content::underlying_range(offset, size);
        let (rp, header, stream) = if skip == 0 {
            // One request: the header arrives first on the stream.
            let len = len.map(|l| l.saturating_add(HEADER as u64));
            let (rp, s) = self.inner.open(BytesRange::new(0, len)).await?;
            (rp, BytesMut::new(), s)
        } else {
            let (_, h) = self
                .inner
                .read(BytesRange::new(0, Some(HEADER as u64)))
                .await?;
            let (rp, s) = self.inner.open(BytesRange::new(start, len)).await?;
            (rp, BytesMut::from(&h.to_bytes()[..]), s)
        };
        let mut s = CryptStream {
            inner: stream,
            shared: self.shared.clone(),
            header,
            dec: None,
            skip,
            discard,
            remaining: size,
            out: VecDeque::new(),
            eof: false,
        };
        s.start()?;
        Ok((plain_rp(rp), Box::new(s)))
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        let (rp, mut s) = self.open(range).await?;
        let buf = s.read_all_dyn().await?;
        Ok((rp, buf))
    }
}

/// A read reply describes the ciphertext response; keep what is still
/// true of the plaintext (ETag, mtime, user metadata), drop the length.
fn plain_rp(rp: RpRead) -> RpRead {
    match rp.into_metadata() {
        Some(m) => {
            let mut b = m.into_builder();
            b.set_unknown();
            RpRead::new(b.build())
        }
        None => RpRead::default(),
    }
}

struct CryptStream {
    inner: Box<dyn oio::ReadStreamDyn>,
    shared: Arc<Shared>,
    header: BytesMut,
    dec: Option<Decrypter>,
    skip: u64,
    discard: u64,
    remaining: Option<u64>,
    out: VecDeque<Bytes>,
    eof: bool,
}

impl CryptStream {
    /// Start decrypting once the whole header is known.
    fn start(&mut self) -> Result<()> {
        if self.dec.is_none() && self.header.len() >= HEADER {
            let d = self.shared.cipher.decrypter(&self.header, self.skip);
            self.dec = Some(d.map_err(content_err)?);
        }
        Ok(())
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        if self.dec.is_none() {
            let take = (HEADER - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.start()?;
        }
        if let Some(d) = self.dec.as_mut() {
            let mut blocks = Vec::new();
            d.push(data, &mut blocks).map_err(content_err)?;
            self.out.extend(blocks);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let Some(d) = self.dec.as_mut() else {
            return Err(content_err(ContentError::TooShort));
        };
        let mut blocks = Vec::new();
        d.finish(&mut blocks).map_err(content_err)?;
        self.out.extend(blocks);
        self.eof = true;
        Ok(())
    }

    /// The next plaintext piece inside the requested range, if decrypted.
    fn take(&mut self) -> Option<Bytes> {
        while let Some(mut b) = self.out.pop_front() {
            if self.discard > 0 {
                let d = usize::try_from(self.discard)
                    .unwrap_or(usize::MAX)
                    .min(b.len());
                b = b.slice(d..);
                self.discard -= d as u64;
            }
            if let Some(r) = self.remaining.as_mut() {
                let n = usize::try_from(*r).unwrap_or(usize::MAX).min(b.len());
                b.truncate(n);
                *r -= n as u64;
            }
            if !b.is_empty() {
                return Some(b);
            }
        }
        None
    }
}

impl oio::ReadStream for CryptStream {
    async fn read(&mut self) -> Result<Buffer> {
        loop {
            if let Some(b) = self.take() {
                return Ok(Buffer::from(b));
            }
            if self.eof || self.remaining == Some(0) {
                return Ok(Buffer::new());
            }
            let buf = self.inner.read_dyn().await?;
            if buf.is_empty() {
                self.finish()?;
                continue;
            }
            for chunk in buf {
                self.feed(&chunk)?;
            }
        }
    }
}

// ----- write -----------------------------------------------------------------

pub struct CryptWriter {
    inner: oio::Writer,
    shared: Arc<Shared>,
    enc: Encrypter,
    checked: bool,
    /// Ciphertext not handed on yet: every write but the last must be a
    /// whole multipart part (`min_part` bytes at least).
    out: BytesMut,
    min_part: usize,
}

impl CryptWriter {
    pub(super) fn new(inner: oio::Writer, shared: Arc<Shared>, min_part: usize) -> Self {
        let enc = shared.cipher.encrypter();
        CryptWriter {
            inner,
            shared,
            enc,
            checked: false,
            out: BytesMut::new(),
            min_part,
        }
    }

    async fn check(&mut self) -> Result<()> {
        if !self.checked {
            self.shared.ready().await?;
            self.checked = true;
        }
        Ok(())
    }
}

impl oio::Write for CryptWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.check().await?;
        let len = bs.len();
        self.out
            .reserve(len + (len / BLOCK_DATA + 1) * TAG + HEADER);
        for chunk in bs {
            self.enc.push(&chunk, &mut self.out);
        }
        if self.out.len() >= self.min_part.max(1) {
            let part = self.out.split().freeze();
            self.inner.write(Buffer::from(part)).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<Metadata> {
        self.check().await?;
        self.enc.finish(&mut self.out);
        if !self.out.is_empty() {
            let part = self.out.split().freeze();
            self.inner.write(Buffer::from(part)).await?;
        }
        let meta = self.inner.close().await?;
        Ok(self.shared.map_meta(meta.clone()).unwrap_or(meta))
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

// ----- list ------------------------------------------------------------------

pub struct CryptLister {
    /// The wrapped lister, or why it could not be made (reported after the
    /// password check, which must come first).
    inner: Result<oio::Lister>,
    shared: Arc<Shared>,
    checked: bool,
    /// Hand names that do not decrypt on, marked (see [`UNDECRYPTABLE`]):
    /// listings of the target's files do; listings of control objects
    /// (`.coltec/…`, the trash) only skip them.
    report: bool,
}

impl CryptLister {
    pub(super) fn new(inner: Result<oio::Lister>, shared: Arc<Shared>, path: &str) -> Self {
        CryptLister {
            inner,
            shared,
            checked: false,
            report: !is_control(path) && path != ".coltec",
        }
    }
}

/// Where a listing shows an object whose name does not decrypt: its raw
/// physical key (relative to the target's physical directory) below this
/// reserved control prefix, in an entry of unknown mode with content type
/// [`UNDECRYPTABLE`]. The sync engine reports it and never reads, moves or
/// deletes it; the prefix also keeps opendal's listing completion (a stat
/// of every entry of unknown mode) from looking for the raw key as a
/// plaintext name: [`undecryptable_meta`] answers that stat.
pub const UNDECRYPTABLE_PREFIX: &str = ".coltec/undecryptable/";

/// The content type of such an entry.
pub const UNDECRYPTABLE: &str = "application/x-coltec-undecryptable-name";

/// The metadata of an entry below [`UNDECRYPTABLE_PREFIX`].
pub(super) fn undecryptable_meta() -> Metadata {
    let mut b = opendal::MetadataBuilder::unknown();
    b.content_type(UNDECRYPTABLE);
    b.build()
}

fn undecryptable_entry(path: &str) -> oio::Entry {
    oio::Entry::new(
        &format!("{UNDECRYPTABLE_PREFIX}{path}"),
        undecryptable_meta(),
    )
}

impl oio::List for CryptLister {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        if !self.checked {
            self.shared.ready().await?;
            self.checked = true;
        }
        let inner = match self.inner.as_mut() {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound && self.shared.local => return Ok(None),
            Err(e) => {
                let kind = e.kind();
                return Err(Error::new(kind, e.to_string()));
            }
        };
        loop {
            let entry = match inner.next().await {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(None),
                // A local crypt directory that does not exist yet is empty.
                Err(e) if e.kind() == ErrorKind::NotFound && self.shared.local => return Ok(None),
                Err(e) => return Err(e),
            };
            let (path, meta) = entry.into_parts();
            let plain = match self.shared.plain_of(&path) {
                Ok(p) => p,
                Err(why) => {
                    tracing::debug!(
                        remote = %self.shared.remote,
                        object = %path,
                        "an object whose name does not decrypt ({why}); it is left as it is"
                    );
                    if self.report && !meta.is_dir() {
                        return Ok(Some(undecryptable_entry(&path)));
                    }
                    continue;
                }
            };
            if is_control(&plain) {
                // Manifest, dirty marker and trash are ciphertext; the
                // lease is not.
                let m = self.shared.map_meta(meta.clone()).unwrap_or(meta);
                return Ok(Some(oio::Entry::new(&plain, m)));
            }
            match self.shared.map_meta(meta) {
                Ok(m) => return Ok(Some(oio::Entry::new(&plain, m))),
                Err(why) => {
                    tracing::warn!(
                        remote = %self.shared.remote,
                        object = %path,
                        "skipping an object that is not rclone crypt ciphertext ({why}); it is left as it is"
                    );
                }
            }
        }
    }
}

// ----- delete ----------------------------------------------------------------

pub struct CryptDeleter {
    inner: oio::Deleter,
    shared: Arc<Shared>,
}

impl CryptDeleter {
    pub(super) fn new(inner: oio::Deleter, shared: Arc<Shared>) -> Self {
        CryptDeleter { inner, shared }
    }
}

impl oio::Delete for CryptDeleter {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        let phys = self.shared.phys_of(path);
        oio::Delete::delete(&mut self.inner, &phys, args).await
    }

    async fn close(&mut self) -> Result<()> {
        oio::Delete::close(&mut self.inner).await
    }
}
