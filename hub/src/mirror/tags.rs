//! What the mirror's tags resolved to, believed for a short while and remembered across restarts.
//!
//! A tag is only believed for [`TagCache`]'s TTL: a tag moved upstream is noticed within it, and
//! until then a pull costs the upstream nothing. When the upstream cannot be reached, the last
//! digest a tag had is served anyway (a stale answer beats none for a device behind a bad link);
//! [`super::Mirror`] decides that. The last digests are also what the grant look-up reads to learn
//! which blobs a device's ordered images reference ([`super::grant_lookup`]).
//!
//! Both uses matter most just after a restart, when the upstream may well be the thing that is
//! down: so each change of a tag's digest is written to `mirror/tags.json` (rewritten whole by
//! rename, saves one at a time, so a crash leaves the old file or the new one), and a starting hub
//! reads it back as last-known digests, never fresh ones. The file is a cache: one that cannot be
//! read is logged and ignored, and tags of an upstream no longer configured are dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::warn;

use super::digest::Digest;
use super::manifests::write_renamed;
use super::store::StoreError;

/// Tags remembered at once; more and the expired ones go, then all.
const MAX_TAGS: usize = 10_000;
/// Largest tag file read at start: `MAX_TAGS` entries of long names.
const MAX_TAG_FILE: u64 = 8 << 20;

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

/// A tag's digest and when it was resolved; `None` for one read back from disk (never fresh).
type Resolved = (Digest, Option<Instant>);

/// Tags' digests as last resolved, with when.
#[derive(Debug)]
pub struct TagCache {
    ttl: Duration,
    tags: Mutex<HashMap<TagKey, Resolved>>,
    file: TagFile,
}

/// The tag file and the upstreams' hosts its entries are keyed by (indices change with the
/// configuration, hosts do not).
#[derive(Debug)]
struct TagFile {
    path: PathBuf,
    hosts: Vec<String>,
    /// One save at a time, so an older snapshot never lands after a newer one.
    saving: tokio::sync::Mutex<()>,
}

/// One line of the tag file.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    upstream: String,
    repo: String,
    tag: String,
    digest: String,
}

impl TagCache {
    /// Believe a resolved tag for `ttl`, with the last digests kept in `<root>/tags.json` for the
    /// upstreams `hosts` (in configuration order), and those saved before read back now.
    pub fn open(root: &Path, ttl: Duration, hosts: Vec<String>) -> Self {
        let path = root.join("tags.json");
        let tags = match read_entries(&path) {
            Ok(entries) => known_tags(entries, &hosts),
            Err(e) => {
                warn!(path = %path.display(), "the mirror's tag file is ignored: {e}");
                HashMap::new()
            }
        };
        Self {
            ttl,
            tags: Mutex::new(tags),
            file: TagFile {
                path,
                hosts,
                saving: tokio::sync::Mutex::new(()),
            },
        }
    }

    /// The tag's digest if resolved less than the TTL before `now`.
    pub fn fresh(&self, key: &TagKey, now: Instant) -> Option<Digest> {
        let tags = self.lock();
        let (digest, at) = tags.get(key)?;
        let fresh = at.is_some_and(|at| now.saturating_duration_since(at) < self.ttl);
        fresh.then(|| digest.clone())
    }

    /// The tag's last digest however old.
    pub fn last(&self, key: &TagKey) -> Option<Digest> {
        self.lock().get(key).map(|(digest, _)| digest.clone())
    }

    /// The last digest of each tag of `repo` on `upstream` (every tag held: a scan of at most
    /// `MAX_TAGS`, for a blob no session was served the manifest of).
    pub fn digests_of(&self, upstream: usize, repo: &str) -> Vec<Digest> {
        let tags = self.lock();
        let mut digests: Vec<Digest> = Vec::new();
        for (key, (digest, _)) in tags.iter() {
            if key.upstream == upstream && key.repo == repo && !digests.contains(digest) {
                digests.push(digest.clone());
            }
        }
        digests
    }

    /// Every tag held with its last digest.
    pub fn entries(&self) -> Vec<(TagKey, Digest)> {
        let tags = self.lock();
        tags.iter()
            .map(|(key, (digest, _))| (key.clone(), digest.clone()))
            .collect()
    }

    /// Forget a tag (the next pull asks its upstream); its last digest, if it was held.
    pub fn forget(&self, key: &TagKey) -> Option<Digest> {
        self.lock().remove(key).map(|(digest, _)| digest)
    }

    /// Remember what a tag resolved to at `now`; whether that is news (a new tag, or a digest
    /// other than the last), which is what [`Self::save`] needs writing.
    pub fn record(&self, key: TagKey, digest: Digest, now: Instant) -> bool {
        let mut tags = self.lock();
        if tags.len() >= MAX_TAGS && !tags.contains_key(&key) {
            let ttl = self.ttl;
            tags.retain(|_, (_, at)| at.is_some_and(|at| now.saturating_duration_since(at) < ttl));
            if tags.len() >= MAX_TAGS {
                tags.clear();
            }
        }
        let changed = tags.get(&key).is_none_or(|(last, _)| *last != digest);
        tags.insert(key, (digest, Some(now)));
        changed
    }

    /// Write every tag's last digest to the tag file.
    pub async fn save(&self) -> Result<(), StoreError> {
        let file = &self.file;
        let _one_at_a_time = file.saving.lock().await;
        let entries: Vec<Entry> = self
            .lock()
            .iter()
            .filter_map(|(key, (digest, _))| {
                Some(Entry {
                    upstream: file.hosts.get(key.upstream)?.clone(),
                    repo: key.repo.clone(),
                    tag: key.tag.clone(),
                    digest: digest.to_string(),
                })
            })
            .collect();
        let bytes = serde_json::to_vec(&entries).unwrap_or_default();
        write_renamed(&file.path, &bytes).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TagKey, Resolved>> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The entries of the tag file; none if there is none.
fn read_entries(path: &Path) -> Result<Vec<Entry>, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_TAG_FILE => {
            return Err(format!("{} bytes, over {MAX_TAG_FILE}", meta.len()))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The entries of configured upstreams with valid digests, at most [`MAX_TAGS`], as last-known.
fn known_tags(entries: Vec<Entry>, hosts: &[String]) -> HashMap<TagKey, Resolved> {
    let mut tags = HashMap::new();
    for entry in entries {
        let Some(upstream) = hosts.iter().position(|h| *h == entry.upstream) else {
            continue;
        };
        let Ok(digest) = Digest::parse(&entry.digest) else {
            continue;
        };
        if tags.len() == MAX_TAGS {
            break;
        }
        let key = TagKey {
            upstream,
            repo: entry.repo,
            tag: entry.tag,
        };
        tags.insert(key, (digest, None));
    }
    tags
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

    fn cache(dir: &tempfile::TempDir) -> TagCache {
        TagCache::open(dir.path(), Duration::from_secs(60), vec!["up:5000".into()])
    }

    #[test]
    fn a_tag_is_believed_for_its_ttl_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(&dir);
        let now = Instant::now();
        let digest = Digest::of(b"m");
        assert!(cache.record(key("latest"), digest.clone(), now));
        assert!(!cache.record(key("latest"), digest.clone(), now));
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
        assert!(cache.record(key("latest"), Digest::of(b"moved"), now));
    }

    #[test]
    fn the_tag_map_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(&dir);
        let now = Instant::now();
        for n in 0..=MAX_TAGS {
            cache.record(key(&n.to_string()), Digest::of(b"m"), now);
        }
        let len = cache.lock().len();
        assert!(len <= MAX_TAGS, "{len}");
    }

    #[tokio::test]
    async fn last_digests_survive_a_restart_but_are_never_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["registry.local:5000".to_owned(), "other:443".to_owned()];
        let cache = TagCache::open(dir.path(), Duration::from_secs(60), hosts.clone());
        let (now, digest) = (Instant::now(), Digest::of(b"m"));
        let elsewhere = TagKey {
            upstream: 1,
            ..key("1.36")
        };
        cache.record(key("latest"), digest.clone(), now);
        cache.record(elsewhere.clone(), digest.clone(), now);
        cache.save().await.unwrap();
        drop(cache);

        let reopened = TagCache::open(dir.path(), Duration::from_secs(60), hosts);
        assert_eq!(reopened.last(&key("latest")), Some(digest.clone()));
        assert_eq!(reopened.fresh(&key("latest"), Instant::now()), None);
        assert_eq!(
            reopened.digests_of(0, "library/busybox"),
            std::slice::from_ref(&digest)
        );
        assert_eq!(reopened.last(&elsewhere), Some(digest.clone()));

        // The second upstream is no longer configured, and the first moved to index 1.
        let moved = vec!["new:443".to_owned(), "registry.local:5000".to_owned()];
        let reopened = TagCache::open(dir.path(), Duration::from_secs(60), moved);
        let first = TagKey {
            upstream: 1,
            ..key("latest")
        };
        assert_eq!(reopened.last(&first), Some(digest));
        assert_eq!(reopened.last(&key("latest")), None);
        assert_eq!(reopened.lock().len(), 1);
    }

    #[test]
    fn a_damaged_or_hostile_tag_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["registry.local:5000".to_owned()];
        let path = dir.path().join("tags.json");
        std::fs::write(&path, b"{not json").unwrap();
        let cache = TagCache::open(dir.path(), Duration::from_secs(60), hosts.clone());
        assert!(cache.lock().is_empty());

        let bad_digest =
            r#"[{"upstream":"registry.local:5000","repo":"a","tag":"1","digest":"md5:x"}]"#;
        std::fs::write(&path, bad_digest).unwrap();
        let cache = TagCache::open(dir.path(), Duration::from_secs(60), hosts.clone());
        assert!(cache.lock().is_empty());

        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_TAG_FILE + 1).unwrap();
        let cache = TagCache::open(dir.path(), Duration::from_secs(60), hosts);
        assert!(cache.lock().is_empty());
    }
}
