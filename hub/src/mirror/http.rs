//! The pull side of the OCI distribution API over the mirror: `GET /v2/`, `GET|HEAD
//! /v2/<name>/manifests/<reference>` and `GET|HEAD /v2/<name>/blobs/<digest>` with single byte
//! ranges (an agent resumes a cut transfer with `Range: bytes=N-`).
//!
//! The admin API mounts this router behind its authentication, so only an admin (and, later, an
//! agent over its session) pulls through the hub. Every path is parsed and checked
//! ([`super::name`], [`super::digest`]) before it picks an upstream or names a file. Errors are the
//! distribution API's JSON (`{"errors":[{"code":"BLOB_UNKNOWN","message":…}]}`), so registry
//! clients show them as they would a registry's.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;
use tracing::warn;

use super::digest::Digest;
use super::error::MirrorError;
use super::manifests::Manifest;
use super::name::{NameError, Reference};
use super::range::{self, RangeRequest};
use super::store::BlobReader;
use super::upstream::UpstreamError;
use super::Mirror;

/// The header registry clients look for on `/v2/`.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");
const DIGEST_HEADER: &str = "docker-content-digest";
/// Bytes read from disk per body chunk: a few TLS records, not one per 4 KiB default read.
const READ_CHUNK: usize = 64 << 10;

/// The mirror's routes, with the mirror as their state; merge into a router of any state.
pub fn router<S: Clone + Send + Sync + 'static>(mirror: Mirror) -> Router<S> {
    Router::new()
        .route("/v2", get(version))
        .route("/v2/", get(version))
        .route("/v2/{*path}", get(pull).head(pull))
        .with_state(mirror)
}

async fn version() -> impl IntoResponse {
    ([API_VERSION], Json(json!({})))
}

/// `/v2/<name>/manifests/<reference>` or `/v2/<name>/blobs/<digest>`.
async fn pull(
    State(mirror): State<Mirror>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let head = method == Method::HEAD;
    let mut parts = path.rsplitn(3, '/');
    let (Some(reference), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
    else {
        return unsupported();
    };
    let answer = match kind {
        "manifests" => manifest(&mirror, name, reference)
            .await
            .map(|m| manifest_response(m, head)),
        "blobs" => blob(&mirror, name, reference, headers.get(header::RANGE), head).await,
        _ => return unsupported(),
    };
    answer.unwrap_or_else(|e| {
        if matches!(
            e,
            MirrorError::Upstream(_) | MirrorError::Store(_) | MirrorError::FetchLost
        ) {
            warn!(name, "mirror: {e}");
        }
        error_response(kind, &e)
    })
}

async fn manifest(mirror: &Mirror, name: &str, reference: &str) -> Result<Manifest, MirrorError> {
    let route = mirror.route(name)?;
    let reference = Reference::parse(reference)?;
    mirror.manifest(&route, &reference).await
}

fn manifest_response(manifest: Manifest, head: bool) -> Response {
    let mut headers = HeaderMap::new();
    let media_type = HeaderValue::from_str(&manifest.media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, media_type);
    headers.insert(header::CONTENT_LENGTH, manifest.bytes.len().into());
    insert_digest(&mut headers, &manifest.digest);
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.bytes)
    };
    (StatusCode::OK, headers, body).into_response()
}

async fn blob(
    mirror: &Mirror,
    name: &str,
    digest: &str,
    range: Option<&HeaderValue>,
    head: bool,
) -> Result<Response, MirrorError> {
    let route = mirror.route(name)?;
    let digest = Digest::parse(digest)?;
    let reader = mirror.blob(&route, &digest).await?;
    let asked = range::parse(range.and_then(|v| v.to_str().ok()), reader.size);
    blob_response(reader, &digest, asked, head).await
}

async fn blob_response(
    mut reader: BlobReader,
    digest: &Digest,
    asked: RangeRequest,
    head: bool,
) -> Result<Response, MirrorError> {
    let size = reader.size;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    insert_digest(&mut headers, digest);
    let (status, start, len) = match asked {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Part(part) => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&part.content_range(size)),
            );
            (StatusCode::PARTIAL_CONTENT, part.start, part.byte_count())
        }
        RangeRequest::Unsatisfiable => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            let body = error_body(
                "RANGE_INVALID",
                &format!("the range starts past the blob's {size} bytes"),
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, headers, body).into_response());
        }
    };
    headers.insert(header::CONTENT_LENGTH, len.into());
    if head {
        return Ok((status, headers, Body::empty()).into_response());
    }
    if start > 0 {
        reader.seek(start).await?;
    }
    let body = Body::from_stream(ReaderStream::with_capacity(reader.take(len), READ_CHUNK));
    Ok((status, headers, body).into_response())
}

fn insert_digest(headers: &mut HeaderMap, digest: &Digest) {
    headers.insert(DIGEST_HEADER, header_value(digest.as_str()));
}

/// A header value from text the mirror made itself (digits, digests, `bytes a-b/n`).
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

fn unsupported() -> Response {
    let body = error_body(
        "UNSUPPORTED",
        "the hub's mirror serves pulls only: /v2/<name>/manifests/<reference> and /v2/<name>/blobs/<digest>",
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

/// The distribution API's status and code for `error` on a `kind` route.
fn error_response(kind: &str, error: &MirrorError) -> Response {
    let (status, code) = match error {
        MirrorError::NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        MirrorError::Name(NameError::Reference) if kind == "manifests" => {
            (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
        }
        MirrorError::Name(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        MirrorError::Digest(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        MirrorError::ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        MirrorError::BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        MirrorError::Upstream(e) => upstream_code(e),
        MirrorError::Store(_) | MirrorError::FetchLost => {
            (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN")
        }
    };
    (status, error_body(code, &error.to_string())).into_response()
}

fn upstream_code(error: &UpstreamError) -> (StatusCode, &'static str) {
    match error {
        UpstreamError::Unauthorized { .. } => (StatusCode::BAD_GATEWAY, "DENIED"),
        UpstreamError::Store {
            source: super::store::StoreError::DigestMismatch { .. },
            ..
        }
        | UpstreamError::ManifestDigest { .. } => (StatusCode::BAD_GATEWAY, "DIGEST_INVALID"),
        UpstreamError::TooLarge { .. }
        | UpstreamError::Store {
            source: super::store::StoreError::TooLarge { .. },
            ..
        } => (StatusCode::BAD_GATEWAY, "SIZE_INVALID"),
        _ => (StatusCode::BAD_GATEWAY, "UNKNOWN"),
    }
}

fn error_body(code: &str, message: &str) -> Json<serde_json::Value> {
    Json(json!({ "errors": [{ "code": code, "message": message, "detail": null }] }))
}
