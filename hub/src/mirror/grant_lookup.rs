//! The mirror's part of the device grant ([`super::grant`]): the repository a name reaches, as
//! grants compare them, and the manifests an ordered image or an ordered repository resolves to —
//! for a blob asked for by a session that was not served its manifest (a restarted hub, an agent
//! that resumed on another hub of the store).

use tracing::debug;

use super::digest::Digest;
use super::error::MirrorError;
use super::grant::{References, RepoKey};
use super::name::{docker_hub_path, is_docker_hub, split_host, Reference, RepoPath};
use super::{Mirror, Route};

/// Child manifests of one index followed (one per platform: a real index has a few dozen).
const MAX_CHILDREN: usize = 64;

impl Mirror {
    /// The route a requested or ordered name takes and the repository it names, so an order's
    /// `docker.io/nginx` and an agent's `library/nginx` compare equal.
    pub fn repo_key(&self, name: &str) -> Result<(Route, RepoKey), MirrorError> {
        let route = match self.route(name) {
            Err(MirrorError::NameUnknown(unknown)) => self
                .docker_hub_route(name)?
                .ok_or(MirrorError::NameUnknown(unknown))?,
            routed => routed?,
        };
        let docker_hub = route
            .upstream
            .is_some_and(|u| is_docker_hub(self.inner.upstreams[u].host()));
        let repo = match docker_hub {
            true => docker_hub_path(route.repo.as_str()).into_owned(),
            false => route.repo.as_str().to_owned(),
        };
        let key = RepoKey {
            upstream: route.upstream,
            repo,
        };
        Ok((route, key))
    }

    /// A name under one of Docker Hub's hosts, for the upstream that is Docker Hub by another.
    fn docker_hub_route(&self, name: &str) -> Result<Option<Route>, MirrorError> {
        let requested = split_host(name)?;
        if !requested.host.is_some_and(is_docker_hub) {
            return Ok(None);
        }
        let upstreams = &self.inner.upstreams;
        let Some(upstream) = upstreams.iter().position(|u| is_docker_hub(u.host())) else {
            return Ok(None);
        };
        Ok(Some(Route {
            upstream: Some(upstream),
            repo: RepoPath::parse(requested.rest)?,
        }))
    }

    /// What `reference` of `route` references, an index's children's with it: resolved as a pull
    /// would (a tag through the tag cache, else the upstream, else its last known digest).
    pub async fn references_of(
        &self,
        route: &Route,
        reference: &Reference,
    ) -> Result<Vec<References>, MirrorError> {
        let manifest = self.manifest(route, reference).await?;
        let top = References::of(&manifest.bytes);
        let mut found = Vec::with_capacity(1 + top.children.len());
        for child in top.children.iter().take(MAX_CHILDREN) {
            let asked = Reference::Digest(child.clone());
            match self.manifest(route, &asked).await {
                Ok(child) => found.push(References::of(&child.bytes)),
                Err(e) => debug!(%child, "a child manifest of an ordered image: {e}"),
            }
        }
        found.push(top);
        Ok(found)
    }

    /// What the manifests this mirror holds for any tag of `route`'s repository reference, as
    /// they were last resolved (read from its own store, never from an upstream).
    pub async fn known_references(&self, route: &Route) -> Vec<References> {
        let Some(upstream) = route.upstream else {
            return Vec::new();
        };
        let digests = self.inner.tags.digests_of(upstream, route.repo.as_str());
        let mut found = Vec::new();
        for digest in digests {
            let top = self.held_references(&digest).await;
            for child in top.children.iter().take(MAX_CHILDREN) {
                found.push(self.held_references(child).await);
            }
            found.push(top);
        }
        found
    }

    async fn held_references(&self, digest: &Digest) -> References {
        match self.inner.manifests.get(digest).await {
            Ok(Some(manifest)) => References::of(&manifest.bytes),
            Ok(None) => References::default(),
            Err(e) => {
                debug!(%digest, "a kept manifest could not be read: {e}");
                References::default()
            }
        }
    }
}
