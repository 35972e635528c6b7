//! `GET /api/images` and `DELETE /api/images?name=…`: what the hub's mirror serves, and taking an
//! image out of it (`outpost-hub image list`, `image rm`; [`crate::mirror::catalog`] says why a
//! pushed image's blobs go at once and a mirrored tag's are left to eviction). Reading is a
//! viewer's, removing an admin's, like pushing (`access::need`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{CatalogImage, ImageCatalog, ImageRemoved, RemoveQuery};
use tracing::info;

use super::ApiError;
use crate::context::HubContext;
use crate::mirror::catalog::{self, RemoveError, Source};

/// `GET /api/images`.
pub(super) async fn list(State(ctx): State<Arc<HubContext>>) -> Json<ImageCatalog> {
    let held = ctx.mirror.held();
    Json(ImageCatalog {
        images: ctx.mirror.catalog().into_iter().map(listed).collect(),
        pushed_bytes: held.pushed,
        cached_bytes: held.cached,
        limit_bytes: held.limit,
    })
}

/// `DELETE /api/images?name=[HOST/]REPO[:TAG]`.
pub(super) async fn remove(
    State(ctx): State<Arc<HubContext>>,
    query: Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<Json<ImageRemoved>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let removed = ctx.mirror.remove(&query.name).await.map_err(refused)?;
    let (freed_bytes, freed_blobs) = removed.freed;
    info!(image = %removed.image.name, digest = %removed.image.digest, freed_bytes, "image removed from the mirror");
    Ok(Json(ImageRemoved {
        image: listed(removed.image),
        freed_bytes,
        freed_blobs,
    }))
}

fn listed(image: catalog::CatalogImage) -> CatalogImage {
    CatalogImage {
        name: image.name,
        source: match image.source {
            Source::Pushed => "pushed".into(),
            Source::Upstream(host) => host,
        },
        digest: image.digest.to_string(),
    }
}

fn refused(error: RemoveError) -> ApiError {
    let status = match &error {
        RemoveError::Unknown(_) => StatusCode::NOT_FOUND,
        RemoveError::BadName(_) => StatusCode::BAD_REQUEST,
        RemoveError::Mirror(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, format!("image rm: {error}"))
}
