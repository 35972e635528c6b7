//! The Docker proxy: `/api/endpoints/{id}/docker/{docker api path}` on the admin listener.
//!
//! Each proxied request gets its own QUIC bidirectional stream to the device, opened after the
//! device is summoned: the stream preface and, right behind it without waiting a round trip,
//! HTTP/1.1 spoken by a hyper client over the stream with the route prefix and what must not reach
//! the device ([`headers`]) stripped; the agent's
//! answer to the preface is read before the response ([`reply`]). Upgrades (`docker exec -it`, `attach`, `run -it`)
//! are carried by joining the client's upgraded connection to the stream's. Bodies stream both ways
//! through hyper with its bounded buffers; nothing is collected in memory.
//!
//! A client that goes away drops its response body; hyper then drops the stream, QUIC resets it,
//! and the agent closes the matching engine connection.
//!
//! The API's route (`crate::api`: authentication, canonical ids, the status of each
//! [`ProxyError`]) calls [`forward`]; nothing here knows the API, so the dependency runs one way.

mod headers;
pub(crate) mod ping;
mod relay;
mod reply;
mod slots;
mod upgrade;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use outpost_protocol::stream::{self, StreamHeader, StreamKind, MAX_STREAMS_PER_DEVICE};
use outpost_protocol::EndpointId;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::context::HubContext;
use crate::hubs::Peer;
use crate::peers::PeerError;
use crate::registry::{LiveSession, Status, SummonError};
use crate::store::{endpoints, StoreError};
use crate::traffic::counted::Counted;
use crate::traffic::tally::Class;

/// How long to wait for stream credit from a device the hub believes active before summoning again.
const CREDIT_DEADLINE: Duration = Duration::from_secs(2);
/// How long to wait for the agent to answer a stream preface.
const STREAM_REPLY_DEADLINE: Duration = Duration::from_secs(30);

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// Why a request could not be carried to the device's engine. Each message says what the admin
/// can do; the API answers it with a fitting status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No endpoint has this id.
    #[error("endpoint {0} does not exist")]
    NoEndpoint(EndpointId),
    /// The device has no live session, or its check-ins stopped.
    #[error("endpoint {id} ({name}) is offline: the device is not connected to the hub; it will be reachable when its agent reconnects")]
    Offline {
        /// The endpoint.
        id: EndpointId,
        /// Its name.
        name: String,
    },
    /// The device could not be summoned.
    #[error(transparent)]
    Summon(#[from] SummonError),
    /// The device serves its most requests at once already.
    #[error("endpoint {0} already has {max} Docker requests in flight, the most one device serves at once; retry when some finish", max = MAX_STREAMS_PER_DEVICE)]
    DeviceBusy(EndpointId),
    /// The hub carries its most proxied requests at once already (`--max-proxy-streams`).
    #[error("the hub is carrying its maximum of {0} proxied Docker requests; retry shortly")]
    HubBusy(usize),
    /// The device's connection failed while the stream was opened.
    #[error("endpoint {id} disconnected: {reason}")]
    Disconnected {
        /// The endpoint.
        id: EndpointId,
        /// The connection's error.
        reason: String,
    },
    /// A summoned device granted no stream in time.
    #[error("endpoint {id} granted no stream within {within:?}")]
    NoStream {
        /// The endpoint.
        id: EndpointId,
        /// How long the hub waited.
        within: Duration,
    },
    /// The device's engine (or the agent in front of it) did not answer as HTTP; how, in words.
    #[error("{0}")]
    Engine(String),
    /// The path spells the endpoint id other than canonically (percent-encoded digits).
    #[error("no such API route (endpoint ids are decimal without leading zeros)")]
    NotCanonical,
    /// What follows `/docker/` is not a valid request target.
    #[error("bad Docker API path: {0}")]
    BadPath(axum::http::uri::InvalidUri),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another hub holds the device and could not be reached.
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// Proxy one request to endpoint `id`'s engine; `rest` is its path after `/docker/`. A hijacked
/// connection (`exec -it`) keeps `closed` until it closes, then calls it with the bytes that
/// crossed from the client and to it; it closes when `withdrawn` resolves (its credential was
/// revoked).
pub(crate) async fn forward(
    ctx: &Arc<HubContext>,
    id: EndpointId,
    rest: &str,
    request: Request,
    withdrawn: impl Future<Output = ()> + Send + 'static,
    closed: impl FnOnce(u64, u64) + Send + 'static,
) -> Result<Response, ProxyError> {
    match locate(ctx, id).await? {
        Located::Here(session) => {
            let route = Route { base: "/api/", id };
            serve_here(ctx, session, route, rest, request, withdrawn, closed).await
        }
        Located::At(peer) => relay::relay(ctx, &peer, request, withdrawn, closed).await,
    }
}

/// Proxy a request another hub forwarded ([`crate::peers`]) to a device this hub holds. It is
/// never forwarded again: a device that moved meanwhile is offline here, and says so.
pub(crate) async fn forward_from_peer(
    ctx: &Arc<HubContext>,
    id: EndpointId,
    rest: &str,
    request: Request,
) -> Result<Response, ProxyError> {
    let session = match locate(ctx, id).await? {
        Located::Here(session) => session,
        Located::At(_) => return Err(offline(ctx, id).await),
    };
    let route = Route {
        base: crate::peers::PEER_PREFIX,
        id,
    };
    serve_here(
        ctx,
        session,
        route,
        rest,
        request,
        std::future::pending(),
        |_, _| {},
    )
    .await
}

/// Where a request for a device goes.
enum Located {
    /// This hub holds its session.
    Here(Arc<LiveSession>),
    /// Another live hub of the store does.
    At(Peer),
}

/// The route a request came in on: its path is `{base}endpoints/{id}/docker/…`.
#[derive(Clone, Copy)]
struct Route {
    base: &'static str,
    id: EndpointId,
}

/// Proxy one request to the engine of a device this hub holds.
async fn serve_here(
    ctx: &Arc<HubContext>,
    session: Arc<LiveSession>,
    route: Route,
    rest: &str,
    request: Request,
    withdrawn: impl Future<Output = ()> + Send + 'static,
    closed: impl FnOnce(u64, u64) + Send + 'static,
) -> Result<Response, ProxyError> {
    let is_ping = ping::is_ping(request.method(), rest);
    if is_ping {
        if let Some(answer) = session.ping_cache().answer(Instant::now()) {
            return Ok(answer);
        }
    }
    carry(ctx, session, route, request, withdrawn, closed, is_ping).await
}

/// Carry one request to the engine over a stream of its own; a ping's `200 OK` is cached. Once
/// the stream of a request that is not a ping is open, a cached ping answer due for a refresh is
/// refreshed beside it: after it, so that the refresh never takes the one stream a device in
/// standby lends before its summon is answered.
async fn carry(
    ctx: &Arc<HubContext>,
    session: Arc<LiveSession>,
    route: Route,
    mut request: Request,
    withdrawn: impl Future<Output = ()> + Send + 'static,
    closed: impl FnOnce(u64, u64) + Send + 'static,
    is_ping: bool,
) -> Result<Response, ProxyError> {
    let slots = acquire(ctx, &session)?;
    let request_id = NEXT_REQUEST.fetch_add(1, Ordering::Relaxed);
    let (io, outcome) = open_stream(ctx, &session, request_id).await?;
    if !is_ping && session.ping_cache().claim_refresh(Instant::now()) {
        ping::refresh_behind(ctx.clone(), session.clone(), route);
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ProxyError::Engine(format!("HTTP to the device's engine failed: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(request_id, "proxied connection ended: {e}");
        }
    });
    let client_upgrade = upgrade::wants_upgrade(&request).then(|| hyper::upgrade::on(&mut request));
    let outbound = rewrite(request, route, client_upgrade.is_some())?;
    let mut response = match sender.send_request(outbound).await {
        Ok(response) => response,
        Err(e) => {
            let refused = reply::refusal(outcome, STREAM_REPLY_DEADLINE).await;
            return Err(ProxyError::Engine(refused.unwrap_or_else(|| {
                format!("the device's engine did not answer: {e}")
            })));
        }
    };
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, response.status())
    {
        let engine_upgrade = hyper::upgrade::on(&mut response);
        let splice = upgrade::splice(client_upgrade, engine_upgrade, request_id);
        tokio::spawn(async move {
            let (up, down) = tokio::select! {
                crossed = splice => crossed,
                () = withdrawn => {
                    debug!(request_id, "credential withdrawn: hijacked connection closed");
                    (0, 0)
                }
            };
            drop(slots);
            closed(up, down);
        });
        return Ok(response.map(Body::new));
    }
    if is_ping && response.status() == StatusCode::OK {
        session
            .ping_cache()
            .remember(response.headers(), Instant::now());
    }
    Ok(response.map(|body| Body::new(slots::HoldingBody::new(body, slots))))
}

/// The device's live session here, the live hub that holds it, or an immediate answer saying
/// why there is neither. A session whose check-ins stopped (the device lost power without
/// closing) counts as offline too: the request fails at once instead of waiting for a summon
/// that cannot be answered.
async fn locate(ctx: &HubContext, id: EndpointId) -> Result<Located, ProxyError> {
    let live = ctx.registry.get(id).filter(|session| {
        session.view(Instant::now(), ctx.stale_after()).status != Status::Offline
    });
    if let Some(session) = live {
        return Ok(Located::Here(session));
    }
    match crate::peers::holder(ctx, id).await? {
        Some(peer) => Ok(Located::At(peer)),
        None => Err(offline(ctx, id).await),
    }
}

/// Why a device without a live session here or on a live hub cannot be reached.
async fn offline(ctx: &HubContext, id: EndpointId) -> ProxyError {
    match ctx.store.read(move |c| endpoints::find(c, id)).await {
        Ok(None) => ProxyError::NoEndpoint(id),
        Ok(Some(record)) => ProxyError::Offline {
            id,
            name: record.name,
        },
        Err(e) => ProxyError::Store(e),
    }
}

/// Both limits, per device and per hub, or a clear refusal.
fn acquire(ctx: &HubContext, session: &LiveSession) -> Result<slots::Slots, ProxyError> {
    let device = session
        .proxy_slots()
        .try_acquire_owned()
        .map_err(|_| ProxyError::DeviceBusy(session.endpoint))?;
    let hub = ctx
        .proxy_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ProxyError::HubBusy(ctx.max_proxy_streams))?;
    Ok((device, hub))
}

type StreamIo = Counted<tokio::io::Join<reply::AfterReply, quinn::SendStream>>;

/// Open a stream to the device and write its header.
async fn open_stream(
    ctx: &HubContext,
    session: &Arc<LiveSession>,
    request_id: u64,
) -> Result<(StreamIo, watch::Receiver<reply::Outcome>), ProxyError> {
    let lost = |e: &dyn std::fmt::Display| ProxyError::Disconnected {
        id: session.endpoint,
        reason: e.to_string(),
    };
    let opened = match open_beside_summon(ctx, session).await? {
        Some(opened) => opened,
        None => open_when_summoned(ctx, session).await?,
    };
    let (mut send, recv) = opened.map_err(|e| lost(&e))?;
    // A `docker load` body goes out on it, a `docker save` answer comes back.
    outpost_transport::tail_repair::send_bulk(&send);
    outpost_transport::tail_repair::receive_bulk(&recv);
    let header = StreamHeader {
        kind: StreamKind::DockerApi,
        request_id,
    };
    send.write_all(&stream::encode_header(&header))
        .await
        .map_err(|e| lost(&e))?;
    let (recv, outcome) = reply::after_reply(recv, STREAM_REPLY_DEADLINE);
    let io = tokio::io::join(recv, send);
    Ok((
        Counted::new(io, session.clone(), Class::Interactive),
        outcome,
    ))
}

type Opened = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>;

/// Summon the device, and open the stream at once if its agent gives a standby session a stream
/// of credit ([`outpost_protocol::stream::STANDBY_STREAMS`]): the request then crosses beside the
/// summon, a round trip sooner (0.6 s on GEO). The stream, if that is how it went; `None` once
/// the summon was answered first (an older agent's credit comes with its `Ready`) or was not
/// needed (the device is active). A refused summon (a pending device) is answered before any
/// stream is opened. A `quiet` device is only summoned: nothing reaches it before its next
/// check-in, which may be minutes away, past a stream's reply deadline.
async fn open_beside_summon(
    ctx: &HubContext,
    session: &Arc<LiveSession>,
) -> Result<Option<Opened>, ProxyError> {
    let owned = session.clone();
    let timeout = ctx.summon_timeout;
    let mut summon = Box::pin(async move { owned.summon(timeout).await });
    if session.is_quiet() {
        ctx.metrics.summoned(summon.await?);
        return Ok(None);
    }
    let conn = session.connection();
    tokio::select! {
        // The summon first: it refuses a pending device, or sends its frame, before the stream.
        biased;
        waited = &mut summon => {
            ctx.metrics.summoned(waited?);
            Ok(None)
        }
        opened = conn.open_bi() => {
            debug!(endpoint = %session.endpoint, "opened on standby credit, beside the summon");
            // Its `Ready` makes the session active and takes the full windows.
            let summons = ctx.metrics.summons();
            tokio::spawn(async move {
                if let Ok(Some(waited)) = summon.await {
                    summons.observe(waited);
                }
            });
            Ok(Some(opened))
        }
    }
}

/// Open a stream on a summoned device, re-summoning once if it has no stream credit left: its
/// `Standby` may still be in flight when the hub believed it active, and QUIC would wait for
/// credit forever.
async fn open_when_summoned(
    ctx: &HubContext,
    session: &Arc<LiveSession>,
) -> Result<Opened, ProxyError> {
    let conn = session.connection();
    let opened = match tokio::time::timeout(CREDIT_DEADLINE, conn.open_bi()).await {
        Ok(opened) => opened,
        Err(_) => {
            session.enter_standby();
            let waited = session.summon(ctx.summon_timeout).await?;
            ctx.metrics.summoned(waited);
            tokio::time::timeout(ctx.summon_timeout, conn.open_bi())
                .await
                .map_err(|_| ProxyError::NoStream {
                    id: session.endpoint,
                    within: ctx.summon_timeout,
                })?
        }
    };
    Ok(opened)
}

/// Strip the route prefix and what must not reach the device ([`headers`]), keep everything else.
/// The route matched the prefix with the id's canonical spelling; a path that spells it otherwise
/// (percent-encoded digits, which the router decodes) is not forwarded at all.
fn rewrite(request: Request, route: Route, upgrading: bool) -> Result<Request, ProxyError> {
    let (mut parts, body) = request.into_parts();
    let prefix = format!("{}endpoints/{}/docker/", route.base, route.id);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let Some(rest) = path_and_query.strip_prefix(&prefix) else {
        return Err(ProxyError::NotCanonical);
    };
    parts.uri = format!("/{rest}")
        .parse::<Uri>()
        .map_err(ProxyError::BadPath)?;
    headers::strip(&mut parts.headers, upgrading);
    parts
        .headers
        .insert(header::HOST, HeaderValue::from_static("docker"));
    Ok(Request::from_parts(parts, body))
}
