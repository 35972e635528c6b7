//! Manifests kept by digest, with their media type (what tags resolve to is [`super::tags`]).
//!
//! A manifest is small and names everything else, so it is kept whole: `mirror/manifests/sha256/
//! <hex>` and its media type beside it in `<hex>.type` (written first, both by rename, so a
//! manifest that can be read has its type).

use std::path::{Path, PathBuf};

use axum::body::Bytes;

use super::digest::Digest;
use super::store::StoreError;

/// The largest manifest the mirror reads: real ones are a few KiB (an index of every platform
/// ~10 KiB); a bigger one is refused before it is read.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Longest media type passed through (real ones are under 64 characters).
const MAX_MEDIA_TYPE: usize = 255;

/// A manifest as the upstream sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The digest of its bytes.
    pub digest: Digest,
    /// The upstream's `Content-Type`.
    pub media_type: String,
    /// Its bytes, unchanged (a re-encoding would change the digest).
    pub bytes: Bytes,
}

/// Whether `text` may be passed through as a `Content-Type`: short, visible ASCII.
pub fn valid_media_type(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_MEDIA_TYPE
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// Manifests on disk by digest.
#[derive(Debug)]
pub struct ManifestStore {
    dir: PathBuf,
}

impl ManifestStore {
    /// Open (or create) the manifests under `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join("manifests").join("sha256");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The manifest with `digest`, if kept (and intact).
    pub async fn get(&self, digest: &Digest) -> Result<Option<Manifest>, StoreError> {
        let path = self.dir.join(digest.hex());
        let Some(media_type) = read_bounded(
            &self.dir.join(format!("{}.type", digest.hex())),
            MAX_MEDIA_TYPE as u64,
        )
        .await?
        else {
            return Ok(None);
        };
        let Some(bytes) = read_bounded(&path, MAX_MANIFEST_BYTES).await? else {
            return Ok(None);
        };
        let media_type = String::from_utf8_lossy(&media_type).into_owned();
        if Digest::of(&bytes) != *digest || !valid_media_type(&media_type) {
            return Ok(None);
        }
        Ok(Some(Manifest {
            digest: digest.clone(),
            media_type,
            bytes: Bytes::from(bytes),
        }))
    }

    /// Keep `manifest` (its digest already checked against its bytes).
    pub async fn put(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let hex = manifest.digest.hex();
        write_renamed(
            &self.dir.join(format!("{hex}.type")),
            manifest.media_type.as_bytes(),
        )
        .await?;
        write_renamed(&self.dir.join(hex), &manifest.bytes).await
    }
}

/// A file's bytes if it exists and is at most `limit` long.
async fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() <= limit => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    match tokio::fs::read(path).await {
        Ok(bytes) if bytes.len() as u64 <= limit => Ok(Some(bytes)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// Write `bytes` beside `path` and rename them over it, so a reader sees all or nothing.
pub(super) async fn write_renamed(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let temp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    tokio::fs::write(&temp, bytes).await.map_err(io)?;
    if let Err(e) = tokio::fs::rename(&temp, path).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manifests_round_trip_and_hostile_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ManifestStore::open(dir.path()).unwrap();
        let bytes = Bytes::from_static(br#"{"schemaVersion":2}"#);
        let manifest = Manifest {
            digest: Digest::of(&bytes),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes,
        };
        store.put(&manifest).await.unwrap();
        assert_eq!(
            store.get(&manifest.digest).await.unwrap(),
            Some(manifest.clone())
        );
        // A file whose bytes are not its name's digest is not served.
        tokio::fs::write(store.dir.join(manifest.digest.hex()), b"tampered")
            .await
            .unwrap();
        assert_eq!(store.get(&manifest.digest).await.unwrap(), None);
        assert_eq!(store.get(&Digest::of(b"absent")).await.unwrap(), None);
    }
}
