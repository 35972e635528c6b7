//! The hub-to-hub link (issue #18): a request that reaches this hub for a device another hub of
//! the store holds is sent on to that hub's admin API, under `/peer/v1/` instead of `/api/`.
//!
//! The link is HTTPS with mutual TLS on the fleet's shared CA (`crate::shared_ca`): this hub
//! presents a client certificate for `urn:outpost:hub:<its name>`, issued by itself from the
//! shared CA, and checks that the other hub's certificate chains to the same CA and carries
//! [`HUB_SERVER_NAME`], as agents do, whatever address it registered. The receiving hub serves
//! `/peer/v1/` only to a hub certificate and never forwards such a request again, so a device that
//! moved meanwhile gets a clear "offline" rather than a loop.
//!
//! The admin was authenticated, authorised and audited by the hub that received the request;
//! the bearer token and cookies do not travel on (the other hub trusts its peer's certificate,
//! not the admin's secrets). A credential withdrawn while a request runs ends it here, which
//! closes the link's connection and so the other hub's stream to the device.
//!
//! One connection per request: a forwarded call is one extra TLS handshake on the LAN (a few
//! milliseconds), next to a device's round trip on cellular or satellite; hijacked connections
//! (`exec -it`) need a connection of their own anyway.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use outpost_certs::{ca_client_config, ClientRole, HubPki, PkiError, HUB_SERVER_NAME};
use outpost_protocol::EndpointId;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::context::HubContext;
use crate::hubs::Peer;
use crate::store::{hubs, StoreError};

/// The path prefix the other hub serves forwarded requests under, in place of `/api/`.
pub const PEER_PREFIX: &str = "/peer/v1/";

/// The header naming the hub a request was forwarded by, for the receiving hub's logs.
pub const FORWARDED_BY: &str = "outpost-forwarded-by";

/// How long the other hub has to accept the TCP connection and finish the TLS handshake: hubs
/// share a LAN or a site-to-site link; a peer that does not answer in this time is down.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// Lifetime of the certificate this hub presents to the others. It is reissued from the CA
/// (in memory, one signature) after [`REISSUE_AFTER`], long before it expires.
const CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
const REISSUE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why a request could not be carried to the hub holding the device.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The hub's certificate for the link could not be issued.
    #[error("this hub's certificate for the hub-to-hub link: {0}")]
    Certificate(#[from] PkiError),
    /// The other hub registered a URL this hub cannot dial.
    #[error("hub {hub} registered {url:?} as its API, which is not an https://host:port URL (its `serve --peer-url`)")]
    BadUrl {
        /// The other hub.
        hub: String,
        /// What it registered.
        url: String,
    },
    /// The other hub could not be reached or refused the link.
    #[error("hub {hub} could not be reached at {url} (its `serve --peer-url`): {reason}; it holds the device or coordinates the rollout asked for, so ask again once it is back or after its devices move (30 s after its last heartbeat)")]
    Unreachable {
        /// The other hub.
        hub: String,
        /// Its API.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// The live hub that holds `id`'s session, if another one than this does. (The store says who
/// holds it; this hub's last heartbeat says whether that hub is alive and where its API is.)
pub(crate) async fn holder(ctx: &HubContext, id: EndpointId) -> Result<Option<Peer>, StoreError> {
    let holder = ctx.store.read(move |c| hubs::holder(c, id)).await?;
    Ok(holder
        .filter(|h| *h != ctx.hubs.id)
        .and_then(|h| ctx.hubs.peer(h)))
}

/// This hub's side of the link: its client certificate, reissued as it ages.
#[derive(Debug)]
pub struct PeerLink {
    name: String,
    current: RwLock<(Arc<rustls::ClientConfig>, Instant)>,
}

impl PeerLink {
    /// The link for hub `name`, with a certificate from `pki`'s CA.
    pub fn new(pki: &HubPki, name: &str) -> Result<Self, PeerError> {
        Ok(Self {
            name: name.to_owned(),
            current: RwLock::new((client_config(pki, name)?, Instant::now())),
        })
    }

    /// The TLS config to dial with, reissuing the certificate if it is due.
    fn config(&self, pki: &HubPki) -> Result<Arc<rustls::ClientConfig>, PeerError> {
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.1.elapsed() < REISSUE_AFTER {
                return Ok(current.0.clone());
            }
        }
        let fresh = client_config(pki, &self.name)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (fresh.clone(), Instant::now());
        Ok(fresh)
    }

    /// Send `request`, whose path starts with `/api/`, to `peer` under [`PEER_PREFIX`]. The
    /// answer's body streams; an upgrade answered 101 can be taken with `hyper::upgrade::on`.
    pub async fn send(
        &self,
        pki: &HubPki,
        peer: &Peer,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, PeerError> {
        let unreachable = |reason: String| PeerError::Unreachable {
            hub: peer.name.clone(),
            url: peer.url.clone(),
            reason,
        };
        let authority = authority(peer)?;
        let tls = TlsConnector::from(self.config(pki)?);
        let server = ServerName::try_from(HUB_SERVER_NAME).expect("a valid DNS name");
        let connect = async {
            let tcp = TcpStream::connect(&authority).await?;
            tcp.set_nodelay(true)?;
            tls.connect(server, tcp).await
        };
        let stream = tokio::time::timeout(CONNECT_DEADLINE, connect)
            .await
            .map_err(|_| unreachable(format!("no connection within {CONNECT_DEADLINE:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!("hub-to-hub connection ended: {e}");
            }
        });
        let request = self.outbound(request, &authority);
        sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }

    /// The request as the other hub takes it: `/peer/v1/` for `/api/`, this hub named, the
    /// admin's credentials left behind. (The path came from a valid URI, so the new one parses;
    /// were it not to, the bare prefix gets the other hub's "no such route".)
    fn outbound(&self, request: Request<Body>, authority: &str) -> Request<Body> {
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let rest = path_and_query
            .strip_prefix("/api/")
            .unwrap_or(path_and_query.trim_start_matches('/'));
        parts.uri = format!("{PEER_PREFIX}{rest}")
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static(PEER_PREFIX));
        parts.headers.remove(header::AUTHORIZATION);
        parts.headers.remove(header::COOKIE);
        if let Ok(host) = HeaderValue::from_str(authority) {
            parts.headers.insert(header::HOST, host);
        }
        if let Ok(name) = HeaderValue::from_str(&self.name) {
            parts.headers.insert(FORWARDED_BY, name);
        }
        Request::from_parts(parts, body)
    }
}

/// A TLS client config presenting a fresh hub certificate for `name`, trusting only the CA.
fn client_config(pki: &HubPki, name: &str) -> Result<Arc<rustls::ClientConfig>, PeerError> {
    let role = ClientRole::Hub(name.to_owned());
    let (issued, key_pem) = pki.issue_client_cert_with_key(&role, CERT_VALIDITY)?;
    let key = outpost_certs::private_key_from_pem(&key_pem)?;
    let config = ca_client_config(
        &pki.ca_cert_pem(),
        Some((vec![issued.der], key)),
        &[b"http/1.1"],
    )?;
    Ok(Arc::new(config))
}

/// `host:port` of a peer's `https://` URL.
fn authority(peer: &Peer) -> Result<String, PeerError> {
    let bad = || PeerError::BadUrl {
        hub: peer.name.clone(),
        url: peer.url.clone(),
    };
    let uri: Uri = peer.url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    let port = authority.port_u16().ok_or_else(bad)?;
    Ok(format!("{}:{port}", authority.host()))
}

/// Whether `url` is one [`PeerLink::send`] can dial: for `serve --peer-url`.
pub fn check_url(url: &str) -> Result<(), PeerError> {
    authority(&Peer {
        name: "this hub".to_owned(),
        url: url.to_owned(),
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(url: &str) -> Peer {
        Peer {
            name: "hub-c".to_owned(),
            url: url.to_owned(),
        }
    }

    #[test]
    fn a_peer_url_is_https_with_a_port() {
        assert_eq!(
            authority(&peer("https://127.0.0.1:8443")).unwrap(),
            "127.0.0.1:8443"
        );
        assert_eq!(
            authority(&peer("https://[::1]:8443/")).unwrap(),
            "[::1]:8443"
        );
        for bad in [
            "http://127.0.0.1:8443",
            "https://hub.example",
            "hub:8443",
            "",
        ] {
            assert!(
                matches!(authority(&peer(bad)), Err(PeerError::BadUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_forwarded_request_goes_under_the_peer_prefix_without_the_admins_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
        let link = PeerLink::new(&pki, "hub-a").unwrap();
        let request = Request::builder()
            .uri("/api/endpoints/7/docker/v1.43/containers/json?all=1")
            .header(header::AUTHORIZATION, "Bearer secret")
            .header(header::COOKIE, "session=1")
            .header("x-registry-auth", "e30=")
            .body(Body::empty())
            .unwrap();
        let out = link.outbound(request, "127.0.0.1:8443");
        assert_eq!(
            out.uri(),
            "/peer/v1/endpoints/7/docker/v1.43/containers/json?all=1"
        );
        assert!(out.headers().get(header::AUTHORIZATION).is_none());
        assert!(out.headers().get(header::COOKIE).is_none());
        assert_eq!(out.headers()["x-registry-auth"], "e30=");
        assert_eq!(out.headers()[FORWARDED_BY], "hub-a");
        assert_eq!(out.headers()[header::HOST], "127.0.0.1:8443");
    }
}
