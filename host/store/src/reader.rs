//! Reading a blob back, verifying as it goes.
//!
//! Blocking code. Each frame's CRC (and, when encrypted, its tag) is checked
//! before any of its bytes are returned; a full read also checks the SHA-256
//! of the whole plaintext and reports a mismatch as the last item, so a
//! corrupted blob never reads back as good.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;
use chacha20poly1305::XChaCha20Poly1305;
use sha2::{Digest as _, Sha256};

use super::format::{self, Footer, Header, Key};
use super::{Digest, Range, StoreError};

/// Where a blob's stored bytes come from: a file, a buffer loaded from the
/// metadata store (small blobs), or an object on a tier read by ranges.
pub trait Source: Read + Seek + Send {}
impl<T: Read + Seek + Send> Source for T {}

pub struct BlobReader {
    file: Box<dyn Source>,
    path: PathBuf,
    digest: Digest,
    header: Header,
    cipher: Option<XChaCha20Poly1305>,
    /// Plaintext size of the blob.
    pub size: u64,
    frames: u64,
    /// Next frame to read.
    index: u64,
    /// Plaintext bytes still to return.
    remaining: u64,
    /// Bytes to drop from the front of the next frame.
    skip: usize,
    /// Set on full reads only.
    hasher: Option<Sha256>,
    stored: Vec<u8>,
    scratch: Vec<u8>,
    done: bool,
}

impl BlobReader {
    /// Opens a blob file at any path (a blob fetched from elsewhere, before
    /// it is placed).
    pub fn open(path: PathBuf, digest: Digest, key: Option<&Key>, range: Range) -> Result<Self, StoreError> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { digest });
            }
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        let len = file.metadata().map_err(StoreError::io(&path))?.len();
        Self::from_source(Box::new(file), len, path, digest, key, range)
    }

    /// Reads a blob held in memory (small blobs live in the metadata store).
    pub fn inline(stored: Vec<u8>, digest: Digest, key: Option<&Key>, range: Range) -> Result<Self, StoreError> {
        let len = stored.len() as u64;
        let path = PathBuf::from(format!("<inline blob {digest}>"));
        Self::from_source(Box::new(Cursor::new(stored)), len, path, digest, key, range)
    }

    /// Reads a blob from any [`Source`] of `len` stored bytes; `path` names
    /// it in errors.
    pub fn from_source(
        mut file: Box<dyn Source>,
        len: u64,
        path: PathBuf,
        digest: Digest,
        key: Option<&Key>,
        range: Range,
    ) -> Result<Self, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt { digest, why };
        if len < (format::HEADER_LEN + format::FOOTER_TAIL_LEN) as u64 {
            return Err(corrupt(format!("file is only {len} bytes")));
        }
        let mut raw = [0u8; format::HEADER_LEN];
        file.read_exact(&mut raw).map_err(StoreError::io(&path))?;
        let header = Header::decode(&raw).map_err(corrupt)?;
        let cipher = header.cipher(key, &digest)?;

        let mut tail = [0u8; format::FOOTER_TAIL_LEN];
        file.seek(SeekFrom::End(-(format::FOOTER_TAIL_LEN as i64))).map_err(StoreError::io(&path))?;
        file.read_exact(&mut tail).map_err(StoreError::io(&path))?;
        let (size, frames, stored_digest) = Footer::decode_tail(&tail).map_err(corrupt)?;
        if stored_digest != digest {
            return Err(corrupt(format!("footer names digest {stored_digest}")));
        }
        let chunk = header.chunk as u64;
        if frames != size.div_ceil(chunk).max(1) {
            return Err(corrupt(format!("{frames} frames cannot hold {size} bytes")));
        }
        let offsets_at = frames
            .checked_mul(8)
            .and_then(|t| t.checked_add(format::FOOTER_TAIL_LEN as u64))
            .and_then(|t| len.checked_sub(t))
            .filter(|at| *at >= format::HEADER_LEN as u64)
            .ok_or_else(|| corrupt("footer frame table overruns the file".into()))?;

        if range.offset > size {
            return Err(StoreError::BadRange { offset: range.offset, size });
        }
        let remaining = range.len.map_or(size - range.offset, |l| l.min(size - range.offset));
        let index = (range.offset / chunk).min(frames - 1);
        let skip = (range.offset - index * chunk) as usize;

        let mut at = [0u8; 8];
        file.seek(SeekFrom::Start(offsets_at + index * 8)).map_err(StoreError::io(&path))?;
        file.read_exact(&mut at).map_err(StoreError::io(&path))?;
        let frame_at = u64::from_le_bytes(at);
        if frame_at < format::HEADER_LEN as u64 || frame_at >= offsets_at {
            return Err(corrupt(format!("frame {index} offset {frame_at} is out of bounds")));
        }
        file.seek(SeekFrom::Start(frame_at)).map_err(StoreError::io(&path))?;

        Ok(Self {
            file,
            path,
            digest,
            header,
            cipher,
            size,
            frames,
            index,
            remaining,
            skip,
            hasher: range.is_all().then(Sha256::new),
            stored: Vec::new(),
            scratch: Vec::new(),
            done: false,
        })
    }

    fn corrupt(&self, why: String) -> StoreError {
        StoreError::Corrupt { digest: self.digest, why }
    }

    /// Reads the rest through, verifying every frame (and, on a full read,
    /// the digest), keeping nothing: a check of the bytes.
    pub fn read_through(&mut self) -> Result<(), StoreError> {
        while let Some(chunk) = self.next_chunk() {
            chunk?;
        }
        Ok(())
    }

    /// The next piece of plaintext, `None` at the end. After an error the
    /// reader is finished.
    pub fn next_chunk(&mut self) -> Option<Result<Bytes, StoreError>> {
        if self.done {
            return None;
        }
        let r = self.next_inner();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }

    fn next_inner(&mut self) -> Option<Result<Bytes, StoreError>> {
        if self.remaining == 0 {
            if let Some(h) = self.hasher.take() {
                // A full read: everything was returned, now prove it was right.
                if self.index < self.frames {
                    // An empty blob's single frame has not been read yet.
                    if let Err(e) = self.read_frame() {
                        return Some(Err(e));
                    }
                }
                let actual = Digest(h.finalize().into());
                if actual != self.digest {
                    return Some(Err(self.corrupt(format!("content hashes to {actual}"))));
                }
            }
            return None;
        }
        if self.index >= self.frames {
            return Some(Err(self.corrupt("ran out of frames".into())));
        }
        if let Err(e) = self.read_frame() {
            return Some(Err(e));
        }
        let plain = std::mem::take(&mut self.stored);
        if let Some(h) = &mut self.hasher {
            h.update(&plain);
        }
        let mut out = Bytes::from(plain);
        if self.skip > 0 {
            if self.skip > out.len() {
                return Some(Err(self.corrupt("frame shorter than its place implies".into())));
            }
            out = out.slice(self.skip..);
            self.skip = 0;
        }
        if out.len() as u64 > self.remaining {
            out.truncate(self.remaining as usize);
        }
        self.remaining -= out.len() as u64;
        Some(Ok(out))
    }

    /// Reads frame `self.index` into `self.stored` as plaintext.
    fn read_frame(&mut self) -> Result<(), StoreError> {
        let mut fh = [0u8; format::FRAME_HEADER_LEN];
        self.file.read_exact(&mut fh).map_err(|e| self.short(e))?;
        let len = u32::from_le_bytes(fh[..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(fh[4..].try_into().expect("4"));
        if len > self.header.chunk + (self.header.chunk >> 4) + 4096 {
            return Err(self.corrupt(format!("frame {} claims {len} bytes", self.index)));
        }
        self.stored.clear();
        self.stored.reserve(len);
        // read_to_end fills spare capacity without zeroing it first.
        let got = (&mut self.file).take(len as u64).read_to_end(&mut self.stored).map_err(|e| self.short(e))?;
        if got != len {
            return Err(self.corrupt("file ends inside a frame".into()));
        }
        if crc32c::crc32c(&self.stored) != crc {
            return Err(self.corrupt(format!("frame {} fails its checksum", self.index)));
        }
        let last = self.index + 1 == self.frames;
        self.header.open(self.cipher.as_ref(), self.index, last, &mut self.stored, &mut self.scratch).map_err(|why| self.corrupt(why))?;
        let chunk = self.header.chunk as u64;
        let expect = if last { self.size - self.index * chunk } else { chunk };
        if self.stored.len() as u64 != expect {
            return Err(self.corrupt(format!("frame {} holds {} bytes, expected {expect}", self.index, self.stored.len())));
        }
        self.index += 1;
        Ok(())
    }

    fn short(&self, e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            self.corrupt("file ends inside a frame".into())
        } else {
            StoreError::io(&self.path)(e)
        }
    }
}
