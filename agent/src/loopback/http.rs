//! The pull side of the OCI distribution API for the device's engine: `GET /v2/`, `GET|HEAD
//! /v2/<name>/manifests/<reference>` and `GET|HEAD /v2/<name>/blobs/<digest>` (with a single byte
//! range). dockerd trusts registries on 127.0.0.0/8 over plain HTTP, so `docker pull
//! 127.0.0.1:PORT/<name>:<tag>` on the device pulls through the agent with no daemon setting.
//!
//! Every path is parsed ([`outpost_protocol::registry`]) before it names a file or a fetch. A blob
//! is answered only once it is complete and verified on disk: the engine waits while it arrives
//! (resuming across outages), and is never handed a byte of a blob that fails its digest.

use std::sync::{Arc, PoisonError};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use outpost_protocol::fetch::{FetchRefusal, Found};
use outpost_protocol::registry::digest::Digest;
use outpost_protocol::registry::name::{split_host, Reference, RepoPath};
use outpost_protocol::registry::range::{self, RangeRequest};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;
use tokio_util::io::ReaderStream;
use tracing::warn;

use super::fetch::{self, LoopbackError};
use super::store::LocalStoreError;
use super::Loopback;

const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");
const DIGEST_HEADER: &str = "docker-content-digest";
const READ_CHUNK: usize = 64 << 10;

/// The registry's routes.
pub(super) fn router(registry: Arc<Loopback>) -> Router {
    Router::new()
        .route("/v2", get(version))
        .route("/v2/", get(version))
        .route("/v2/{*path}", get(pull).head(pull))
        .with_state(registry)
}

async fn version() -> impl IntoResponse {
    ([API_VERSION], Json(json!({})))
}

async fn pull(
    State(registry): State<Arc<Loopback>>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let head = method == Method::HEAD;
    let mut parts = path.rsplitn(3, '/');
    let (Some(reference), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
    else {
        return error(StatusCode::NOT_FOUND, "UNSUPPORTED", "pulls only");
    };
    if let Err(e) = split_host(name).and_then(|n| RepoPath::parse(n.rest)) {
        return error(StatusCode::BAD_REQUEST, "NAME_INVALID", &e.to_string());
    }
    match kind {
        "manifests" => manifest(&registry, name, reference, head).await,
        "blobs" => blob(&registry, name, reference, headers.get(header::RANGE), head).await,
        _ => error(StatusCode::NOT_FOUND, "UNSUPPORTED", "pulls only"),
    }
}

async fn manifest(registry: &Loopback, name: &str, reference: &str, head: bool) -> Response {
    let reference = match Reference::parse(reference) {
        Ok(reference) => reference,
        Err(e) => return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", &e.to_string()),
    };
    let (found, bytes) = match fetched(registry, name, reference).await {
        Ok(answer) => answer,
        Err(e) => return failure("MANIFEST_UNKNOWN", &e),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, value(&found.media_type));
    headers.insert(header::CONTENT_LENGTH, bytes.len().into());
    headers.insert(DIGEST_HEADER, value(found.digest.as_str()));
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    (StatusCode::OK, headers, body).into_response()
}

/// The manifest `reference` names: by digest from the ones fetched a moment ago
/// ([`super::recent`]), else from the hub (and kept).
async fn fetched(
    registry: &Loopback,
    name: &str,
    reference: Reference,
) -> Result<(Found, Vec<u8>), LoopbackError> {
    let recent = || {
        registry
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    };
    if let Reference::Digest(digest) = &reference {
        if let Some(kept) = recent().get(name, digest, Instant::now()) {
            return Ok(kept);
        }
    }
    let (found, bytes) = fetch::manifest(&registry.link, name, reference).await?;
    recent().keep(name, &found, &bytes, Instant::now());
    Ok((found, bytes))
}

async fn blob(
    registry: &Loopback,
    name: &str,
    digest: &str,
    range: Option<&HeaderValue>,
    head: bool,
) -> Response {
    let digest = match Digest::parse(digest) {
        Ok(digest) => digest,
        Err(e) => return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", &e.to_string()),
    };
    if let Err(e) = fetch::blob(&registry.link, &registry.blobs, name, &digest).await {
        warn!(%digest, "blob not served: {e}");
        return failure("BLOB_UNKNOWN", &e);
    }
    match registry.blobs.open_complete(&digest).await {
        Ok(Some((file, size))) => {
            let asked = range::parse(range.and_then(|v| v.to_str().ok()), size);
            serve_file(file, size, &digest, asked, head).await
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "the blob was removed",
        ),
        Err(e) => failure("BLOB_UNKNOWN", &e.into()),
    }
}

async fn serve_file(
    mut file: tokio::fs::File,
    size: u64,
    digest: &Digest,
    asked: RangeRequest,
    head: bool,
) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, value("application/octet-stream"));
    headers.insert(header::ACCEPT_RANGES, value("bytes"));
    headers.insert(DIGEST_HEADER, value(digest.as_str()));
    let (status, start, len) = match asked {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Part(part) => {
            headers.insert(header::CONTENT_RANGE, value(&part.content_range(size)));
            (StatusCode::PARTIAL_CONTENT, part.start, part.byte_count())
        }
        RangeRequest::Unsatisfiable => {
            headers.insert(header::CONTENT_RANGE, value(&format!("bytes */{size}")));
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
    };
    headers.insert(header::CONTENT_LENGTH, len.into());
    if head {
        return (status, headers, Body::empty()).into_response();
    }
    if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string());
    }
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(len), READ_CHUNK));
    (status, headers, body).into_response()
}

/// The distribution API's answer to a failed fetch.
fn failure(unknown: &str, e: &LoopbackError) -> Response {
    let (status, code) = match e {
        LoopbackError::Refused {
            reason: FetchRefusal::NotFound,
            ..
        } => (StatusCode::NOT_FOUND, unknown),
        LoopbackError::Refused {
            reason: FetchRefusal::Invalid,
            ..
        } => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        LoopbackError::Store(LocalStoreError::DigestMismatch { .. })
        | LoopbackError::Refused {
            reason: FetchRefusal::Corrupt,
            ..
        } => (StatusCode::BAD_GATEWAY, "DIGEST_INVALID"),
        LoopbackError::NoHub => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        // The engine reports `denied: the hub refused: … not ordered onto this device`.
        LoopbackError::Refused {
            reason: FetchRefusal::Forbidden,
            ..
        } => (StatusCode::FORBIDDEN, "DENIED"),
        // The engine reports `toomanyrequests: deferred: budget …`; the stack worker tells a
        // deferral from a failure by the link's record of it, not by these words.
        LoopbackError::Refused {
            reason: FetchRefusal::Deferred { .. },
            ..
        } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        _ => (StatusCode::BAD_GATEWAY, "UNKNOWN"),
    };
    error(status, code, &e.to_string())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = Json(json!({ "errors": [{ "code": code, "message": message, "detail": null }] }));
    (status, body).into_response()
}

/// A header value from text the registry checked or made (media types were checked printable).
fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}
