//! The mirror's client of its upstream registries: the pull side of the OCI distribution API over
//! the workspace's reqwest (rustls on ring, the system's CA store for `https://` upstreams).
//!
//! Not `oci-client`: its raw manifest pull returns no `Content-Type` (which the mirror must pass
//! through unchanged), reads manifest bodies without a size limit, and it brings reqwest 0.13 with
//! aws-lc-rs beside the workspace's reqwest 0.12 on ring. What the mirror needs of the API is three
//! GETs and the auth dance ([`auth`]), here with every body bounded.

pub mod auth;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use reqwest::Url;
use thiserror::Error;
use tokio::time::Instant;

use super::config::{authority, Credentials};
use super::digest::Digest;
use super::manifests::{valid_media_type, Manifest, MAX_MANIFEST_BYTES};
use super::name::{docker_hub_path, is_docker_hub, Reference, RepoPath};
use super::store::{BlobWriter, StoreError};
use auth::{parse_challenge, Auth};

/// What the mirror accepts as a manifest, in the order it prefers: OCI and Docker schema 2, image
/// manifests and indexes / manifest lists (an engine picks its platform from an index itself).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// How long a connection to an upstream may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// How long an upstream may leave a transfer silent before it is given up.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why an upstream did not deliver. Every message names the upstream's host, never a credential.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// No connection, a reset, a timeout: try again later, or check the `--registry` URL.
    #[error("cannot reach upstream registry {host}: {source}")]
    Http {
        /// The upstream.
        host: String,
        /// The failure.
        source: reqwest::Error,
    },
    /// The upstream does not have it.
    #[error("upstream registry {host} has no {what}")]
    NotFound {
        /// The upstream.
        host: String,
        /// What was asked for.
        what: String,
    },
    /// It wants credentials the mirror lacks, or refused them: check `--registry-credentials`.
    #[error("upstream registry {host} refused the mirror's credentials (or needs some): check --registry-credentials")]
    Unauthorized {
        /// The upstream.
        host: String,
    },
    /// Another status.
    #[error("upstream registry {host} answered {status} for {what}")]
    Status {
        /// The upstream.
        host: String,
        /// The HTTP status.
        status: u16,
        /// What was asked for.
        what: String,
    },
    /// A body past the mirror's bound for its kind: refused before it was read.
    #[error("upstream registry {host} sent a {what} larger than {limit} bytes; refused")]
    TooLarge {
        /// The upstream.
        host: String,
        /// What kind of body.
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// A body or header that does not parse.
    #[error("upstream registry {host} sent a malformed {what}: {detail}")]
    Malformed {
        /// The upstream.
        host: String,
        /// What kind of body.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A manifest whose bytes are not the digest asked for (or announced): nothing was kept.
    #[error("upstream registry {host} sent a manifest whose digest is {actual}, not {expected}; refused, nothing was kept")]
    ManifestDigest {
        /// The upstream.
        host: String,
        /// The digest asked for or announced.
        expected: String,
        /// The digest of the bytes.
        actual: Digest,
    },
    /// Writing to the store failed, or a blob's bytes were not its digest.
    #[error("blob from upstream registry {host}: {source}")]
    Store {
        /// The upstream.
        host: String,
        /// The failure.
        source: StoreError,
    },
}

/// One upstream registry.
#[derive(Debug)]
pub struct Upstream {
    base: Url,
    host: String,
    http: reqwest::Client,
    auth: Auth,
}

impl Upstream {
    /// A client of the registry at `base` (`https://host[:port]/`).
    pub fn new(base: Url, credentials: Option<Credentials>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config().map_err(|e| format!("TLS: {e}"))?)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!(
                "outpost-hub/",
                env!("CARGO_PKG_VERSION"),
                " (mirror)"
            ))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            host: authority(&base),
            base,
            http,
            auth: Auth::new(credentials),
        })
    }

    /// `host[:port]`, as image names and the credentials file write it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The manifest `reference` of `repo`, its bytes and media type as sent, its digest checked.
    pub async fn manifest(
        &self,
        repo: &RepoPath,
        reference: &Reference,
    ) -> Result<Manifest, UpstreamError> {
        let what = format!("manifest {}:{}", repo.as_str(), reference.as_str());
        let path = format!("manifests/{}", reference.as_str());
        let response = self.get(repo, &path, Some(MANIFEST_ACCEPT), &what).await?;
        let headers = response.headers().clone();
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, &self.host, "manifest").await?;
        let actual = Digest::of(&bytes);
        let announced = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        let expected = match reference {
            Reference::Digest(digest) => Some(digest.as_str()),
            Reference::Tag(_) => announced.filter(|d| d.starts_with("sha256:")),
        };
        if let Some(expected) = expected.filter(|e| *e != actual.as_str()) {
            return Err(UpstreamError::ManifestDigest {
                host: self.host.clone(),
                expected: expected.to_owned(),
                actual,
            });
        }
        let media_type = self.media_type(&headers, &bytes)?;
        Ok(Manifest {
            digest: actual,
            media_type,
            bytes,
        })
    }

    /// Stream blob `digest` of `repo` into `sink` (which checks the digest at its commit).
    pub async fn blob(
        &self,
        repo: &RepoPath,
        digest: &Digest,
        sink: &mut BlobWriter,
    ) -> Result<(), UpstreamError> {
        let what = format!("blob {digest} in {}", repo.as_str());
        let mut response = self
            .get(repo, &format!("blobs/{digest}"), None, &what)
            .await?;
        let http = |source| UpstreamError::Http {
            host: self.host.clone(),
            source,
        };
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            sink.write(&chunk)
                .await
                .map_err(|source| UpstreamError::Store {
                    host: self.host.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The `Content-Type` the upstream sent; else the manifest's own `mediaType` field.
    fn media_type(
        &self,
        headers: &header::HeaderMap,
        bytes: &Bytes,
    ) -> Result<String, UpstreamError> {
        let sent = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Some(sent) = sent.filter(|t| {
            valid_media_type(t) && !t.starts_with("application/json") && !t.starts_with("text/")
        }) {
            return Ok(sent.to_owned());
        }
        #[derive(serde::Deserialize)]
        struct Versioned {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let malformed = |detail: String| UpstreamError::Malformed {
            host: self.host.clone(),
            what: "manifest",
            detail,
        };
        let versioned: Versioned =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        versioned
            .media_type
            .filter(|t| valid_media_type(t))
            .ok_or_else(|| malformed("no media type in its Content-Type or body".into()))
    }

    /// `GET /v2/<repo>/<path>`, answering one authentication challenge.
    async fn get(
        &self,
        repo: &RepoPath,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = self.url(repo, path)?;
        let scope = format!("repository:{}:pull", repo.as_str());
        let mut authorization = self.auth.header(&scope, Instant::now());
        for attempt in 0..2 {
            let response = self.send(&url, accept, authorization.clone()).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return self.check(response, what);
            }
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(parse_challenge);
            match challenge {
                Some(Ok(challenge)) if attempt == 0 => {
                    authorization = Some(
                        self.auth
                            .answer(&self.http, &self.host, challenge, &scope)
                            .await?,
                    );
                }
                Some(Err(detail)) => {
                    return Err(UpstreamError::Malformed {
                        host: self.host.clone(),
                        what: "authentication challenge",
                        detail,
                    })
                }
                _ => break,
            }
        }
        Err(UpstreamError::Unauthorized {
            host: self.host.clone(),
        })
    }

    async fn send(
        &self,
        url: &Url,
        accept: Option<&str>,
        authorization: Option<HeaderValue>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self.http.get(url.clone());
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.send().await.map_err(|source| UpstreamError::Http {
            host: self.host.clone(),
            source,
        })
    }

    fn check(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        match response.status() {
            status if status.is_success() => Ok(response),
            StatusCode::NOT_FOUND => Err(UpstreamError::NotFound {
                host: self.host.clone(),
                what: what.to_owned(),
            }),
            StatusCode::FORBIDDEN => Err(UpstreamError::Unauthorized {
                host: self.host.clone(),
            }),
            status => Err(UpstreamError::Status {
                host: self.host.clone(),
                status: status.as_u16(),
                what: what.to_owned(),
            }),
        }
    }

    fn url(&self, repo: &RepoPath, path: &str) -> Result<Url, UpstreamError> {
        let repo = match is_docker_hub(&self.host) {
            true => docker_hub_path(repo.as_str()),
            false => repo.as_str().into(),
        };
        self.base
            .join(&format!("v2/{repo}/{path}"))
            .map_err(|e| UpstreamError::Malformed {
                host: self.host.clone(),
                what: "URL",
                detail: e.to_string(),
            })
    }
}

/// Read a response's body, refusing more than `limit` bytes (by its length if announced, else as
/// it arrives).
async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
    host: &str,
    what: &'static str,
) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::TooLarge {
        host: host.to_owned(),
        what,
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| UpstreamError::Http {
            host: host.to_owned(),
            source,
        })?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// TLS for `https://` upstreams (and webhook receivers): the system's CA store (where an operator
/// installs a private registry's CA), rustls on ring like the rest of the hub.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    tracing::debug!(
        added,
        ignored,
        "mirror: system CA certificates for https upstreams"
    );
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(base: &str, repo: &str) -> String {
        let upstream = Upstream::new(Url::parse(base).unwrap(), None).unwrap();
        let repo = RepoPath::parse(repo).unwrap();
        upstream.url(&repo, "manifests/1.25").unwrap().to_string()
    }

    #[test]
    fn docker_hub_is_asked_for_official_images_under_library() {
        assert_eq!(
            url_of("https://registry-1.docker.io/", "nginx"),
            "https://registry-1.docker.io/v2/library/nginx/manifests/1.25"
        );
        assert_eq!(
            url_of("https://registry-1.docker.io/", "grafana/agent"),
            "https://registry-1.docker.io/v2/grafana/agent/manifests/1.25"
        );
        assert_eq!(
            url_of("https://registry.example:5000/", "nginx"),
            "https://registry.example:5000/v2/nginx/manifests/1.25"
        );
    }
}
