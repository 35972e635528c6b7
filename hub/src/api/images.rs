//! `POST /api/images`: a `docker save` archive streamed into the mirror (`outpost-hub image
//! push`), for hubs that reach no registry. An admin's only (`access::need`): a pushed image is
//! served to every device that asks for its name.
//!
//! The body is read as it arrives, never whole in memory; the mirror bounds what it stages
//! ([`crate::mirror::import`]). An archive refused is a 400 (413 when it does not fit) naming
//! what is wrong, and nothing of it is kept. A refusal usually comes before the client has sent
//! everything (a bad entry, a full mirror), and a response to a half-read upload reaches a client
//! as a reset connection, not as the message; so the rest of the body is read and discarded
//! first ([`drain`]: bounded in bytes, and a client that stalls is cut).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use futures_util::StreamExt;
use outpost_api::{ImagesPushed, PushQuery, PushedImage};
use tokio::sync::mpsc;
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
    let (chunks, pump) = pump(body);
    let tags = query.tag.as_deref().map(parse_tag).transpose();
    let imported = match tags {
        Ok(tags) => {
            let tags = tags.into_iter().collect();
            ctx.mirror.import(StreamReader::new(chunks), tags).await
        }
        Err(e) => {
            drop(chunks);
            Err(e)
        }
    };
    match imported {
        Ok(imported) => {
            let images = imported.into_iter().map(pushed).collect();
            Ok((StatusCode::CREATED, Json(ImagesPushed { images })))
        }
        Err(e) => {
            let _ = pump.await;
            Err(refused(e))
        }
    }
}

/// Most bytes read and discarded after a refusal, so the client reads the reason.
const DRAIN_LIMIT: u64 = 32 << 30;
/// Longest wait for the next chunk while draining.
const DRAIN_STALL: Duration = Duration::from_secs(10);
/// Longest wait for the next chunk of an upload: a stalled client must not hold the one import
/// that may run.
const UPLOAD_STALL: Duration = Duration::from_secs(60);
/// Chunks between the body and the import.
const IN_FLIGHT: usize = 8;

type Chunk = Result<Bytes, std::io::Error>;

/// Carry `body` to the import chunk by chunk; once the import stops reading (it refused the
/// archive), [`drain`] the rest. The task ends with the body.
fn pump(
    body: Body,
) -> (
    impl futures_util::Stream<Item = Chunk> + Send + Unpin + 'static,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel::<Chunk>(IN_FLIGHT);
    let task = tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        loop {
            let chunk = match tokio::time::timeout(UPLOAD_STALL, stream.next()).await {
                Ok(Some(chunk)) => chunk.map_err(std::io::Error::other),
                Ok(None) => return,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no byte of the archive for {} s", UPLOAD_STALL.as_secs()),
                )),
            };
            let stalled = chunk.is_err();
            if tx.send(chunk).await.is_err() {
                return drain(stream).await;
            }
            if stalled {
                return;
            }
        }
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (Box::pin(chunks), task)
}

/// Read and discard the rest of a refused upload, up to [`DRAIN_LIMIT`] bytes, each chunk within
/// [`DRAIN_STALL`].
async fn drain(mut stream: axum::body::BodyDataStream) {
    let mut drained = 0u64;
    while drained < DRAIN_LIMIT {
        match tokio::time::timeout(DRAIN_STALL, stream.next()).await {
            Ok(Some(Ok(chunk))) => drained += chunk.len() as u64,
            _ => return,
        }
    }
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
