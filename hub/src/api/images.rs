//! `POST /api/images`: a `docker save` archive streamed into the mirror (`outpost-hub image
//! push`), for hubs that reach no registry. An admin's only (`access::need`): a pushed image is
//! served to every device that asks for its name.
//!
//! The body is read as it arrives, never whole in memory; the mirror bounds what it stages
//! ([`crate::mirror::import`]). An archive refused is a 400 (413 when it does not fit) naming
//! what is wrong, and nothing of it is kept.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use futures_util::TryStreamExt;
use outpost_api::{ImagesPushed, PushQuery, PushedImage};
use tokio_util::io::StreamReader;
use tracing::warn;

use super::ApiError;
use crate::context::HubContext;
use crate::mirror::import::{ImportError, Imported};
use crate::mirror::import_image::parse_tag;

/// `POST /api/images[?tag=REPO:TAG]`, the archive as the body.
pub(super) async fn push(
    State(ctx): State<Arc<HubContext>>,
    query: Result<Query<PushQuery>, QueryRejection>,
    body: Body,
) -> Result<(StatusCode, Json<ImagesPushed>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let tags = match &query.tag {
        Some(tag) => vec![parse_tag(tag).map_err(refused)?],
        None => Vec::new(),
    };
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let imported = ctx
        .mirror
        .import(StreamReader::new(stream), tags)
        .await
        .map_err(refused)?;
    let images = imported.into_iter().map(pushed).collect();
    Ok((StatusCode::CREATED, Json(ImagesPushed { images })))
}

fn pushed(image: Imported) -> PushedImage {
    PushedImage {
        tags: image.tags,
        manifest: image.manifest.to_string(),
        id: image.config.to_string(),
        layers: image.layers,
        bytes: image.bytes,
    }
}

fn refused(error: ImportError) -> ApiError {
    let status = match &error {
        ImportError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        e if e.is_refusal() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    warn!("image push refused, nothing kept: {error}");
    ApiError::new(status, format!("image push refused, nothing kept: {error}"))
}
