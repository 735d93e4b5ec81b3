//! Streaming a blob into a temp file while hashing it.
//!
//! Blocking code: callers run it on a blocking thread, never on the executor.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chacha20poly1305::XChaCha20Poly1305;
use sha2::{Digest as _, Sha256};

use super::format::{self, Codec, Footer, Header};
use super::local::Quota;
use super::{Digest, StoreError};

/// A blob being written. Dropping it before [`BlobWriter::finish`] removes
/// the temp file and gives back its quota.
pub struct BlobWriter {
    file: File,
    staged: Staged,
    header: Header,
    cipher: Option<XChaCha20Poly1305>,
    zstd_level: Option<i32>,
    hasher: Sha256,
    pending: Vec<u8>,
    sealed: Vec<u8>,
    offsets: Vec<u64>,
    pos: u64,
}

/// A blob fully written to a temp file, not yet visible.
///
/// Dropping it removes the temp file and returns its quota, unless it was
/// published and kept.
#[derive(Debug)]
pub struct Staged {
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
    pub(super) fn create(tmp: PathBuf, codec: &Codec, quota: Arc<Quota>) -> Result<Self, StoreError> {
        let header = Header::new(codec);
        let digest_for_errors = Digest([0; 32]);
        let cipher = header.cipher(codec.key.as_ref(), &digest_for_errors)?;
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(StoreError::io(&tmp))?;
        let mut staged = Staged {
            tmp,
            digest: digest_for_errors,
            size: 0,
            stored_size: 0,
            quota,
            reserved: 0,
            kept: false,
        };
        let raw = header.encode();
        staged.reserve(raw.len() as u64)?;
        file.write_all(&raw).map_err(StoreError::io(&staged.tmp))?;
        Ok(Self {
            file,
            pos: raw.len() as u64,
            staged,
            header,
            cipher,
            zstd_level: codec.zstd_level,
            hasher: Sha256::new(),
            pending: Vec::with_capacity(format::CHUNK),
            sealed: Vec::new(),
            offsets: Vec::new(),
        })
    }

    /// Appends plaintext.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(data);
        self.staged.size += data.len() as u64;
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
        self.file.write_all(&fh).map_err(StoreError::io(&self.staged.tmp))?;
        self.file.write_all(&self.sealed).map_err(StoreError::io(&self.staged.tmp))?;
        self.pos += (fh.len() + self.sealed.len()) as u64;
        self.pending.clear();
        Ok(())
    }

    /// Writes the last frame and the footer. The data is not yet durable:
    /// [`super::LocalStore::publish`] syncs it.
    pub fn finish(mut self) -> Result<Staged, StoreError> {
        // An empty blob still gets one (empty) frame, so "last" is always marked.
        self.flush_frame(true)?;
        let digest = Digest(self.hasher.clone().finalize().into());
        let footer = Footer { offsets: std::mem::take(&mut self.offsets), size: self.staged.size, digest }
            .encode();
        self.staged.reserve(footer.len() as u64)?;
        self.file.write_all(&footer).map_err(StoreError::io(&self.staged.tmp))?;
        self.pos += footer.len() as u64;
        self.staged.digest = digest;
        self.staged.stored_size = self.pos;
        // Move the staged part out; the writer's own Drop has nothing left to do.
        let placeholder = Staged {
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
