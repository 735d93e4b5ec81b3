//! Access keys: an access key id, its secret (SigV4 needs it on the
//! server) and what it may do in which bucket. They live in one JSON file
//! (`[s3] keys_file`, mode 0600) that `strata s3 key create` writes and the
//! gateway reads again when it changes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Key {
    pub access_key: String,
    pub secret_key: String,
    /// A bucket name, or `*` for every bucket.
    pub bucket: String,
    pub read: bool,
    pub write: bool,
}

impl Key {
    /// May this key do `write` (or read) in `bucket`?
    pub fn allows(&self, bucket: &str, write: bool) -> bool {
        (self.bucket == "*" || self.bucket == bucket) && if write { self.write } else { self.read }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeyFile {
    pub keys: Vec<Key>,
}

impl KeyFile {
    pub fn read(path: &Path) -> Result<KeyFile, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: not a key file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the file whole (a temporary file renamed over it), readable
    /// by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        use std::io::Write as _;
        let tmp = path.with_extension("json.new");
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let mut f = o.open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The keys as the gateway sees them, read again when the file changes.
/// A file that cannot be read keeps the last keys read, with a warning.
pub struct Keys {
    path: PathBuf,
    cached: Mutex<(Option<SystemTime>, Vec<Key>)>,
}

impl Keys {
    pub fn open(path: PathBuf) -> Result<Keys, String> {
        let keys = KeyFile::read(&path)?.keys;
        let modified = std::fs::metadata(&path).ok().and_then(|m| m.modified().ok());
        Ok(Keys { path, cached: Mutex::new((modified, keys)) })
    }

    pub fn find(&self, access_key: &str) -> Option<Key> {
        let modified = std::fs::metadata(&self.path).ok().and_then(|m| m.modified().ok());
        let mut cached = self.cached.lock().expect("keys");
        if cached.0 != modified {
            match KeyFile::read(&self.path) {
                Ok(f) => *cached = (modified, f.keys),
                Err(e) => {
                    tracing::warn!(error = %e, "the S3 key file cannot be read: the last keys read stay in force");
                    cached.0 = modified;
                }
            }
        }
        cached.1.iter().find(|k| k.access_key == access_key).cloned()
    }
}
