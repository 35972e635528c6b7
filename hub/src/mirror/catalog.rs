//! What the mirror holds, and taking an image out of it (`outpost-hub image list`, `image rm`).
//!
//! Pushed images are the reason `image rm` exists: their blobs are never evicted (there is no
//! upstream to fetch them from again), so without a way to remove one, an air-gapped hub's pushed
//! store fills once and refuses every later push. Removing a pushed tag deletes the blobs no other
//! pushed image references, at once. A mirrored tag is only forgotten (a pull asks its upstream
//! again); its blobs stay in the cache until least-recently-used eviction takes them, as they may
//! be layers of other images too.

use std::collections::HashSet;

use thiserror::Error;

use super::digest::Digest;
use super::error::MirrorError;
use super::grant::References;
use super::import_image::{parse_tag, ImageTag};
use super::name::split_host;
use super::tags::TagKey;
use super::Mirror;

/// Where an image in the catalog comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `image push`: kept until removed.
    Pushed,
    /// Resolved through this upstream (`host[:port]`): a cache.
    Upstream(String),
}

/// Why `image rm` took nothing out.
#[derive(Debug, Error)]
pub enum RemoveError {
    /// The name is not an image name.
    #[error("{0}")]
    BadName(String),
    /// Nothing of that name is pushed or mirrored.
    #[error("{0} is neither pushed to this hub nor a tag it has mirrored")]
    Unknown(String),
    /// The mirror failed while removing it.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// One tag the mirror serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogImage {
    /// The name a device pulls it by, after `127.0.0.1:5380/`: `repo:tag`, with the upstream's
    /// host first for any upstream but the default one.
    pub name: String,
    /// Where it comes from.
    pub source: Source,
    /// The manifest's digest, as last resolved.
    pub digest: Digest,
}

/// What an `image rm` took out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The image as listed.
    pub image: CatalogImage,
    /// Bytes and blobs deleted from the disk (a mirrored tag's blobs are left to eviction).
    pub freed: (u64, usize),
}

/// Bytes on the hub's disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Pushed images' blobs.
    pub pushed: u64,
    /// The pull-through cache's blobs.
    pub cached: u64,
    /// The limit each is held to.
    pub limit: u64,
}

impl Mirror {
    /// Bytes held by pushed images and by the cache.
    pub fn held(&self) -> Held {
        let inner = &self.inner;
        Held {
            pushed: inner.pushed.blobs.usage().0,
            cached: inner.blobs.usage().0,
            limit: inner.blobs.limit(),
        }
    }

    /// Every tag the mirror serves: pushed ones, then those resolved through an upstream.
    pub fn catalog(&self) -> Vec<CatalogImage> {
        let inner = &self.inner;
        let mut images: Vec<CatalogImage> = inner
            .pushed
            .tags()
            .into_iter()
            .map(|(name, digest)| CatalogImage {
                name,
                source: Source::Pushed,
                digest,
            })
            .collect();
        let mut mirrored: Vec<CatalogImage> = inner
            .tags
            .entries()
            .into_iter()
            .filter_map(|(key, digest)| {
                let host = inner.upstreams.get(key.upstream)?.host().to_owned();
                let name = match key.upstream {
                    0 => format!("{}:{}", key.repo, key.tag),
                    _ => format!("{host}/{}:{}", key.repo, key.tag),
                };
                Some(CatalogImage {
                    name,
                    source: Source::Upstream(host),
                    digest,
                })
            })
            .collect();
        mirrored.sort_by(|a, b| a.name.cmp(&b.name));
        images.extend(mirrored);
        images
    }

    /// Take `name` (`[HOST/]REPO[:TAG]`) out: a pushed tag of that name first (its blobs no other
    /// pushed image references deleted), else a mirrored tag (forgotten).
    pub async fn remove(&self, name: &str) -> Result<Removed, RemoveError> {
        let unknown = || RemoveError::Unknown(name.to_owned());
        let tag = parse_tag(name).map_err(|e| RemoveError::BadName(e.to_string()))?;
        let host = split_host(name).map_err(|e| RemoveError::BadName(e.to_string()))?;
        let repo = match host.host {
            Some(host) => format!("{host}/{}", tag.repo.as_str()),
            None => tag.repo.as_str().to_owned(),
        };
        let route = match self.route(&repo) {
            Err(MirrorError::NameUnknown(_)) => return Err(unknown()),
            route => route?,
        };
        if route.upstream.is_none_or(|u| u == 0) {
            if let Some(removed) = self.remove_pushed(&tag).await? {
                return Ok(removed);
            }
        }
        let upstream = route.upstream.ok_or_else(unknown)?;
        let key = TagKey {
            upstream,
            repo: tag.repo.as_str().to_owned(),
            tag: tag.tag.clone(),
        };
        let digest = self.inner.tags.forget(&key).ok_or_else(unknown)?;
        self.inner.tags.save().await.map_err(MirrorError::from)?;
        let upstream_host = self.inner.upstreams[upstream].host().to_owned();
        let name = match upstream {
            0 => tag.to_string(),
            _ => format!("{upstream_host}/{tag}"),
        };
        Ok(Removed {
            image: CatalogImage {
                name,
                source: Source::Upstream(upstream_host),
                digest,
            },
            freed: (0, 0),
        })
    }

    /// Drop a pushed tag and the blobs only it referenced; `None` if it was not pushed.
    async fn remove_pushed(&self, tag: &ImageTag) -> Result<Option<Removed>, MirrorError> {
        let pushed = &self.inner.pushed;
        let _no_import_meanwhile = pushed.importing.lock().await;
        let Some(digest) = pushed.remove_tag(tag).await? else {
            return Ok(None);
        };
        let mut kept = HashSet::new();
        for (_, remaining) in pushed.tags() {
            self.collect_blobs(&remaining, &mut kept).await?;
        }
        let freed = pushed.blobs.keep_only(&kept).await;
        Ok(Some(Removed {
            image: CatalogImage {
                name: tag.to_string(),
                source: Source::Pushed,
                digest,
            },
            freed,
        }))
    }

    /// The blobs manifest `digest` references, its children's with them (an index's).
    async fn collect_blobs(
        &self,
        digest: &Digest,
        into: &mut HashSet<Digest>,
    ) -> Result<(), MirrorError> {
        let Some(manifest) = self.inner.manifests.get(digest).await? else {
            return Ok(());
        };
        let top = References::of(&manifest.bytes);
        into.extend(top.blobs);
        for child in &top.children {
            if let Some(child) = self.inner.manifests.get(child).await? {
                into.extend(References::of(&child.bytes).blobs);
            }
        }
        Ok(())
    }
}
