//! A tier on an object store: blob files under `<prefix>/blobs/ab/<digest>`
//! (the layout backups use), read by ranges.
//!
//! Reads go through [`RangedFile`], a `Read + Seek` view of one object for
//! the blob reader. A read where the last one ended is a stream: each fetch
//! doubles, up to [`MAX_FETCH`], and the next is fetched ahead; any other
//! read fetches a little ([`MIN_FETCH`]), so a ranged read of a large blob
//! fetches about what it returns plus the footer.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use strata_objects::{Fill, Opened, Tier};
use strata_store::{Digest, StoreError};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::{Target, manifest, transfer};

/// Bytes a read at the start fetches (the header).
const MIN_FETCH: u64 = 64 << 10;
/// Bytes a read elsewhere that is not a stream fetches: a frame and its
/// header, so a ranged read of a frame is one request.
const FRAME_FETCH: u64 = (1 << 20) + (64 << 10);
/// The end of the object fetched on open: the footer and frame table.
const TAIL: u64 = 64 << 10;
/// The largest fetch of a stream.
const MAX_FETCH: u64 = 8 << 20;
/// Fetches of a stream in flight ahead of the reader.
const AHEAD: usize = 2;

pub struct ObjectTier {
    name: String,
    target: Target,
    handle: Handle,
}

impl ObjectTier {
    /// A tier named `name` on `target`; blocking reads run on `handle`.
    pub fn new(name: impl Into<String>, target: Target, handle: Handle) -> Self {
        Self { name: name.into(), target, handle }
    }

    /// Marks the tier as this node's (`NODE` at the target), or checks
    /// that it is. Two nodes (or two tiers) on one prefix would collect
    /// each other's copies; and a store whose marker is gone (a directory
    /// moved away, another bucket) is down, not a store that lost blobs.
    pub async fn claim(&self, node: &str) -> Result<(), crate::RemoteError> {
        let path = self.target.path("NODE");
        if transfer::put_new(&self.target, &path, Bytes::from(node.to_string())).await? {
            return Ok(());
        }
        let got = self.target.store.get(&path).await.map_err(crate::RemoteError::at(&self.target))?;
        let owner = got.bytes().await.map_err(crate::RemoteError::at(&self.target))?;
        let owner = String::from_utf8_lossy(&owner).trim().to_string();
        if owner != node {
            return Err(crate::RemoteError::Invalid(format!(
                "tier {:?} at {} belongs to node {owner}, not this node ({node}): give each node and tier a prefix of its own",
                self.name, self.target
            )));
        }
        Ok(())
    }

    /// Fails unless the tier's `NODE` marker is there.
    async fn reachable(t: &Target, name: &str) -> Result<(), StoreError> {
        match t.store.head(&t.path("NODE")).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::TierUnavailable {
                tier: name.into(),
                why: format!("{t} has no NODE marker: the store is gone or is not the one this node wrote to"),
            }),
            Err(e) => Err(StoreError::TierUnavailable { tier: name.into(), why: format!("{t}: {e}") }),
        }
    }

    fn down(&self) -> impl Fn(object_store::Error) -> StoreError + '_ {
        move |e| StoreError::TierUnavailable { tier: self.name.clone(), why: format!("{}: {e}", self.target) }
    }
}

impl Tier for ObjectTier {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        self.target.to_string()
    }

    fn open(&self, digest: &Digest, fill: Option<PathBuf>) -> Result<Opened, StoreError> {
        let path = manifest::blob_path(&self.target, digest);
        // One request gives the size and the footer (the frame table of
        // blobs up to a few GB): a suffix of the object.
        let tail = self.handle.block_on(async {
            let opts = GetOptions::default().with_range(Some(GetRange::Suffix(TAIL)));
            let got = self.target.store.get_opts(&path, opts).await?;
            let (size, start) = (got.meta.size, got.range.start);
            Ok::<_, object_store::Error>((size, start, got.bytes().await?))
        });
        let (len, tail_at, tail) = match tail {
            Ok(t) => t,
            Err(object_store::Error::NotFound { .. }) => {
                // A lost copy, or a store that is not there at all?
                self.handle.block_on(Self::reachable(&self.target, &self.name))?;
                return Err(StoreError::Missing { digest: *digest });
            }
            Err(e) => return Err(self.down()(e)),
        };
        let fill = match fill {
            Some(p) => {
                let file = File::create(&p).map_err(StoreError::io(&p))?;
                file.set_len(len).map_err(StoreError::io(&p))?;
                let mut st = FillState { file, path: p.clone(), have: BTreeMap::new() };
                st.write(tail_at, &tail).map_err(StoreError::io(&p))?;
                Some(Arc::new(Mutex::new(st)))
            }
            None => None,
        };
        let source = RangedFile {
            store: self.target.store.clone(),
            path: path.clone(),
            tier: self.name.clone(),
            url: self.target.to_string(),
            handle: self.handle.clone(),
            len,
            pos: 0,
            segments: VecDeque::from([(tail_at, tail.clone())]),
            next_fetch: MIN_FETCH,
            streaming_from: None,
            ahead: VecDeque::new(),
            fill: fill.clone(),
        };
        let fill = fill.map(|state| {
            Box::new(FillDone { state, store: self.target.store.clone(), path, len, handle: self.handle.clone(), tier: self.name.clone() })
                as Box<dyn Fill>
        });
        Ok(Opened { source: Box::new(source), len, fill })
    }

    fn put(&self, digest: Digest, file: PathBuf) -> BoxFuture<'static, Result<(), StoreError>> {
        let (t, name) = (self.target.clone(), self.name.clone());
        Box::pin(async move {
            Self::reachable(&t, &name).await?;
            transfer::upload_file(&t, &file, &manifest::blob_path(&t, &digest), false).await.map(drop).map_err(|e| match e {
                crate::RemoteError::Io(why) if why.ends_with("is gone") => StoreError::Missing { digest },
                e => StoreError::TierUnavailable { tier: name, why: e.to_string() },
            })
        })
    }

    fn remove(&self, digest: Digest) -> BoxFuture<'static, Result<(), StoreError>> {
        let (t, name) = (self.target.clone(), self.name.clone());
        Box::pin(async move {
            match t.store.delete(&manifest::blob_path(&t, &digest)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(StoreError::TierUnavailable { tier: name, why: format!("{t}: {e}") }),
            }
        })
    }

    fn exists(&self, digest: Digest) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (t, name) = (self.target.clone(), self.name.clone());
        Box::pin(async move {
            match t.store.head(&manifest::blob_path(&t, &digest)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(StoreError::TierUnavailable { tier: name, why: format!("{t}: {e}") }),
            }
        })
    }

    fn list(&self) -> BoxFuture<'static, Result<Vec<(Digest, SystemTime)>, StoreError>> {
        let (t, name) = (self.target.clone(), self.name.clone());
        Box::pin(async move {
            let prefix = t.path("blobs");
            let metas: Vec<_> = t
                .store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| StoreError::TierUnavailable { tier: name, why: format!("{t}: {e}") })?;
            Ok(metas
                .into_iter()
                .filter_map(|m| {
                    let d: Digest = m.location.filename()?.parse().ok()?;
                    (m.location == manifest::blob_path(&t, &d)).then_some((d, m.last_modified.into()))
                })
                .collect())
        })
    }
}

/// The local copy a whole read fills: the file and which ranges it has.
struct FillState {
    file: File,
    path: PathBuf,
    /// start -> end of the ranges written.
    have: BTreeMap<u64, u64>,
}

impl FillState {
    fn write(&mut self, at: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, at)?;
        self.have.insert(at, at + data.len() as u64);
        Ok(())
    }

    /// Ranges of `[0, len)` not written.
    fn gaps(&self, len: u64) -> Vec<std::ops::Range<u64>> {
        let mut out = Vec::new();
        let mut at = 0;
        for (&s, &e) in &self.have {
            if s > at {
                out.push(at..s);
            }
            at = at.max(e);
        }
        if at < len {
            out.push(at..len);
        }
        out
    }
}

struct FillDone {
    state: Arc<Mutex<FillState>>,
    store: Arc<dyn ObjectStore>,
    path: Path,
    len: u64,
    handle: Handle,
    tier: String,
}

impl Fill for FillDone {
    fn complete(self: Box<Self>) -> Result<(), StoreError> {
        let mut st = self.state.lock().expect("fill lock");
        for gap in st.gaps(self.len) {
            let data = self
                .handle
                .block_on(self.store.get_range(&self.path, gap.clone()))
                .map_err(|e| StoreError::TierUnavailable { tier: self.tier.clone(), why: e.to_string() })?;
            let p = st.path.clone();
            st.write(gap.start, &data).map_err(StoreError::io(&p))?;
        }
        let p = st.path.clone();
        st.file.sync_all().map_err(StoreError::io(&p))
    }
}

/// One object on a tier as a seekable file, fetched by ranges.
struct RangedFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    tier: String,
    url: String,
    handle: Handle,
    len: u64,
    pos: u64,
    /// The last two fetched ranges (the footer's stays while frames
    /// stream): (start, bytes).
    segments: VecDeque<(u64, Bytes)>,
    /// Size of the next fetch of a stream.
    next_fetch: u64,
    /// Where the current stream's last fetch ended.
    streaming_from: Option<u64>,
    /// Fetches started ahead: (start, len, task).
    ahead: VecDeque<(u64, u64, JoinHandle<object_store::Result<Bytes>>)>,
    fill: Option<Arc<Mutex<FillState>>>,
}

impl RangedFile {
    fn err(&self, e: object_store::Error) -> std::io::Error {
        std::io::Error::other(StoreError::TierUnavailable { tier: self.tier.clone(), why: format!("{}: {e}", self.url) })
    }

    fn spawn(&self, start: u64, len: u64) -> JoinHandle<object_store::Result<Bytes>> {
        let (store, path) = (self.store.clone(), self.path.clone());
        self.handle.spawn(async move { store.get_range(&path, start..start + len).await })
    }

    /// Makes sure a segment holds `self.pos`.
    fn fetch(&mut self) -> std::io::Result<()> {
        let pos = self.pos;
        if self.segments.iter().any(|(s, b)| *s <= pos && pos < s + b.len() as u64) {
            return Ok(());
        }
        let sequential = self.streaming_from == Some(pos);
        if !sequential {
            for (_, _, h) in self.ahead.drain(..) {
                h.abort();
            }
            self.next_fetch = if pos == 0 { MIN_FETCH } else { FRAME_FETCH };
        }
        let (start, data) = match self.ahead.pop_front() {
            Some((s, _, h)) if s == pos => {
                let r = self.handle.block_on(h).map_err(std::io::Error::other)?;
                (s, r.map_err(|e| self.err(e))?)
            }
            other => {
                if let Some((_, _, h)) = other {
                    h.abort();
                }
                for (_, _, h) in self.ahead.drain(..) {
                    h.abort();
                }
                let n = self.next_fetch.min(self.len - pos);
                let r = self.handle.block_on(self.store.get_range(&self.path, pos..pos + n));
                (pos, r.map_err(|e| self.err(e))?)
            }
        };
        let end = start + data.len() as u64;
        if let Some(f) = &self.fill {
            let mut f = f.lock().expect("fill lock");
            f.write(start, &data)?;
        }
        self.segments.push_back((start, data));
        if self.segments.len() > 2 {
            self.segments.pop_front();
        }
        self.streaming_from = Some(end);
        if sequential {
            self.next_fetch = (self.next_fetch * 2).min(MAX_FETCH);
        }
        // A stream at full size reads ahead.
        if self.next_fetch == MAX_FETCH {
            let mut at = self.ahead.back().map_or(end, |(s, l, _)| s + l);
            while self.ahead.len() < AHEAD && at < self.len {
                let n = MAX_FETCH.min(self.len - at);
                self.ahead.push_back((at, n, self.spawn(at, n)));
                at += n;
            }
        }
        Ok(())
    }
}

impl Read for RangedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        self.fetch()?;
        let pos = self.pos;
        let (s, b) = self.segments.iter().find(|(s, b)| *s <= pos && pos < s + b.len() as u64).expect("fetched");
        let off = (pos - s) as usize;
        let n = buf.len().min(b.len() - off);
        buf[..n].copy_from_slice(&b[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangedFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let at = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = at.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl Drop for RangedFile {
    fn drop(&mut self) {
        for (_, _, h) in self.ahead.drain(..) {
            h.abort();
        }
    }
}
