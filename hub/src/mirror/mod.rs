//! The hub's pull-through mirror of container registries (issue #16, the hub's part).
//!
//! Images are nearly all the bytes a fleet moves, and many devices reach only the hub. The mirror
//! fetches each blob from its upstream registry **at most once** however many devices want it at
//! the same moment ([`flight`]), keeps it content-addressed under the data directory, verified by
//! digest before anyone can read it ([`store`]), and serves it back with byte ranges so a transfer
//! cut by an outage resumes instead of starting over ([`http`]). Manifests are kept by digest
//! ([`manifests`]) and tags believed for a minute ([`tags`]), so a moved tag is noticed and an
//! unreachable upstream still leaves the last known image pullable, after a restart too.
//!
//! - [`config`]: upstream URLs (credentials only from a file, never in a URL), size limit.
//! - [`name`], [`digest`], [`range`]: the bounded parsers of request input, shared with the agent
//!   from `outpost_protocol::registry` (where `fuzz/` covers them).
//! - [`upstream`]: the distribution API client with Basic and token auth.
//! - [`store`] and [`lru`]: blobs on disk, eviction least recently used first.
//! - [`flight`]: one upstream fetch per blob at a time.
//! - [`http`]: the pull side of the distribution API, mounted under `/v2/` on the admin API.
//! - [`counters`]: fetches, bytes, hits and misses.
//! - [`catalog`]: the tags served, and `image rm`.
//! - [`grant`] and [`grant_lookup`]: which images a device may fetch (those ordered onto it).
//! - [`import`]: `image push`, a `docker save` archive loaded for sites without an upstream
//!   ([`import_tar`] reads it behind [`import_guard`], [`import_image`] checks and converts it,
//!   [`import_store`] keeps it).

pub use outpost_protocol::registry::{digest, name, range};

pub mod catalog;
pub mod config;
pub mod counters;
pub mod error;
pub mod flight;
pub mod grant;
pub mod grant_lookup;
pub mod http;
pub mod import;
pub mod import_guard;
pub mod import_image;
pub mod import_store;
pub mod import_tar;
pub mod lru;
pub mod manifests;
pub mod store;
pub mod tags;
pub mod upstream;

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod grant_lookup_tests;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{info, warn};

use config::{authority, read_credentials, MirrorConfig};
use counters::{Count, Counters, MirrorCounters};
use digest::Digest;
use error::{MirrorError, MirrorOpenError};
use flight::{Flights, Joined};
use import_store::Pushed;
use manifests::{Manifest, ManifestStore};
use name::{split_host, Reference, RepoPath};
use store::{BlobReader, BlobStore};
use tags::{TagCache, TagKey};
use upstream::Upstream;

/// Which upstream a request's name goes to, and the repository there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The upstream's index in the configuration; `None` on a hub with no upstream, which serves
    /// pushed images only.
    pub upstream: Option<usize>,
    /// The repository on it.
    pub repo: RepoPath,
}

/// The mirror: what the rest of the hub uses. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mirror {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    upstreams: Vec<Upstream>,
    blobs: BlobStore,
    manifests: ManifestStore,
    tags: TagCache,
    flights: Flights,
    counters: Counters,
    pushed: Pushed,
}

impl Mirror {
    /// Open the mirror under `<data_dir>/mirror` with `config`'s upstreams, reading their
    /// credentials file if there is one.
    pub fn open(config: &MirrorConfig, data_dir: &Path) -> Result<Self, MirrorOpenError> {
        let root = data_dir.join("mirror");
        let credentials = match &config.credentials_file {
            Some(path) => read_credentials(path)?,
            None => Vec::new(),
        };
        let upstreams = config
            .upstreams
            .iter()
            .map(|url| {
                let host = authority(url);
                let found = credentials
                    .iter()
                    .find(|(h, _)| *h == host)
                    .map(|(_, c)| c.clone());
                info!(upstream = %url, credentials = found.is_some(), "mirror upstream");
                Upstream::new(url.clone(), found)
                    .map_err(|detail| MirrorOpenError::Client { host, detail })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (host, _) in &credentials {
            if !upstreams.iter().any(|u| u.host() == host) {
                warn!(%host, "registry credentials for a host that is no --registry; unused");
            }
        }
        let hosts = upstreams.iter().map(|u| u.host().to_owned()).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                tags: TagCache::open(&root, config.tag_ttl, hosts),
                upstreams,
                blobs: BlobStore::open(&root, config.max_bytes)?,
                manifests: ManifestStore::open(&root)?,
                flights: Flights::default(),
                counters: Counters::default(),
                pushed: Pushed::open(&root, config.max_bytes)?,
            }),
        })
    }

    /// The upstream and repository for a requested name: a name starting with an upstream's host
    /// goes to it, any other name without a host to the first upstream (or, with none, to the
    /// pushed images alone).
    pub fn route(&self, name: &str) -> Result<Route, MirrorError> {
        let requested = split_host(name)?;
        let upstream = match requested.host {
            Some(host) => Some(
                self.inner
                    .upstreams
                    .iter()
                    .position(|u| u.host() == host)
                    .ok_or_else(|| MirrorError::NameUnknown(name.to_owned()))?,
            ),
            None => (!self.inner.upstreams.is_empty()).then_some(0),
        };
        Ok(Route {
            upstream,
            repo: RepoPath::parse(requested.rest)?,
        })
    }

    /// The manifest `reference` of `route`: from the store when its digest is known (a tag's for
    /// the TTL), else from the upstream; the last known one when the upstream fails.
    pub async fn manifest(
        &self,
        route: &Route,
        reference: &Reference,
    ) -> Result<Manifest, MirrorError> {
        let inner = &self.inner;
        let tag = match reference {
            Reference::Digest(digest) => return self.manifest_by_digest(route, digest).await,
            Reference::Tag(tag) => tag,
        };
        if let Some(manifest) = self.pushed_manifest(route, tag).await? {
            return Ok(manifest);
        }
        let key = TagKey {
            upstream: self.upstream_of(route, reference)?,
            repo: route.repo.as_str().to_owned(),
            tag: tag.clone(),
        };
        if let Some(digest) = inner.tags.fresh(&key, Instant::now()) {
            if let Some(manifest) = inner.manifests.get(&digest).await? {
                inner.counters.add(Count::Hit, 1);
                return Ok(manifest);
            }
        }
        match self.fetch_manifest(route, reference).await {
            Ok(manifest) => {
                if inner
                    .tags
                    .record(key, manifest.digest.clone(), Instant::now())
                {
                    if let Err(e) = inner.tags.save().await {
                        warn!("the mirror's tags are not saved: {e}");
                    }
                }
                Ok(manifest)
            }
            Err(e) => self.stale_manifest(&key, e).await,
        }
    }

    /// Blob `digest` of `route`, open and held against eviction: from the store, else fetched once
    /// from the upstream (joining a fetch already running).
    pub async fn blob(&self, route: &Route, digest: &Digest) -> Result<BlobReader, MirrorError> {
        let inner = &self.inner;
        let held = match inner.pushed.blobs.open_blob(digest).await? {
            Some(reader) => Some(reader),
            None => inner.blobs.open_blob(digest).await?,
        };
        if let Some(reader) = held {
            inner.counters.add(Count::Hit, 1);
            return Ok(reader);
        }
        if route.upstream.is_none() {
            return Err(MirrorError::BlobUnknown);
        }
        inner.counters.add(Count::Miss, 1);
        // Twice: a blob evicted between its fetch and this open (a store under pressure) is
        // fetched once more, not reported missing.
        for _ in 0..2 {
            self.fetch_blob(route, digest).await?;
            if let Some(reader) = inner.blobs.open_blob(digest).await? {
                return Ok(reader);
            }
        }
        Err(MirrorError::FetchLost)
    }

    /// Whether any upstream is configured or any image was pushed: only then do agents get fetch
    /// streams (an agent that connected before the first push is granted with its first pull
    /// job, or at its next session).
    pub fn serves(&self) -> bool {
        !self.inner.upstreams.is_empty() || self.inner.pushed.any()
    }

    /// The upstreams' `host[:port]`, the default first (at most
    /// [`outpost_protocol::fetch::MAX_UPSTREAMS`], as agents read them).
    pub fn upstream_hosts(&self) -> Vec<String> {
        let hosts = self.inner.upstreams.iter().map(|u| u.host().to_owned());
        hosts.take(outpost_protocol::fetch::MAX_UPSTREAMS).collect()
    }

    /// Count what the hub's fetch streams did ([`crate::agent_link`]).
    pub fn count(&self, which: Count, n: u64) {
        self.inner.counters.add(which, n);
    }

    /// What the mirror has done since the hub started, and what it holds.
    pub fn counters(&self) -> MirrorCounters {
        self.inner.counters.read(self.inner.blobs.usage())
    }

    async fn manifest_by_digest(
        &self,
        route: &Route,
        digest: &Digest,
    ) -> Result<Manifest, MirrorError> {
        if let Some(manifest) = self.inner.manifests.get(digest).await? {
            self.inner.counters.add(Count::Hit, 1);
            return Ok(manifest);
        }
        self.fetch_manifest(route, &Reference::Digest(digest.clone()))
            .await
    }

    /// A pushed image's manifest for `tag`, for a name of the default upstream (or of none).
    async fn pushed_manifest(
        &self,
        route: &Route,
        tag: &str,
    ) -> Result<Option<Manifest>, MirrorError> {
        if route.upstream.is_some_and(|u| u != 0) {
            return Ok(None);
        }
        let Some(digest) = self.inner.pushed.tag(route.repo.as_str(), tag) else {
            return Ok(None);
        };
        let manifest = self.inner.manifests.get(&digest).await?;
        if manifest.is_some() {
            self.inner.counters.add(Count::Hit, 1);
        }
        Ok(manifest)
    }

    /// The upstream a request goes to; a hub without one knows only pushed images.
    fn upstream_of(&self, route: &Route, reference: &Reference) -> Result<usize, MirrorError> {
        route.upstream.ok_or_else(|| {
            MirrorError::ManifestUnknown(format!(
                "{}:{} was not pushed to this hub, and it mirrors no registry",
                route.repo.as_str(),
                reference.as_str()
            ))
        })
    }

    async fn fetch_manifest(
        &self,
        route: &Route,
        reference: &Reference,
    ) -> Result<Manifest, MirrorError> {
        let inner = &self.inner;
        let upstream = self.upstream_of(route, reference)?;
        inner.counters.add(Count::Miss, 1);
        inner.counters.add(Count::ManifestFetch, 1);
        let fetched = inner.upstreams[upstream]
            .manifest(&route.repo, reference)
            .await;
        if let Err(upstream::UpstreamError::ManifestDigest { .. }) = &fetched {
            inner.counters.add(Count::Refused, 1);
        }
        let manifest = fetched?;
        inner
            .counters
            .add(Count::UpstreamBytes, manifest.bytes.len() as u64);
        inner.manifests.put(&manifest).await?;
        Ok(manifest)
    }

    /// The upstream failed to resolve a tag: serve its last digest if that manifest is kept.
    async fn stale_manifest(
        &self,
        key: &TagKey,
        error: MirrorError,
    ) -> Result<Manifest, MirrorError> {
        if matches!(error, MirrorError::ManifestUnknown(_)) {
            return Err(error);
        }
        let Some(digest) = self.inner.tags.last(key) else {
            return Err(error);
        };
        match self.inner.manifests.get(&digest).await? {
            Some(manifest) => {
                warn!(repo = %key.repo, tag = %key.tag, %digest, "serving the last known manifest: {error}");
                Ok(manifest)
            }
            None => Err(error),
        }
    }

    /// Make sure blob `digest` is in the store: lead a fetch or wait for the one running.
    async fn fetch_blob(&self, route: &Route, digest: &Digest) -> Result<(), MirrorError> {
        let leader = match self.inner.flights.join(digest) {
            Joined::Follower(receiver) => return flight::wait(receiver).await,
            Joined::Leader(leader) => leader,
        };
        let (mirror, route, digest) = (self.clone(), route.clone(), digest.clone());
        let task = tokio::spawn(async move {
            let outcome = mirror.fetch_blob_once(&route, &digest).await;
            mirror
                .inner
                .flights
                .finish(&digest, &leader, outcome.clone());
            outcome
        });
        task.await.unwrap_or(Err(MirrorError::FetchLost))
    }

    /// The leader's fetch: upstream into the store, verified; nothing kept on any failure.
    async fn fetch_blob_once(&self, route: &Route, digest: &Digest) -> Result<(), MirrorError> {
        let inner = &self.inner;
        // The blob may have landed between this request's look and its leadership.
        if inner.blobs.open_blob(digest).await?.is_some() {
            return Ok(());
        }
        inner.counters.add(Count::BlobFetch, 1);
        let upstream = &inner.upstreams[route.upstream.ok_or(MirrorError::BlobUnknown)?];
        let mut writer = inner.blobs.begin(digest.clone()).await?;
        let fetched = upstream.blob(&route.repo, digest, &mut writer).await;
        inner.counters.add(Count::UpstreamBytes, writer.written());
        fetched?;
        match writer.commit().await {
            Ok(size) => {
                info!(%digest, size, upstream = %upstream.host(), repo = %route.repo.as_str(), "mirrored a blob");
                Ok(())
            }
            Err(e) => {
                if matches!(e, store::StoreError::DigestMismatch { .. }) {
                    inner.counters.add(Count::Refused, 1);
                }
                warn!(upstream = %upstream.host(), repo = %route.repo.as_str(), "blob refused: {e}");
                Err(upstream::UpstreamError::Store {
                    host: upstream.host().to_owned(),
                    source: e,
                }
                .into())
            }
        }
    }
}
