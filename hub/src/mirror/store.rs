//! The content-addressed blob store: `<data_dir>/mirror/blobs/sha256/<hex>`.
//!
//! A blob is streamed into a temporary file (`mirror/tmp/`) while its SHA-256 is computed, synced,
//! and renamed into place only when the digest is the one asked for; a mismatch deletes the
//! temporary file and is a [`StoreError::DigestMismatch`]. Readers only ever open final paths, so
//! they never see part of a blob, and two writers of one blob each write their own temporary file
//! (the second rename replaces identical bytes). A size limit evicts blobs least recently used
//! first ([`super::lru`]), never one a reader holds; renames and evictions happen under the index's
//! lock, so an eviction never deletes a blob that was just written again. Last use survives a
//! restart as the files' modification times.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt, BufWriter, ReadBuf};
use tracing::{debug, warn};

use super::digest::{Digest, Hasher};
use super::lru::Lru;

/// Why the store could not keep or hand out a blob.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The bytes written are not the blob they were said to be: nothing was kept.
    #[error(
        "digest mismatch: expected {expected}, the bytes received are {actual}; nothing was kept"
    )]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The blob is larger than the whole store may hold: refused as it arrived, nothing kept.
    #[error("blob larger than the mirror's size limit of {limit} bytes; nothing was kept (raise --mirror-max-gib)")]
    TooLarge {
        /// The store's limit.
        limit: u64,
    },
    /// The disk refused (full, permissions): the operator must make room or fix the directory.
    #[error("mirror store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The blobs on disk and their index.
#[derive(Clone, Debug)]
pub struct BlobStore {
    blobs: PathBuf,
    tmp: PathBuf,
    limit: u64,
    index: Arc<Mutex<Lru>>,
}

impl BlobStore {
    /// Open (or create) the store under `root`, keeping at most `limit` bytes: leftover temporary
    /// files of a crash are deleted and the blobs on disk indexed by age.
    pub fn open(root: &Path, limit: u64) -> Result<Self, StoreError> {
        let blobs = root.join("blobs").join("sha256");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
        let store = Self {
            index: Arc::new(Mutex::new(index_on_disk(&blobs)?)),
            blobs,
            tmp,
            limit,
        };
        store.evict(&mut store.lock());
        Ok(store)
    }

    /// Start writing a blob said to be `expected`.
    pub async fn begin(&self, expected: Digest) -> Result<BlobWriter, StoreError> {
        let path = self.tmp.join(format!("{:016x}", rand::random::<u64>()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(io_error(&path))?;
        Ok(BlobWriter {
            store: self.clone(),
            expected,
            temp: TempPath(Some(path)),
            file: BufWriter::new(file),
            hasher: Hasher::default(),
            written: 0,
        })
    }

    /// A reader of a blob, holding it against eviction; `None` if the store does not have it.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let Some(size) = self.lock().pin(digest) else {
            return Ok(None);
        };
        let hold = Hold {
            index: self.index.clone(),
            digest: digest.clone(),
        };
        let path = self.path(digest);
        match open_touched(path.clone()).await {
            Ok(file) => Ok(Some(BlobReader {
                file,
                size,
                path,
                _hold: hold,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                warn!(%digest, "a mirrored blob vanished from the disk; fetching it again");
                drop(hold);
                self.forget(digest);
                Ok(None)
            }
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// The store's directory for temporary files: a file made there can be [`Self::adopt`]ed.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Put `file` (under [`Self::tmp_dir`]), already verified to be blob `digest` of `size`
    /// bytes, in place by rename.
    pub fn adopt(&self, file: PathBuf, digest: &Digest, size: u64) -> Result<(), StoreError> {
        self.install(&mut TempPath(Some(file)), digest, size)
    }

    /// Delete every blob not in `kept`, read or not (a reader keeps its open file); returns the
    /// bytes and blobs freed. The files go on a blocking thread: a removed image may be
    /// thousands of them.
    pub async fn keep_only(&self, kept: &std::collections::HashSet<Digest>) -> (u64, usize) {
        let removed = self.lock().remove_where(|digest| !kept.contains(digest));
        let count = removed.len();
        let files: Vec<(PathBuf, u64)> = removed
            .into_iter()
            .map(|(digest, size)| (self.path(&digest), size))
            .collect();
        let freed = tokio::task::spawn_blocking(move || delete_all(files))
            .await
            .unwrap_or_else(|e| {
                warn!("deleting a removed image's blobs failed: {e}");
                0
            });
        (freed, count)
    }

    /// The most bytes it keeps.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes and blobs held.
    pub fn usage(&self) -> (u64, usize) {
        let index = self.lock();
        (index.total(), index.count())
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rename a verified temporary file into place, index it and evict what no longer fits; the
    /// new blob is pinned while eviction runs, so it is not its own victim.
    fn install(&self, temp: &mut TempPath, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let path = self.path(digest);
        let mut index = self.lock();
        let from = temp.0.take().unwrap_or_default();
        std::fs::rename(&from, &path).map_err(io_error(&path))?;
        index.insert(digest.clone(), size);
        index.pin(digest);
        self.evict(&mut index);
        index.unpin(digest);
        Ok(())
    }

    fn evict(&self, index: &mut Lru) {
        for digest in index.evict_to(self.limit) {
            let path = self.path(&digest);
            match std::fs::remove_file(&path) {
                Ok(()) => debug!(%digest, "evicted from the mirror (least recently used)"),
                Err(e) => warn!(path = %path.display(), "could not evict: {e}"),
            }
        }
    }

    fn forget(&self, digest: &Digest) {
        self.lock().remove(digest);
    }
}

/// Index the blobs found on disk, oldest modification first (the last use of a previous run).
fn index_on_disk(blobs: &Path) -> Result<Lru, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(blobs).map_err(io_error(blobs))? {
        let entry = entry.map_err(io_error(blobs))?;
        let Ok(digest) = Digest::parse(&format!("sha256:{}", entry.file_name().to_string_lossy()))
        else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        found.push((modified, digest, meta.len()));
    }
    found.sort();
    let mut lru = Lru::default();
    for (_, digest, size) in found {
        lru.insert(digest, size);
    }
    Ok(lru)
}

/// Delete `files`, returning the bytes freed; a file that cannot be deleted is logged and left.
fn delete_all(files: Vec<(PathBuf, u64)>) -> u64 {
    let mut freed = 0;
    for (path, size) in files {
        match std::fs::remove_file(&path) {
            Ok(()) => freed += size,
            Err(e) => warn!(path = %path.display(), "could not delete a removed image's blob: {e}"),
        }
    }
    freed
}

/// Open a blob and mark it used on disk too (best effort), so LRU order survives a restart.
async fn open_touched(path: PathBuf) -> std::io::Result<tokio::fs::File> {
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(path)?;
        let _ = file.set_modified(SystemTime::now());
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(tokio::fs::File::from_std(file))
}

/// A blob being written; dropped before [`BlobWriter::commit`], it leaves nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    expected: Digest,
    temp: TempPath,
    file: BufWriter<tokio::fs::File>,
    hasher: Hasher,
    written: u64,
}

impl BlobWriter {
    /// Append bytes; past the store's whole limit the blob is refused.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if self.written + bytes.len() as u64 > self.store.limit {
            return Err(StoreError::TooLarge {
                limit: self.store.limit,
            });
        }
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        let path = self.temp.0.clone().unwrap_or_default();
        self.file.write_all(bytes).await.map_err(io_error(&path))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verify the digest and put the blob in place; on a mismatch nothing is kept.
    pub async fn commit(mut self) -> Result<u64, StoreError> {
        let path = self.temp.0.clone().unwrap_or_default();
        self.file.flush().await.map_err(io_error(&path))?;
        self.file
            .get_mut()
            .sync_all()
            .await
            .map_err(io_error(&path))?;
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != self.expected {
            return Err(StoreError::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        self.store
            .install(&mut self.temp, &self.expected, self.written)?;
        Ok(self.written)
    }
}

/// A temporary file, deleted when dropped unless it was renamed into place.
#[derive(Debug)]
struct TempPath(Option<PathBuf>);

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A reader's hold on a blob: not evicted while it lives.
#[derive(Debug)]
struct Hold {
    index: Arc<Mutex<Lru>>,
    digest: Digest,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.unpin(&self.digest);
    }
}

/// An open blob of a known size, held against eviction until dropped.
#[derive(Debug)]
pub struct BlobReader {
    file: tokio::fs::File,
    /// Its size in bytes.
    pub size: u64,
    path: PathBuf,
    _hold: Hold,
}

impl BlobReader {
    /// Continue reading at byte `offset`.
    pub async fn seek(&mut self, offset: u64) -> Result<(), StoreError> {
        self.file
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .map(drop)
            .map_err(io_error(&self.path))
    }
}

impl AsyncRead for BlobReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_read(cx, buf)
    }
}
