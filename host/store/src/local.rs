//! Blob files under `<base>/blobs/ab/cd/<digest>`, with `tmp/` for writes in
//! flight and `quarantine/` for blobs that failed verification.
//!
//! Everything here blocks; async callers go through `spawn_blocking`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::format::Codec;
use super::{BlobReader, BlobWriter, Digest, Range, Staged, StoreError};

/// Bytes on disk, against an optional limit. Writes reserve as they go, so
/// concurrent writes cannot together overshoot.
#[derive(Debug)]
pub struct Quota {
    pub max: u64,
    used: AtomicU64,
}

impl Quota {
    pub fn new(max: u64) -> Self {
        Self { max, used: AtomicU64::new(0) }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        let prev = self.used.fetch_add(bytes, Ordering::Relaxed);
        if self.max != 0 && prev + bytes > self.max {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(StoreError::QuotaExceeded { used: prev, max: self.max });
        }
        Ok(())
    }

    pub fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Counts bytes already on disk at start.
    pub fn add_existing(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }
}

pub struct LocalStore {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    codec: Codec,
    pub quota: Arc<Quota>,
    sync: bool,
    /// Writes keep this many bytes free on each of `space_paths`, so that
    /// deletes and GC (which must append to SQLite's WAL) can still commit
    /// on a full disk.
    reserve: u64,
    space_paths: Vec<PathBuf>,
    /// Bytes writes have been allowed but not yet written: counted against
    /// free space, so concurrent writers cannot all pass one check and eat
    /// into the reserve together.
    writing: Arc<AtomicU64>,
    /// Held for the life of the store: one server per directory.
    _lock: File,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore").field("root", &self.root).finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Opens (creating if needed) the store at `root`, takes its lock, and
    /// clears temp files left by a crash.
    pub fn open(root: &Path, codec: Codec, max_size: u64, sync: bool) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(StoreError::io(root))?;
        let lock_path = root.join("LOCK");
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(StoreError::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: root.to_path_buf(), lock: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path)(e)),
        }
        let store = Self {
            root: root.to_path_buf(),
            blobs: root.join("blobs"),
            tmp: root.join("tmp"),
            quarantine: root.join("quarantine"),
            codec,
            quota: Arc::new(Quota::new(max_size)),
            sync,
            reserve: 0,
            space_paths: vec![root.to_path_buf()],
            writing: Arc::default(),
            _lock: lock,
        };
        for dir in [&store.blobs, &store.tmp, &store.quarantine] {
            fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        // The directories themselves must survive a power cut.
        File::open(root).and_then(|f| f.sync_all()).map_err(StoreError::io(root))?;
        // We hold the lock, so nothing else is writing: every temp file is debris.
        store.remove_temp_files(None)?;
        Ok(store)
    }

    /// Keeps `reserve` bytes free on the store's disk and on the disks of
    /// `others` (the metadata directory) when writing.
    pub fn with_reserve(mut self, reserve: u64, others: &[PathBuf]) -> Self {
        self.reserve = reserve;
        self.space_paths.extend(others.iter().cloned());
        self
    }

    /// Fails with [`StoreError::NoSpace`] when writing `need` more bytes,
    /// on top of what other writes were allowed and have not written yet,
    /// would eat into the reserve of any disk the store writes to. Hold
    /// the claim until the bytes are written.
    pub fn check_space(&self, need: u64) -> Result<SpaceClaim, StoreError> {
        let others = self.writing.fetch_add(need, Ordering::SeqCst);
        let claim = SpaceClaim { writing: self.writing.clone(), bytes: need };
        for path in &self.space_paths {
            let free = free_space(path).map_err(StoreError::io(path))?;
            if free < self.reserve.saturating_add(need).saturating_add(others) {
                return Err(StoreError::NoSpace { path: path.clone() });
            }
        }
        Ok(claim)
    }

    /// The smallest free space on the store's disks and the reserve
    /// writes keep.
    pub fn space(&self) -> Result<Space, StoreError> {
        let mut free = u64::MAX;
        for path in &self.space_paths {
            free = free.min(free_space(path).map_err(StoreError::io(path))?);
        }
        Ok(Space { free, reserve: self.reserve })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_string();
        self.blobs.join(&hex[..2]).join(&hex[2..4]).join(hex)
    }

    /// Starts writing a new blob in a fresh temp file.
    pub fn stage(&self) -> Result<BlobWriter, StoreError> {
        let name = format!("{:016x}.tmp", rand::random::<u64>());
        BlobWriter::create(self.tmp.join(name), &self.codec, self.quota.clone(), self.sync)
    }

    /// Moves staged file-backed blobs into place and makes the renames
    /// durable (their data was synced by the writer). Call only for digests
    /// that have no live blob yet: a published file replaces what is there.
    /// Inline blobs are skipped: they travel with the metadata.
    pub fn publish(&self, staged: &[&Staged]) -> Result<(), StoreError> {
        let mut dirs = Vec::new();
        for s in staged.iter().filter(|s| s.inline.is_none()) {
            let dest = self.path(&s.digest);
            fail::fail_point!("store.publish", |a| Err(StoreError::io(&dest)(crate::failpoints::io_error(a))));
            let dir = dest.parent().expect("blob path has a parent").to_path_buf();
            if let Err(e) = fs::rename(&s.tmp, &dest) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(StoreError::io(&dest)(e));
                }
                fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
                fs::rename(&s.tmp, &dest).map_err(StoreError::io(&dest))?;
                // New fan-out directories must be durable entries too.
                let parent = dir.parent().expect("fan-out dir").to_path_buf();
                dirs.push(parent.parent().expect("blobs dir").to_path_buf());
                dirs.push(parent);
            }
            dirs.push(dir);
        }
        if self.sync {
            dirs.sort();
            dirs.dedup();
            for dir in dirs {
                fail::fail_point!("store.dirsync", |a| Err(StoreError::io(&dir)(crate::failpoints::io_error(a))));
                File::open(&dir).and_then(|f| f.sync_all()).map_err(StoreError::io(&dir))?;
            }
        }
        Ok(())
    }

    /// A fresh name in the temp directory (debris there is cleared at open
    /// and by GC).
    pub fn temp_path(&self, suffix: &str) -> PathBuf {
        self.tmp.join(format!("{:016x}.{suffix}.tmp", rand::random::<u64>()))
    }

    /// Moves a complete, synced blob file (fetched from elsewhere and
    /// verified) into place. The rename is durable once [`Self::sync_tree`]
    /// has run.
    pub fn place(&self, tmp: &Path, digest: &Digest) -> Result<(), StoreError> {
        let dest = self.path(digest);
        let dir = dest.parent().expect("blob path has a parent");
        fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        fs::rename(tmp, &dest).map_err(StoreError::io(&dest))
    }

    /// Syncs every directory of the blob tree: after many [`Self::place`]s,
    /// one sync per directory instead of one per blob.
    pub fn sync_tree(&self) -> Result<(), StoreError> {
        let sync = |d: &Path| File::open(d).and_then(|f| f.sync_all()).map_err(StoreError::io(d));
        for a in read_dir(&self.blobs)? {
            for b in read_dir(&a)? {
                sync(&b)?;
            }
            sync(&a)?;
        }
        sync(&self.blobs)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The key blobs are read with.
    pub fn key(&self) -> Option<&super::Key> {
        self.codec.key.as_ref()
    }

    /// The zstd level new blobs are compressed with, if any.
    pub fn zstd_level(&self) -> Option<i32> {
        self.codec.zstd_level
    }

    /// Opens a file-backed blob for reading a range of it.
    pub fn read(&self, digest: &Digest, range: Range) -> Result<BlobReader, StoreError> {
        BlobReader::open(self.path(digest), *digest, self.codec.key.as_ref(), range)
    }

    /// Opens an inline blob's stored bytes for reading a range of it.
    pub fn read_inline(&self, stored: Vec<u8>, digest: &Digest, range: Range) -> Result<BlobReader, StoreError> {
        BlobReader::inline(stored, *digest, self.codec.key.as_ref(), range)
    }

    /// Deletes a blob file; returns the bytes it took.
    pub fn remove(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.path(digest);
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        fs::remove_file(&path).map_err(StoreError::io(&path))?;
        Ok(len)
    }

    /// Moves a blob that failed verification out of the way, keeping it for
    /// inspection.
    pub fn quarantine(&self, digest: &Digest) -> Result<(), StoreError> {
        let from = self.path(digest);
        let to = self
            .quarantine
            .join(format!("{digest}.{}", SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()));
        match fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&from)(e)),
        }
    }

    /// Every blob file on disk with its size and modification time.
    pub fn scan(&self) -> Result<Vec<(Digest, u64, SystemTime)>, StoreError> {
        let mut out = Vec::new();
        for a in read_dir(&self.blobs)? {
            for b in read_dir(&a)? {
                for f in read_dir(&b)? {
                    let Some(digest) = f.file_name().and_then(|n| n.to_str()?.parse().ok()) else {
                        continue;
                    };
                    if let Ok(m) = fs::metadata(&f) {
                        out.push((digest, m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes temp files, or only those older than `older_than`. Returns how
    /// many went.
    pub fn remove_temp_files(&self, older_than: Option<SystemTime>) -> Result<usize, StoreError> {
        let mut n = 0;
        for f in read_dir(&self.tmp)? {
            let old = match older_than {
                None => true,
                Some(limit) => fs::metadata(&f).and_then(|m| m.modified()).is_ok_and(|t| t < limit),
            };
            if old && fs::remove_file(&f).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Bytes a write may put on disk; given back when dropped.
#[must_use = "the claim counts only while it is held"]
pub struct SpaceClaim {
    writing: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for SpaceClaim {
    fn drop(&mut self) {
        self.writing.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Free space against the reserve puts keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub free: u64,
    pub reserve: u64,
}

impl Space {
    /// Low: puts are refused, or soon will be (less than twice the
    /// reserve is left).
    pub fn is_low(&self) -> bool {
        self.free < self.reserve.saturating_mul(2).max(1)
    }
}

/// Bytes an unprivileged writer can still use on the file system of `path`.
// The statvfs field types differ between platforms; the casts are for those
// where they are not already u64.
#[allow(clippy::unnecessary_cast)]
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    statvfs(path).map(|st| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Size of the file system holding `path`.
#[allow(clippy::unnecessary_cast)]
pub fn disk_size(path: &Path) -> std::io::Result<u64> {
    statvfs(path).map(|st| st.f_blocks as u64 * st.f_frsize as u64)
}

fn statvfs(path: &Path) -> std::io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a plain struct
    // statvfs fills in; neither outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(dir)(e)),
    }
}
