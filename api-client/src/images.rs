//! The bodies of `/api/images` (`outpost-hub image push`: a `docker save` archive loaded into the
//! hub's mirror; `image list`, `image rm`) and the client's calls for them.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{ApiClient, ApiError};

/// `POST /api/images` query: the name to serve the archive's one image by, instead of its own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PushQuery {
    /// `repo:tag` (a registry host is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `POST /api/images` reply: every image of the archive, now served by the mirror.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImagesPushed {
    /// The images.
    pub images: Vec<PushedImage>,
}

/// One pushed image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PushedImage {
    /// The names it is served by (`repo:tag`, pulled as `127.0.0.1:5380/repo:tag` on a device).
    pub tags: Vec<String>,
    /// The manifest's digest.
    pub manifest: String,
    /// The image id (its config's digest), as `docker images --no-trunc` shows it.
    pub id: String,
    /// Its layers.
    pub layers: usize,
    /// Bytes a device pulls: the config and the gzipped layers.
    pub bytes: u64,
}

/// `GET /api/images` reply: every tag the hub's mirror serves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageCatalog {
    /// Pushed images first, then tags resolved through an upstream, each by name.
    pub images: Vec<CatalogImage>,
    /// Bytes of pushed images' blobs (kept until removed).
    pub pushed_bytes: u64,
    /// Bytes of the pull-through cache (evicted least recently used first).
    pub cached_bytes: u64,
    /// The limit each of the two is held to (`--mirror-max-gib`).
    pub limit_bytes: u64,
}

/// One tag the mirror serves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CatalogImage {
    /// The name a device pulls it by after `127.0.0.1:5380/`.
    pub name: String,
    /// `pushed`, or the upstream's `host[:port]` it was resolved through.
    pub source: String,
    /// Its manifest's digest, as last resolved.
    pub digest: String,
}

/// `DELETE /api/images?name=…` query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoveQuery {
    /// `[HOST/]REPO[:TAG]`.
    pub name: String,
}

/// `DELETE /api/images` reply: what was taken out.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRemoved {
    /// The image, as it was listed.
    pub image: CatalogImage,
    /// Bytes deleted from the hub's disk: a pushed image's blobs no other pushed image uses (a
    /// mirrored tag is only forgotten; its blobs are left to eviction).
    pub freed_bytes: u64,
    /// Blobs deleted.
    pub freed_blobs: usize,
}

impl ApiClient {
    /// `GET /api/images`: what the hub's mirror serves.
    pub async fn images(&self) -> Result<ImageCatalog, ApiError> {
        self.call(Method::GET, "/api/images").await
    }

    /// `DELETE /api/images?name=NAME`: take an image out of the hub's mirror.
    pub async fn remove_image(&self, name: &str) -> Result<ImageRemoved, ApiError> {
        let path = "/api/images";
        let query = RemoveQuery { name: name.into() };
        let request = self.request(Method::DELETE, path).query(&query);
        self.send(path, request).await
    }

    /// `POST /api/images`: stream a `docker save` archive into the hub's mirror.
    pub async fn push_image(
        &self,
        archive: reqwest::Body,
        query: &PushQuery,
    ) -> Result<ImagesPushed, ApiError> {
        let path = "/api/images";
        let request = self
            .request(Method::POST, path)
            .query(query)
            .header("content-type", "application/x-tar")
            .body(archive);
        self.send(path, request).await
    }
}
