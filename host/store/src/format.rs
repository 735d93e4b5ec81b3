//! The on-disk layout of one blob file.
//!
//! ```text
//! header  64 B   magic "STRBLOB1", flags, chunk size, key fingerprint, nonce prefix
//! frames         per chunk of plaintext: [stored len u32][crc32c u32][stored bytes]
//! footer         [frame offset u64]*n, plaintext size u64, n u64, digest [32], "STRBEND1"
//! ```
//!
//! Every frame carries a CRC so a ranged read verifies what it touches without
//! reading the whole blob; a full read also checks the SHA-256 of the
//! plaintext. Frames are compressed and then encrypted independently, which is
//! what makes ranged reads of compressed or encrypted blobs cheap: the footer
//! says where frame `offset / CHUNK` starts.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};

use super::{Digest, StoreError};

pub const MAGIC: &[u8; 8] = b"STRBLOB1";
pub const END_MAGIC: &[u8; 8] = b"STRBEND1";
pub const HEADER_LEN: usize = 64;
/// Plaintext bytes per frame.
pub const CHUNK: usize = 1 << 20;
/// Blobs up to this many plaintext bytes are stored in the metadata store,
/// not in files of their own. Whether a blob is inline follows from its size.
pub const INLINE_MAX: u64 = 32 << 10;
pub const FRAME_HEADER_LEN: usize = 8;
/// Fixed part of the footer after the offsets.
pub const FOOTER_TAIL_LEN: usize = 8 + 8 + 32 + 8;

const FLAG_ZSTD: u8 = 1;
const FLAG_ENCRYPTED: u8 = 2;

/// A 32-byte key for encryption at rest.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    fingerprint: [u8; 8],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(fingerprint {})", hex::encode(self.fingerprint))
    }
}

impl Key {
    /// Parses 64 hex characters (surrounding white space allowed).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let raw = hex::decode(text.trim()).map_err(|_| "the key must be 64 hex characters (32 bytes)".to_string())?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| "the key must be 64 hex characters (32 bytes)".to_string())?;
        let mut h = Sha256::new();
        h.update(b"strata key fingerprint v1");
        h.update(bytes);
        let fingerprint = h.finalize()[..8].try_into().expect("8 bytes");
        Ok(Self { bytes, fingerprint })
    }

    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// How new blobs are written, and the key for reading encrypted ones.
#[derive(Clone, Debug)]
pub struct Codec {
    pub zstd_level: Option<i32>,
    pub key: Option<Key>,
}

/// The parsed header of one blob file.
#[derive(Clone, Debug)]
pub struct Header {
    pub zstd: bool,
    pub encrypted: bool,
    pub chunk: usize,
    pub key_fingerprint: [u8; 8],
    pub nonce_prefix: [u8; 16],
}

impl Header {
    pub fn new(codec: &Codec) -> Self {
        Self {
            zstd: codec.zstd_level.is_some(),
            encrypted: codec.key.is_some(),
            chunk: CHUNK,
            key_fingerprint: codec.key.as_ref().map(|k| k.fingerprint).unwrap_or_default(),
            nonce_prefix: if codec.key.is_some() { rand::random() } else { [0; 16] },
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8] = (self.zstd as u8 * FLAG_ZSTD) | (self.encrypted as u8 * FLAG_ENCRYPTED);
        out[12..16].copy_from_slice(&(self.chunk as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.key_fingerprint);
        out[24..40].copy_from_slice(&self.nonce_prefix);
        out
    }

    pub fn decode(raw: &[u8; HEADER_LEN]) -> Result<Self, String> {
        if &raw[..8] != MAGIC {
            return Err("not a strata blob (bad magic)".into());
        }
        let flags = raw[8];
        if flags & !(FLAG_ZSTD | FLAG_ENCRYPTED) != 0 {
            return Err(format!("unknown blob flags {flags:#x}"));
        }
        let chunk = u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes")) as usize;
        if chunk == 0 || chunk > 64 << 20 {
            return Err(format!("implausible chunk size {chunk}"));
        }
        Ok(Self {
            zstd: flags & FLAG_ZSTD != 0,
            encrypted: flags & FLAG_ENCRYPTED != 0,
            chunk,
            key_fingerprint: raw[16..24].try_into().expect("8 bytes"),
            nonce_prefix: raw[24..40].try_into().expect("16 bytes"),
        })
    }

    fn nonce(&self, index: u64) -> XNonce {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(&self.nonce_prefix);
        n[16..].copy_from_slice(&index.to_le_bytes());
        XNonce::from(n)
    }

    /// Binds a frame to its place, so frames cannot be reordered or the
    /// blob truncated at a frame boundary without detection.
    fn aad(index: u64, last: bool) -> [u8; 9] {
        let mut a = [0u8; 9];
        a[..8].copy_from_slice(&index.to_le_bytes());
        a[8] = last as u8;
        a
    }

    /// Checks that `key` can read this blob.
    pub fn cipher(&self, key: Option<&Key>, digest: &Digest) -> Result<Option<XChaCha20Poly1305>, StoreError> {
        if !self.encrypted {
            return Ok(None);
        }
        let key = key.ok_or(StoreError::NoKey { digest: *digest })?;
        if key.fingerprint != self.key_fingerprint {
            return Err(StoreError::WrongKey {
                digest: *digest,
                blob_key: hex::encode(self.key_fingerprint),
                configured_key: key.fingerprint_hex(),
            });
        }
        Ok(Some(XChaCha20Poly1305::new_from_slice(&key.bytes).expect("32-byte key")))
    }

    /// Turns one chunk of plaintext into the stored bytes of its frame.
    pub fn seal(
        &self,
        cipher: Option<&XChaCha20Poly1305>,
        zstd_level: Option<i32>,
        index: u64,
        last: bool,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        out.clear();
        match zstd_level {
            Some(level) if self.zstd => {
                out.resize(zstd::zstd_safe::compress_bound(plain.len()), 0);
                let n = zstd::bulk::compress_to_buffer(plain, &mut out[..], level)?;
                out.truncate(n);
            }
            _ => out.extend_from_slice(plain),
        }
        if let Some(cipher) = cipher {
            cipher
                .encrypt_in_place(&self.nonce(index), &Self::aad(index, last), out)
                .map_err(|_| std::io::Error::other("encryption failed"))?;
        }
        Ok(())
    }

    /// Reverses [`Header::seal`]; `stored` is replaced by the plaintext.
    pub fn open(
        &self,
        cipher: Option<&XChaCha20Poly1305>,
        index: u64,
        last: bool,
        stored: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), String> {
        if let Some(cipher) = cipher {
            cipher
                .decrypt_in_place(&self.nonce(index), &Self::aad(index, last), stored)
                .map_err(|_| format!("frame {index} failed authentication"))?;
        }
        if self.zstd {
            scratch.clear();
            scratch.resize(self.chunk, 0);
            let n = zstd::bulk::decompress_to_buffer(stored, &mut scratch[..])
                .map_err(|e| format!("frame {index} does not decompress: {e}"))?;
            scratch.truncate(n);
            std::mem::swap(stored, scratch);
        }
        Ok(())
    }
}

/// The footer written after the last frame.
#[derive(Debug)]
pub struct Footer {
    pub offsets: Vec<u64>,
    pub size: u64,
    pub digest: Digest,
}

impl Footer {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * 8 + FOOTER_TAIL_LEN);
        for o in &self.offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&(self.offsets.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.digest.0);
        out.extend_from_slice(END_MAGIC);
        out
    }

    /// Parses the fixed tail: (size, frame count, digest).
    pub fn decode_tail(tail: &[u8; FOOTER_TAIL_LEN]) -> Result<(u64, u64, Digest), String> {
        if &tail[48..56] != END_MAGIC {
            return Err("blob footer missing (truncated file?)".into());
        }
        let size = u64::from_le_bytes(tail[..8].try_into().expect("8"));
        let n = u64::from_le_bytes(tail[8..16].try_into().expect("8"));
        let digest = Digest(tail[16..48].try_into().expect("32"));
        Ok((size, n, digest))
    }
}

pub fn frame_header(stored: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&(stored.len() as u32).to_le_bytes());
    h[4..].copy_from_slice(&crc32c::crc32c(stored).to_le_bytes());
    h
}
