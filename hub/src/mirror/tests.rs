//! The mirror against small upstreams on loopback (axum) that count, delay, corrupt and demand
//! tokens: the store's verification, single flight, eviction and the auth dance, with real HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::config::{parse_upstream, MirrorConfig};
use super::digest::Digest;
use super::error::MirrorError;
use super::name::Reference;
use super::store::{BlobStore, StoreError};
use super::upstream::UpstreamError;
use super::Mirror;

/// What a test upstream serves and how it behaves.
#[derive(Default)]
pub(super) struct Upstream {
    blobs: HashMap<String, Bytes>,
    pub(super) manifests: HashMap<String, (String, Bytes)>,
    /// Blob GETs answered, by digest.
    blob_gets: Mutex<HashMap<String, usize>>,
    pub(super) manifest_gets: AtomicUsize,
    token_gets: AtomicUsize,
    delay: Duration,
    /// Serve these bytes instead of the real ones for every blob.
    corrupt: Option<Bytes>,
    /// Require `Bearer good-token`, issued for Basic `alice:pw` at `/token`.
    bearer: Option<String>,
    /// Answer every manifest request 503, as a registry that is down.
    down: std::sync::atomic::AtomicBool,
}

impl Upstream {
    fn gets(&self, digest: &Digest) -> usize {
        self.blob_gets
            .lock()
            .unwrap()
            .get(digest.as_str())
            .copied()
            .unwrap_or(0)
    }

    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        let realm = self.bearer.as_ref()?;
        let authorized = headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v == "Bearer good-token");
        if authorized {
            return None;
        }
        let challenge =
            format!(r#"Bearer realm="{realm}",service="test",scope="repository:pos/web:pull""#);
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
            )
                .into_response(),
        )
    }
}

async fn blob(
    State(up): State<Arc<Upstream>>,
    Path((_, digest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = up.refuse(&headers) {
        return refusal;
    }
    *up.blob_gets
        .lock()
        .unwrap()
        .entry(digest.clone())
        .or_default() += 1;
    tokio::time::sleep(up.delay).await;
    match (up.blobs.get(&digest), &up.corrupt) {
        (Some(_), Some(corrupt)) => corrupt.clone().into_response(),
        (Some(bytes), None) => bytes.clone().into_response(),
        (None, _) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn manifest(
    State(up): State<Arc<Upstream>>,
    Path((_, reference)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = up.refuse(&headers) {
        return refusal;
    }
    up.manifest_gets.fetch_add(1, Ordering::SeqCst);
    if up.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match up.manifests.get(&reference) {
        Some((media_type, bytes)) => {
            ([(header::CONTENT_TYPE, media_type.clone())], bytes.clone()).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn token(State(up): State<Arc<Upstream>>, headers: HeaderMap) -> Response {
    up.token_gets.fetch_add(1, Ordering::SeqCst);
    // alice:pw
    if headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v == "Basic YWxpY2U6cHc=")
    {
        return r#"{"token":"good-token","expires_in":300}"#.into_response();
    }
    StatusCode::UNAUTHORIZED.into_response()
}

/// Serve `up` on a loopback port; returns its URL.
pub(super) async fn serve(up: Arc<Upstream>) -> String {
    let app = Router::new()
        .route(
            "/v2/{repo}/{repo2}/blobs/{digest}",
            get(|s, Path((a, b, d)): Path<(String, String, String)>, h| {
                blob(s, Path((format!("{a}/{b}"), d)), h)
            }),
        )
        .route(
            "/v2/{repo}/{repo2}/manifests/{reference}",
            get(|s, Path((a, b, r)): Path<(String, String, String)>, h| {
                manifest(s, Path((format!("{a}/{b}"), r)), h)
            }),
        )
        .route("/token", get(token))
        .with_state(up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

pub(super) fn mirror(
    dir: &std::path::Path,
    url: &str,
    max_bytes: u64,
    credentials: Option<std::path::PathBuf>,
) -> Mirror {
    let config = MirrorConfig {
        upstreams: vec![parse_upstream(url).unwrap()],
        credentials_file: credentials,
        max_bytes,
        ..MirrorConfig::default()
    };
    Mirror::open(&config, dir).unwrap()
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn a_digest_mismatch_is_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), 1 << 20).unwrap();
    let mut writer = store.begin(Digest::of(b"expected")).await.unwrap();
    writer.write(b"something else").await.unwrap();
    let err = writer.commit().await.unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("nothing was kept"));
    assert!(store
        .open_blob(&Digest::of(b"expected"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(files_in(&dir.path().join("tmp")), 0);
    assert_eq!(files_in(&dir.path().join("blobs/sha256")), 0);
    // A blob larger than the whole store is refused as it arrives.
    let small = BlobStore::open(&dir.path().join("small"), 10).unwrap();
    let mut writer = small.begin(Digest::of(&[0; 11])).await.unwrap();
    writer.write(&[0; 6]).await.unwrap();
    let err = writer.write(&[0; 5]).await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { limit: 10 }), "{err}");
    drop(writer);
    assert_eq!(files_in(&dir.path().join("small/tmp")), 0);
    // A writer dropped half-way leaves nothing either.
    let mut writer = store.begin(Digest::of(b"x")).await.unwrap();
    writer.write(b"half").await.unwrap();
    drop(writer);
    assert_eq!(files_in(&dir.path().join("tmp")), 0);
}

#[tokio::test]
async fn concurrent_writers_of_one_blob_both_land_and_it_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), 1 << 20).unwrap();
    let bytes = vec![7u8; 100_000];
    let digest = Digest::of(&bytes);
    let mut a = store.begin(digest.clone()).await.unwrap();
    let mut b = store.begin(digest.clone()).await.unwrap();
    for chunk in bytes.chunks(1000) {
        a.write(chunk).await.unwrap();
        b.write(chunk).await.unwrap();
    }
    let (a, b) = tokio::join!(a.commit(), b.commit());
    assert_eq!((a.unwrap(), b.unwrap()), (100_000, 100_000));
    assert_eq!(store.usage(), (100_000, 1));
    let mut reader = store.open_blob(&digest).await.unwrap().unwrap();
    let mut read = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut read)
        .await
        .unwrap();
    assert_eq!(read, bytes);
}

async fn put(store: &BlobStore, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    let mut writer = store.begin(digest.clone()).await.unwrap();
    writer.write(bytes).await.unwrap();
    writer.commit().await.unwrap();
    digest
}

#[tokio::test]
async fn eviction_takes_the_least_recently_used_never_one_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), 25).unwrap();
    let a = put(&store, &[1; 10]).await;
    let b = put(&store, &[2; 10]).await;
    let held = store.open_blob(&a).await.unwrap().unwrap(); // a: used last, and held
    let c = put(&store, &[3; 10]).await; // 30 > 25: b goes
    assert!(store.open_blob(&b).await.unwrap().is_none());
    assert!(!dir.path().join("blobs/sha256").join(b.hex()).exists());
    let d = put(&store, &[4; 10]).await; // a is held, so c goes
    assert!(store.open_blob(&c).await.unwrap().is_none());
    drop(held);
    let e = put(&store, &[5; 10]).await; // a is free now and the oldest
    assert!(store.open_blob(&a).await.unwrap().is_none());
    assert!(store.open_blob(&d).await.unwrap().is_some());
    assert!(store.open_blob(&e).await.unwrap().is_some());
    // A restart finds what is on disk.
    drop(store);
    let store = BlobStore::open(dir.path(), 25).unwrap();
    assert_eq!(store.usage(), (20, 2));
}

#[tokio::test]
async fn concurrent_requests_for_a_blob_share_one_upstream_fetch() {
    let bytes = Bytes::from(vec![9u8; 300_000]);
    let digest = Digest::of(&bytes);
    let mut up = Upstream {
        delay: Duration::from_millis(300),
        ..Upstream::default()
    };
    up.blobs.insert(digest.to_string(), bytes.clone());
    let up = Arc::new(up);
    let url = serve(up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path(), &url, 1 << 30, None);
    let route = mirror.route("pos/web").unwrap();
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let (mirror, route, digest) = (mirror.clone(), route.clone(), digest.clone());
            tokio::spawn(async move { mirror.blob(&route, &digest).await.map(|r| r.size) })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap(), 300_000);
    }
    assert_eq!(up.gets(&digest), 1, "one upstream fetch for 16 requests");
    mirror.blob(&route, &digest).await.unwrap();
    assert_eq!(up.gets(&digest), 1, "a later request is a hit");
    let counters = mirror.counters();
    assert_eq!(
        (counters.blob_fetches, counters.upstream_bytes),
        (1, 300_000)
    );
    assert_eq!((counters.hits, counters.misses), (1, 16));
    assert_eq!(counters.stored_blobs, 1);
}

#[tokio::test]
async fn a_corrupted_blob_is_refused_never_kept_and_fetched_again_next_time() {
    let bytes = Bytes::from_static(b"the real layer");
    let digest = Digest::of(&bytes);
    let mut up = Upstream {
        corrupt: Some(Bytes::from_static(b"tampered bytes")),
        ..Upstream::default()
    };
    up.blobs.insert(digest.to_string(), bytes);
    let up = Arc::new(up);
    let url = serve(up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path(), &url, 1 << 30, None);
    let route = mirror.route("pos/web").unwrap();
    for attempt in 1..=2 {
        let err = mirror.blob(&route, &digest).await.unwrap_err();
        let MirrorError::Upstream(upstream) = &err else {
            panic!("{err}")
        };
        assert!(
            matches!(
                **upstream,
                UpstreamError::Store {
                    source: StoreError::DigestMismatch { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert_eq!(up.gets(&digest), attempt);
    }
    assert_eq!(mirror.counters().refused, 2);
    assert_eq!(files_in(&dir.path().join("mirror/blobs/sha256")), 0);
    assert_eq!(files_in(&dir.path().join("mirror/tmp")), 0);
}

#[tokio::test]
async fn a_missing_blob_or_repository_is_unknown() {
    let url = serve(Arc::new(Upstream::default())).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path(), &url, 1 << 30, None);
    let route = mirror.route("pos/web").unwrap();
    let err = mirror
        .blob(&route, &Digest::of(b"absent"))
        .await
        .unwrap_err();
    assert!(matches!(err, MirrorError::BlobUnknown), "{err}");
    let err = mirror
        .manifest(&route, &Reference::parse("v1").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, MirrorError::ManifestUnknown(_)), "{err}");
    assert!(matches!(
        mirror.route("other.example:5000/x/y"),
        Err(MirrorError::NameUnknown(_))
    ));
    let host = url.trim_start_matches("http://");
    assert_eq!(mirror.route(&format!("{host}/pos/web")).unwrap(), route);
    assert!(matches!(mirror.route("../etc"), Err(MirrorError::Name(_))));
}

#[tokio::test]
async fn tags_are_cached_for_their_ttl_and_media_types_pass_through() {
    let body = Bytes::from_static(br#"{"schemaVersion":2,"config":{}}"#);
    let media_type = "application/vnd.docker.distribution.manifest.v2+json";
    let mut up = Upstream::default();
    up.manifests
        .insert("v1".into(), (media_type.into(), body.clone()));
    up.manifests.insert(
        Digest::of(b"another manifest").to_string(),
        (media_type.into(), body.clone()),
    );
    up.manifests.insert(
        "huge".into(),
        (media_type.into(), Bytes::from(vec![b' '; 5 << 20])),
    );
    let up = Arc::new(up);
    let url = serve(up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror(dir.path(), &url, 1 << 30, None);
    let route = mirror.route("pos/web").unwrap();
    let tag = Reference::parse("v1").unwrap();
    let first = mirror.manifest(&route, &tag).await.unwrap();
    assert_eq!(
        (first.media_type.as_str(), &first.bytes, &first.digest),
        (media_type, &body, &Digest::of(&body))
    );
    mirror.manifest(&route, &tag).await.unwrap();
    mirror
        .manifest(&route, &Reference::Digest(first.digest.clone()))
        .await
        .unwrap();
    assert_eq!(
        up.manifest_gets.load(Ordering::SeqCst),
        1,
        "the tag and the digest are served from the mirror"
    );
    // A manifest asked for by digest must be those bytes.
    let lie = Reference::Digest(Digest::of(b"another manifest"));
    let err = mirror.manifest(&route, &lie).await.unwrap_err();
    assert!(
        matches!(&err, MirrorError::Upstream(e) if matches!(**e, UpstreamError::ManifestDigest { .. })),
        "{err}"
    );
    assert_eq!(mirror.counters().refused, 1);
    let err = mirror
        .manifest(&route, &Reference::parse("huge").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MirrorError::Upstream(e) if matches!(**e, UpstreamError::TooLarge { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn a_restarted_hub_serves_a_tags_last_image_while_the_upstream_is_down() {
    let layer = Digest::of(b"layer");
    let body = Bytes::from(format!(
        r#"{{"schemaVersion":2,"layers":[{{"digest":"{layer}","size":5}}]}}"#
    ));
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    let mut up = Upstream::default();
    up.manifests
        .insert("v1".into(), (media_type.into(), body.clone()));
    let up = Arc::new(up);
    let url = serve(up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let tag = Reference::parse("v1").unwrap();
    let before = mirror(dir.path(), &url, 1 << 30, None);
    let route = before.route("pos/web").unwrap();
    before.manifest(&route, &tag).await.unwrap();
    drop(before);

    up.down.store(true, Ordering::SeqCst);
    let restarted = mirror(dir.path(), &url, 1 << 30, None);
    let served = restarted.manifest(&route, &tag).await.unwrap();
    assert_eq!(served.bytes, body);
    assert_eq!(
        up.manifest_gets.load(Ordering::SeqCst),
        2,
        "the restarted hub asked the upstream first: a saved tag is never fresh"
    );
    let references = restarted.known_references(&route).await;
    assert!(
        references.iter().any(|r| r.blobs.contains(&layer)),
        "the grant look-up finds the tag's blobs after the restart: {references:?}"
    );
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_the_credentials_and_kept() {
    let bytes = Bytes::from_static(b"private layer");
    let digest = Digest::of(&bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut up = Upstream {
        bearer: Some(format!("http://{addr}/token")),
        ..Upstream::default()
    };
    up.blobs.insert(digest.to_string(), bytes.clone());
    let other = Digest::of(b"second");
    up.blobs
        .insert(other.to_string(), Bytes::from_static(b"second"));
    let up = Arc::new(up);
    let app_up = up.clone();
    // Serve on the port the realm names.
    let url = {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let app = Router::new()
            .route(
                "/v2/{a}/{b}/blobs/{digest}",
                get(|s, Path((a, b, d)): Path<(String, String, String)>, h| {
                    blob(s, Path((format!("{a}/{b}"), d)), h)
                }),
            )
            .route("/token", get(token))
            .with_state(app_up);
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    };
    let dir = tempfile::tempdir().unwrap();
    let anonymous = mirror(&dir.path().join("a"), &url, 1 << 30, None);
    let route = anonymous.route("pos/web").unwrap();
    let err = anonymous.blob(&route, &digest).await.unwrap_err();
    assert!(err.to_string().contains("--registry-credentials"), "{err}");
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, format!("{addr} alice pw\n")).unwrap();
    let mirror = mirror(&dir.path().join("b"), &url, 1 << 30, Some(credentials));
    assert_eq!(
        mirror.blob(&route, &digest).await.unwrap().size,
        bytes.len() as u64
    );
    let tokens_before = up.token_gets.load(Ordering::SeqCst);
    mirror.blob(&route, &other).await.unwrap();
    assert_eq!(
        up.token_gets.load(Ordering::SeqCst),
        tokens_before,
        "the token is reused for the scope"
    );
}
