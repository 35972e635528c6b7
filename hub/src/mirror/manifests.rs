//! Manifests kept by digest, with their media type, and the short-lived map from tags to digests.
//!
//! A manifest is small and names everything else, so it is kept whole: `mirror/manifests/sha256/
//! <hex>` and its media type beside it in `<hex>.type` (written first, both by rename, so a
//! manifest that can be read has its type). A tag is only believed for [`TagCache`]'s TTL: a tag
//! moved upstream is noticed within it, and until then a pull costs the upstream nothing. When the
//! upstream cannot be reached, the last digest a tag had is served anyway (a stale answer beats
//! none for a device behind a bad link); [`super::Mirror`] decides that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use tokio::time::Instant;

use super::digest::Digest;
use super::store::StoreError;

/// The largest manifest the mirror reads: real ones are a few KiB (an index of every platform
/// ~10 KiB); a bigger one is refused before it is read.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Longest media type passed through (real ones are under 64 characters).
const MAX_MEDIA_TYPE: usize = 255;
/// Tags remembered at once; more and the expired ones go, then all.
const MAX_TAGS: usize = 10_000;

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
async fn write_renamed(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
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

/// Which tag of which repository on which upstream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagKey {
    /// The upstream's index in the configuration.
    pub upstream: usize,
    /// The repository on it.
    pub repo: String,
    /// The tag.
    pub tag: String,
}

/// Tags' digests as last resolved, with when.
#[derive(Debug)]
pub struct TagCache {
    ttl: Duration,
    tags: Mutex<HashMap<TagKey, (Digest, Instant)>>,
}

impl TagCache {
    /// Believe a resolved tag for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tags: Mutex::new(HashMap::new()),
        }
    }

    /// The tag's digest if resolved less than the TTL before `now`.
    pub fn fresh(&self, key: &TagKey, now: Instant) -> Option<Digest> {
        let tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        let (digest, at) = tags.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| digest.clone())
    }

    /// The tag's last digest however old.
    pub fn last(&self, key: &TagKey) -> Option<Digest> {
        let tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        tags.get(key).map(|(digest, _)| digest.clone())
    }

    /// The last digest of each tag of `repo` on `upstream` (every tag held: a scan of at most
    /// `MAX_TAGS`, for a blob no session was served the manifest of).
    pub fn digests_of(&self, upstream: usize, repo: &str) -> Vec<Digest> {
        let tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        let mut digests: Vec<Digest> = Vec::new();
        for (key, (digest, _)) in tags.iter() {
            if key.upstream == upstream && key.repo == repo && !digests.contains(digest) {
                digests.push(digest.clone());
            }
        }
        digests
    }

    /// Remember what a tag resolved to at `now`.
    pub fn record(&self, key: TagKey, digest: Digest, now: Instant) {
        let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        if tags.len() >= MAX_TAGS && !tags.contains_key(&key) {
            tags.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
            if tags.len() >= MAX_TAGS {
                tags.clear();
            }
        }
        tags.insert(key, (digest, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: &str) -> TagKey {
        TagKey {
            upstream: 0,
            repo: "library/busybox".into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn a_tag_is_believed_for_its_ttl_only() {
        let cache = TagCache::new(Duration::from_secs(60));
        let now = Instant::now();
        let digest = Digest::of(b"m");
        cache.record(key("latest"), digest.clone(), now);
        assert_eq!(
            cache.fresh(&key("latest"), now + Duration::from_secs(59)),
            Some(digest.clone())
        );
        assert_eq!(
            cache.fresh(&key("latest"), now + Duration::from_secs(60)),
            None
        );
        assert_eq!(cache.last(&key("latest")), Some(digest.clone()));
        assert_eq!(cache.fresh(&key("other"), now), None);
        assert_eq!(cache.digests_of(0, "library/busybox"), [digest]);
        assert!(cache.digests_of(1, "library/busybox").is_empty());
        assert!(cache.digests_of(0, "library/other").is_empty());
    }

    #[test]
    fn the_tag_map_is_bounded() {
        let cache = TagCache::new(Duration::from_secs(60));
        let now = Instant::now();
        for n in 0..=MAX_TAGS {
            cache.record(key(&n.to_string()), Digest::of(b"m"), now);
        }
        let len = cache.tags.lock().unwrap().len();
        assert!(len <= MAX_TAGS, "{len}");
    }

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
