//! Where pushed images live: their blobs in a store of their own (`mirror/pushed/blobs/`), never
//! evicted, and their tags in `mirror/pushed/tags.json`.
//!
//! A pushed image has no upstream to fetch it from again, so the least-recently-used eviction of
//! the pull-through cache must never take its blobs: they are kept apart, and the bytes pushed
//! are bounded by the same `--mirror-max-gib` as the cache (each bounded on its own). Their
//! manifests go to the mirror's manifest store with the others (content-addressed, never
//! evicted). The tag file is small and rewritten whole by rename, so a crash leaves the old or
//! the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::digest::Digest;
use super::import_image::ImageTag;
use super::store::{BlobStore, StoreError};

/// Most tags of pushed images.
pub const MAX_PUSHED_TAGS: usize = 10_000;
/// Largest tag file read at start (`MAX_PUSHED_TAGS` tags of a long name each).
const MAX_TAG_FILE: u64 = 8 << 20;

/// Pushed images' blobs and tags.
#[derive(Debug)]
pub struct Pushed {
    /// Blobs, never evicted.
    pub blobs: BlobStore,
    tags_file: PathBuf,
    tags: Mutex<BTreeMap<String, Digest>>,
    /// One import at a time: bounds the disk an import may stage, and orders tag writes.
    pub importing: tokio::sync::Mutex<()>,
    limit: u64,
}

impl Pushed {
    /// Open (or create) the pushed images under `root`, holding at most `limit` bytes of blobs.
    pub fn open(root: &Path, limit: u64) -> Result<Self, StoreError> {
        let dir = root.join("pushed");
        let tags_file = dir.join("tags.json");
        let blobs = BlobStore::open(&dir, u64::MAX)?;
        let tags = read_tags(&tags_file)?;
        Ok(Self {
            blobs,
            tags_file,
            tags: Mutex::new(tags),
            importing: tokio::sync::Mutex::new(()),
            limit,
        })
    }

    /// Bytes an import may still stage and keep.
    pub fn room(&self) -> u64 {
        self.limit.saturating_sub(self.blobs.usage().0)
    }

    /// The manifest digest `repo:tag` was pushed as.
    pub fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        let tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        tags.get(&format!("{repo}:{tag}")).cloned()
    }

    /// Whether any image was pushed.
    pub fn any(&self) -> bool {
        !self
            .tags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Every pushed `repo:tag` and its manifest's digest, in name order.
    pub fn tags(&self) -> Vec<(String, Digest)> {
        let tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Point `tags` at `digest`, on disk then in memory.
    pub async fn set_tags(&self, tags: &[ImageTag], digest: &Digest) -> Result<(), StoreError> {
        let mut next = self.tags.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for tag in tags {
            next.insert(tag.to_string(), digest.clone());
        }
        if next.len() > MAX_PUSHED_TAGS {
            return Err(StoreError::Io {
                path: self.tags_file.clone(),
                source: std::io::Error::other(format!("more than {MAX_PUSHED_TAGS} pushed tags")),
            });
        }
        self.write_tags(next).await
    }

    /// Drop `tag`, on disk then in memory; the digest it pointed at, if it was pushed. The caller
    /// holds [`Self::importing`], so no import's tags land in between.
    pub async fn remove_tag(&self, tag: &ImageTag) -> Result<Option<Digest>, StoreError> {
        let mut next = self.tags.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(digest) = next.remove(&tag.to_string()) else {
            return Ok(None);
        };
        self.write_tags(next).await?;
        Ok(Some(digest))
    }

    async fn write_tags(&self, next: BTreeMap<String, Digest>) -> Result<(), StoreError> {
        let text: BTreeMap<&String, &str> = next.iter().map(|(k, v)| (k, v.as_str())).collect();
        let bytes = serde_json::to_vec_pretty(&text).unwrap_or_default();
        write_renamed(&self.tags_file, &bytes).await?;
        *self.tags.lock().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }
}

fn read_tags(path: &Path) -> Result<BTreeMap<String, Digest>, StoreError> {
    let invalid = |detail: String| StoreError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
    };
    let bytes = match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_TAG_FILE => return Err(invalid("too large".into())),
        Ok(_) => std::fs::read(path).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(StoreError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let text: BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    text.into_iter()
        .map(|(tag, digest)| {
            Digest::parse(&digest)
                .map(|d| (tag, d))
                .map_err(|e| invalid(e.to_string()))
        })
        .collect()
}

async fn write_renamed(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let temp = path.with_extension("tmp");
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    tokio::fs::write(&temp, bytes).await.map_err(io)?;
    tokio::fs::rename(&temp, path).await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::import_image::parse_tag;

    #[tokio::test]
    async fn tags_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let pushed = Pushed::open(dir.path(), 1 << 30).unwrap();
        assert!(!pushed.any());
        let digest = Digest::of(b"manifest");
        let tags = [parse_tag("outpost/app:1").unwrap()];
        pushed.set_tags(&tags, &digest).await.unwrap();
        drop(pushed);
        let pushed = Pushed::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(pushed.tag("outpost/app", "1"), Some(digest));
        assert_eq!(pushed.tag("outpost/app", "2"), None);
        assert_eq!(pushed.room(), 1 << 30);
    }

    #[test]
    fn a_damaged_tag_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pushed")).unwrap();
        std::fs::write(dir.path().join("pushed/tags.json"), b"{\"a:1\":\"md5:x\"}").unwrap();
        assert!(Pushed::open(dir.path(), 1).is_err());
    }
}
