//! Blobs on the device's disk: `<data_dir>/registry/blobs/<hex>` once complete and verified,
//! `<hex>.partial` while they arrive.
//!
//! A partial file only ever grows by appending what the hub sent after its end, so its length is
//! the resume offset, and it survives outages and agent restarts (a process killed mid-write
//! leaves every byte it wrote; the next attempt asks from there). Verification reads the whole
//! file once, and only a file whose SHA-256 is its name is renamed into place: the engine is served
//! final paths only, so it never reads part of a blob or a blob that failed its digest. One
//! transfer per blob at a time ([`LocalBlobs::lock`]), so two engine requests never append to the
//! same file.
//!
//! The engine keeps its own copy of every layer it pulled, so the agent's is only needed while a
//! pull may still ask for it: [`LocalBlobs::sweep`] removes complete blobs a day after they were
//! verified ([`KEEP_COMPLETE`]) and partial ones a week after their last byte ([`KEEP_PARTIAL`]),
//! so a device's disk holds each image about twice for a day, not for ever.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use outpost_protocol::registry::digest::{Digest, Hasher};
use thiserror::Error;
use tokio::io::AsyncReadExt;

/// How long a verified blob stays for the engine's retries and other pulls of it.
pub const KEEP_COMPLETE: Duration = Duration::from_secs(24 * 3600);
/// How long a partial blob waits for its transfer to go on.
pub const KEEP_PARTIAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether a blob file named `name`, last written at `modified`, is past its keeping at `now`.
pub fn expired(name: &str, modified: SystemTime, now: SystemTime) -> bool {
    let keep = if name.ends_with(".partial") {
        KEEP_PARTIAL
    } else {
        KEEP_COMPLETE
    };
    now.duration_since(modified).is_ok_and(|age| age >= keep)
}

/// Why the local store could not keep or hand out a blob.
#[derive(Debug, Error)]
pub enum LocalStoreError {
    /// The bytes received are not the blob asked for: they were deleted, the engine never saw
    /// them.
    #[error("blob {expected} failed verification: its bytes are {actual}; discarded, the next pull fetches it again")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// What arrived.
        actual: Digest,
    },
    /// The disk refused (full, permissions).
    #[error("registry store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalStoreError + '_ {
    move |source| LocalStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The device's blob directory.
#[derive(Debug)]
pub struct LocalBlobs {
    dir: PathBuf,
    transfers: Mutex<HashMap<Digest, Weak<tokio::sync::Mutex<()>>>>,
}

impl LocalBlobs {
    /// The store under `<data_dir>/registry/blobs`, created if missing.
    pub fn open(data_dir: &Path) -> Result<Self, LocalStoreError> {
        let dir = data_dir.join("registry").join("blobs");
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(Self {
            dir,
            transfers: Mutex::default(),
        })
    }

    /// The verified blob's path.
    pub fn complete_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// The path bytes arrive at.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.partial", digest.hex()))
    }

    /// The verified blob, open, with its size; `None` when it is not complete.
    pub async fn open_complete(
        &self,
        digest: &Digest,
    ) -> Result<Option<(tokio::fs::File, u64)>, LocalStoreError> {
        let path = self.complete_path(digest);
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let size = file.metadata().await.map_err(io_error(&path))?.len();
                Ok(Some((file, size)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// Bytes of `digest` held in its partial file: where the next request starts.
    pub async fn held(&self, digest: &Digest) -> Result<u64, LocalStoreError> {
        let path = self.partial_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// The partial file, open for appending.
    pub async fn append(&self, digest: &Digest) -> Result<tokio::fs::File, LocalStoreError> {
        let path = self.partial_path(digest);
        tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(io_error(&path))
    }

    /// Forget what arrived of `digest` (bytes that cannot be its).
    pub async fn discard(&self, digest: &Digest) -> Result<(), LocalStoreError> {
        let path = self.partial_path(digest);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Check the whole partial file against `digest`: renamed into place when it matches,
    /// deleted when it does not.
    pub async fn promote(&self, digest: &Digest) -> Result<(), LocalStoreError> {
        let partial = self.partial_path(digest);
        let actual = hash_file(&partial).await?;
        if actual != *digest {
            self.discard(digest).await?;
            return Err(LocalStoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let complete = self.complete_path(digest);
        tokio::fs::rename(&partial, &complete)
            .await
            .map_err(io_error(&complete))?;
        // Its keeping starts now, not at the partial file's last byte (perhaps days ago).
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&complete)
            .await
            .map_err(io_error(&complete))?;
        let file = file.into_std().await;
        file.set_modified(SystemTime::now())
            .map_err(io_error(&complete))
    }

    /// Remove the blob files past their keeping at `now` (never one a transfer holds: a
    /// transfer's partial file is written within [`KEEP_PARTIAL`], and a complete file's time is
    /// set when it is verified); returns how many went.
    pub async fn sweep(&self, now: SystemTime) -> Result<usize, LocalStoreError> {
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(io_error(&self.dir))?;
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await.map_err(io_error(&self.dir))? {
            let modified = entry.metadata().await.and_then(|m| m.modified());
            let name = entry.file_name();
            if modified.is_ok_and(|m| expired(&name.to_string_lossy(), m, now)) {
                let path = entry.path();
                tokio::fs::remove_file(&path)
                    .await
                    .map_err(io_error(&path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Hold the one transfer of `digest`; a second request for it waits here, then finds it
    /// complete (or resumes what the first left).
    pub async fn lock(&self, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut transfers = self.transfers.lock().unwrap_or_else(|p| p.into_inner());
            transfers.retain(|_, held| held.strong_count() > 0);
            let found = transfers.get(digest).and_then(Weak::upgrade);
            found.unwrap_or_else(|| {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                transfers.insert(digest.clone(), Arc::downgrade(&lock));
                lock
            })
        };
        lock.lock_owned().await
    }
}

async fn hash_file(path: &Path) -> Result<Digest, LocalStoreError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io_error(path))?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).await.map_err(io_error(path))?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Append `bytes` to `digest`'s partial file, flushed (tokio's `File` finishes a write in the
    /// background: without the flush a read right after may not see it, as the product's fetch
    /// flushes before it looks).
    async fn write_partial(blobs: &LocalBlobs, digest: &Digest, bytes: &[u8]) {
        let mut file = blobs.append(digest).await.unwrap();
        file.write_all(bytes).await.unwrap();
        file.flush().await.unwrap();
    }

    #[tokio::test]
    async fn a_partial_blob_grows_then_is_verified_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let bytes = b"layer bytes, in two parts".to_vec();
        let digest = Digest::of(&bytes);
        assert_eq!(blobs.held(&digest).await.unwrap(), 0);
        write_partial(&blobs, &digest, &bytes[..10]).await;
        // A restarted agent finds what the last one wrote.
        let reopened = LocalBlobs::open(dir.path()).unwrap();
        assert_eq!(reopened.held(&digest).await.unwrap(), 10);
        assert!(reopened.open_complete(&digest).await.unwrap().is_none());
        write_partial(&reopened, &digest, &bytes[10..]).await;
        reopened.promote(&digest).await.unwrap();
        let (_, size) = reopened.open_complete(&digest).await.unwrap().unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(reopened.held(&digest).await.unwrap(), 0);
    }

    #[test]
    fn complete_blobs_go_after_a_day_partial_ones_after_a_week() {
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = |d: Duration| then + d;
        assert!(!expired(
            "abc",
            then,
            later(KEEP_COMPLETE - Duration::from_secs(1))
        ));
        assert!(expired("abc", then, later(KEEP_COMPLETE)));
        assert!(!expired("abc.partial", then, later(KEEP_COMPLETE)));
        assert!(expired("abc.partial", then, later(KEEP_PARTIAL)));
        // A clock that went backwards keeps everything.
        assert!(!expired("abc", then, then - Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn a_sweep_removes_only_what_is_past_its_keeping() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let bytes = b"a verified layer".to_vec();
        let digest = Digest::of(&bytes);
        write_partial(&blobs, &digest, &bytes).await;
        blobs.promote(&digest).await.unwrap();
        let other = Digest::of(b"still arriving");
        write_partial(&blobs, &other, b"still").await;
        let now = SystemTime::now();
        assert_eq!(blobs.sweep(now).await.unwrap(), 0);
        assert_eq!(blobs.sweep(now + KEEP_COMPLETE).await.unwrap(), 1);
        assert!(blobs.open_complete(&digest).await.unwrap().is_none());
        assert_eq!(blobs.held(&other).await.unwrap(), 5);
        assert_eq!(blobs.sweep(now + KEEP_PARTIAL).await.unwrap(), 1);
        assert_eq!(blobs.held(&other).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn bytes_that_are_not_the_blob_are_deleted_and_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let digest = Digest::of(b"the real layer");
        write_partial(&blobs, &digest, b"the fake layer").await;
        let refused = blobs.promote(&digest).await;
        assert!(
            matches!(refused, Err(LocalStoreError::DigestMismatch { .. })),
            "{refused:?}"
        );
        assert!(blobs.open_complete(&digest).await.unwrap().is_none());
        assert_eq!(blobs.held(&digest).await.unwrap(), 0);
    }
}
