//! The bodies of `/api/images` (`outpost-hub image push`: a `docker save` archive loaded into the
//! hub's mirror) and the client's call for it.

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

impl ApiClient {
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
