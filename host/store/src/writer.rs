//! Streaming a blob in while hashing it.
//!
//! A blob starts in memory; once its plaintext passes [`INLINE_MAX`] it
//! spills into a temp file. Small blobs never touch the file system: they
//! are committed inside the metadata transaction, so many small puts cost
//! one fsync between them instead of a file, a rename and syncs each.
//!
//! Blocking code: callers run it on a blocking thread, never on the executor.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chacha20poly1305::XChaCha20Poly1305;
use sha2::{Digest as _, Sha256};

use super::format::{self, Codec, Footer, Header, INLINE_MAX};
use super::local::Quota;
use super::{Digest, StoreError};

/// A blob being written. Dropping it before [`BlobWriter::finish`] removes
/// the temp file and gives back its quota.
pub struct BlobWriter {
    sink: Sink,
    sync: bool,
    staged: Staged,
    header: Header,
    cipher: Option<XChaCha20Poly1305>,
    zstd_level: Option<i32>,
    hasher: Sha256,
    pending: Vec<u8>,
    sealed: Vec<u8>,
    offsets: Vec<u64>,
    pos: u64,
    /// File bytes already handed to the disk (see `start_writeback`).
    written_back: u64,
}

/// How much file data accumulates before its writeback is started.
const WRITEBACK_STEP: u64 = 8 << 20;

enum Sink {
    Memory(Vec<u8>),
    File(File),
}

/// A blob fully written, not yet visible: in memory (`inline`) or in a
/// temp file.
///
/// Dropping it removes the temp file and returns its quota, unless it was
/// published and kept.
#[derive(Debug)]
pub struct Staged {
    /// The stored bytes of a small blob; `None` when it is in `tmp`.
    pub inline: Option<bytes::Bytes>,
    pub(super) tmp: PathBuf,
    pub digest: Digest,
    pub size: u64,
    /// Bytes the file takes on disk.
    pub stored_size: u64,
    pub(super) quota: Arc<Quota>,
    pub(super) reserved: u64,
    pub(super) kept: bool,
}

impl Staged {
    /// The blob is now referenced: its file and quota stay.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Staged {
    /// The staged file of a blob that is not inline.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.inline.is_none().then_some(self.tmp.as_path())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.kept {
            self.quota.release(self.reserved);
            // Published-but-unkept files are handled by `LocalStore::publish`;
            // here the temp name either exists (never published) or not.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl BlobWriter {
    pub(super) fn create(tmp: PathBuf, codec: &Codec, quota: Arc<Quota>, sync: bool) -> Result<Self, StoreError> {
        let header = Header::new(codec);
        let digest_for_errors = Digest([0; 32]);
        let cipher = header.cipher(codec.key.as_ref(), &digest_for_errors)?;
        let mut staged = Staged { inline: None, tmp, digest: digest_for_errors, size: 0, stored_size: 0, quota, reserved: 0, kept: false };
        let raw = header.encode();
        staged.reserve(raw.len() as u64)?;
        Ok(Self {
            sink: Sink::Memory(raw.to_vec()),
            sync,
            pos: raw.len() as u64,
            staged,
            header,
            cipher,
            zstd_level: codec.zstd_level,
            hasher: Sha256::new(),
            pending: Vec::with_capacity(format::CHUNK.min(INLINE_MAX as usize * 2)),
            sealed: Vec::new(),
            offsets: Vec::new(),
            written_back: 0,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        fail::fail_point!("store.write", |a| Err(StoreError::io(&self.staged.tmp)(crate::failpoints::io_error(a))));
        match &mut self.sink {
            Sink::Memory(buf) => buf.extend_from_slice(bytes),
            Sink::File(f) => f.write_all(bytes).map_err(StoreError::io(&self.staged.tmp))?,
        }
        Ok(())
    }

    /// Moves a blob that outgrew memory into its temp file.
    fn spill(&mut self) -> Result<(), StoreError> {
        if let Sink::Memory(buf) = &self.sink {
            let mut file = File::options().write(true).create_new(true).open(&self.staged.tmp).map_err(StoreError::io(&self.staged.tmp))?;
            file.write_all(buf).map_err(StoreError::io(&self.staged.tmp))?;
            self.sink = Sink::File(file);
        }
        Ok(())
    }

    /// Bytes of memory the writer holds for data not yet on disk: its frame
    /// buffers, or the whole blob while it is small enough to stay inline.
    pub fn buffered(&self) -> usize {
        let sink = match &self.sink {
            Sink::Memory(buf) => buf.capacity(),
            Sink::File(_) => 0,
        };
        sink + self.pending.capacity() + self.sealed.capacity()
    }

    /// Appends plaintext.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(data);
        self.staged.size += data.len() as u64;
        if self.staged.size > INLINE_MAX {
            self.spill()?;
        }
        while !data.is_empty() {
            // A full frame is written only once more data follows, so that
            // `finish` always has the last frame in hand to mark it last.
            if self.pending.len() == format::CHUNK {
                self.flush_frame(false)?;
            }
            let take = (format::CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn flush_frame(&mut self, last: bool) -> Result<(), StoreError> {
        let index = self.offsets.len() as u64;
        self.header
            .seal(self.cipher.as_ref(), self.zstd_level, index, last, &self.pending, &mut self.sealed)
            .map_err(StoreError::io(&self.staged.tmp))?;
        let fh = format::frame_header(&self.sealed);
        self.staged.reserve((fh.len() + self.sealed.len()) as u64)?;
        self.offsets.push(self.pos);
        self.put(&fh)?;
        let sealed = std::mem::take(&mut self.sealed);
        let r = self.put(&sealed);
        self.sealed = sealed;
        r?;
        self.pos += (fh.len() + self.sealed.len()) as u64;
        self.pending.clear();
        self.start_writeback();
        Ok(())
    }

    /// Starts writing finished parts of the file to disk while the rest is
    /// still arriving, so the final fsync has only the tail left to do
    /// (otherwise a large put would receive everything, then wait for the
    /// whole file to reach the disk).
    fn start_writeback(&mut self) {
        #[cfg(target_os = "linux")]
        if let (true, Sink::File(f)) = (self.sync, &self.sink)
            && self.pos - self.written_back >= WRITEBACK_STEP
        {
            use std::os::fd::AsRawFd;
            let (from, len) = (self.written_back, self.pos - self.written_back);
            // SAFETY: sync_file_range reads no memory of ours; `f` is an open
            // descriptor for the call's duration. Failure only loses the head start.
            unsafe {
                libc::sync_file_range(f.as_raw_fd(), from as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
            }
            self.written_back = self.pos;
        }
    }

    /// Writes the last frame and the footer. A file-backed blob is synced
    /// here (on this thread, in parallel with other writes) when `sync`;
    /// [`super::LocalStore::publish`] then makes its name durable.
    pub fn finish(mut self) -> Result<Staged, StoreError> {
        // An empty blob still gets one (empty) frame, so "last" is always marked.
        self.flush_frame(true)?;
        let digest = Digest(self.hasher.clone().finalize().into());
        let footer = Footer { offsets: std::mem::take(&mut self.offsets), size: self.staged.size, digest }.encode();
        self.staged.reserve(footer.len() as u64)?;
        self.put(&footer)?;
        self.pos += footer.len() as u64;
        match std::mem::replace(&mut self.sink, Sink::Memory(Vec::new())) {
            Sink::Memory(buf) => self.staged.inline = Some(buf.into()),
            Sink::File(f) if self.sync => {
                fail::fail_point!("store.sync", |a| Err(StoreError::io(&self.staged.tmp)(crate::failpoints::io_error(a))));
                f.sync_data().map_err(StoreError::io(&self.staged.tmp))?
            }
            Sink::File(_) => {}
        }
        self.staged.digest = digest;
        self.staged.stored_size = self.pos;
        // Move the staged part out; the writer's own Drop has nothing left to do.
        let placeholder = Staged {
            inline: None,
            tmp: PathBuf::new(),
            digest,
            size: 0,
            stored_size: 0,
            quota: self.staged.quota.clone(),
            reserved: 0,
            kept: true,
        };
        Ok(std::mem::replace(&mut self.staged, placeholder))
    }
}

impl Staged {
    fn reserve(&mut self, bytes: u64) -> Result<(), StoreError> {
        self.quota.reserve(bytes)?;
        self.reserved += bytes;
        Ok(())
    }
}
