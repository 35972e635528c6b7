//! The admin HTTPS API: bearer-authenticated JSON over TLS (the hub's own certificate).
//!
//! Slow and silent clients are bounded three ways: a TLS handshake deadline, a header-read timeout
//! (hyper needs a timer for it; without one it silently had none) that is also the keep-alive idle
//! timeout, and a connection cap that sheds unauthenticated connections first ([`connections`]).
//!
//! Request and response bodies are `outpost_api`'s types, which the admin CLI, the load tool and
//! the tests read too, so a field cannot change on one side only.
//!
//! Errors are Docker-style `{"message": …}` bodies with a fitting status, so the docker CLI (which
//! will reach devices through this listener) and scripts print something a human can act on.

mod admin_certs;
mod audit;
mod auth;
mod budgets;
pub(crate) mod connections;
pub(crate) mod credentials;
mod docker;
mod endpoints;
mod hubs;
pub(crate) mod id;
mod image_catalog;
mod images;
mod jobs;
mod labels;
mod list;
mod nofile;
mod page;
mod peer;
mod quiet;
mod reset;
mod rollouts;
mod scoped;
mod stacks;
mod tokens;
mod until_revoked;
mod view;
pub(crate) use view::rfc3339_secs;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use outpost_api::ErrorBody;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::context::HubContext;
use crate::registry::SummonError;

pub use connections::{effective_cap, DEFAULT_MAX_API_CONNECTIONS, RESERVED_FDS};
pub use credentials::{new_admin_token, write_admin_token, AdminCredentials};
pub use nofile::{raise_open_file_limit, raise_open_file_limit_and_log, OpenFileLimit};

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// How long a client has to send a request's head once the connection waits for one: after the
/// TLS handshake, and again whenever it falls idle after a response (hyper 1.x restarts the timer
/// there), so this is the keep-alive idle timeout too. A docker CLI writes a head at once; 10 s
/// is ~16 round trips of a geostationary link. A response being streamed (`logs -f`) or an
/// upgraded connection (`exec -it`) waits for no head, so neither is cut however quiet.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's routes.
pub fn router(ctx: Arc<HubContext>) -> Router {
    Router::new()
        .route("/api/endpoints", get(list::list).post(endpoints::create))
        .route(
            "/api/endpoints/{id}",
            get(endpoints::show)
                .patch(labels::patch)
                .delete(endpoints::remove),
        )
        .route("/api/endpoints/{id}/tags", post(labels::add_tag))
        .route("/api/endpoints/{id}/tags/{tag}", delete(labels::remove_tag))
        .route("/api/endpoints/{id}/approve", post(endpoints::approve))
        .route("/api/endpoints/{id}/summon", post(endpoints::summon))
        .route(
            "/api/admin-certs",
            get(admin_certs::list).post(admin_certs::create),
        )
        .route("/api/admin-certs/{cert}", delete(admin_certs::revoke))
        .route("/api/admin-token/rotate", post(admin_certs::rotate_token))
        .route("/api/tokens", get(tokens::list).post(tokens::create))
        .route("/api/audit", get(audit::list))
        .route("/api/tokens/{name}", delete(tokens::revoke))
        .route("/api/endpoints/{id}/reset", post(reset::reset))
        .route("/api/endpoints/{id}/docker/{*rest}", any(docker::handle))
        .route("/api/stacks", get(stacks::list).post(stacks::save))
        .route(
            "/api/stacks/{name}",
            get(stacks::show).delete(stacks::remove),
        )
        .route("/api/rollouts", get(rollouts::list).post(rollouts::start))
        .route("/api/rollouts/{id}", get(rollouts::show))
        .route("/api/rollouts/{id}/{action}", post(rollouts::control))
        .route(
            "/api/images",
            post(images::push)
                .get(image_catalog::list)
                .delete(image_catalog::remove),
        )
        .route("/api/jobs", get(jobs::list).post(jobs::create))
        .route("/api/jobs/{id}", get(jobs::show))
        .route("/api/jobs/{id}/devices/{endpoint}", get(jobs::output))
        .route("/api/jobs/{id}/cancel", post(jobs::cancel))
        .route(
            "/api/budgets",
            get(budgets::list).put(budgets::set).delete(budgets::remove),
        )
        .route(
            "/api/windows",
            get(budgets::list_windows)
                .put(budgets::set_window)
                .delete(budgets::remove_window),
        )
        .route("/api/webhooks", get(webhooks::list).post(webhooks::add))
        .route("/api/webhooks/{id}", delete(webhooks::remove))
        .route("/api/webhooks/deliveries", get(webhooks::deliveries))
        .route(
            "/api/webhooks/thresholds",
            get(webhooks::thresholds).put(webhooks::set_threshold),
        )
        .route("/api/quiet", get(quiet::list).put(quiet::set))
        .route("/api/hubs", get(hubs::list))
        .route("/metrics", get(crate::metrics::http::scrape))
        .merge(crate::mirror::http::router(ctx.mirror.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route") })
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_admin,
        ))
        .merge(peer::router(ctx.clone()))
        .with_state(ctx)
}

/// Serve `app` over TLS on `listener` until the task is dropped, holding at most
/// `max_connections` connections (fewer under a low open-file limit, see [`connections`]).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    ctx: Arc<HubContext>,
    max_connections: usize,
) {
    let acceptor = TlsAcceptor::from(tls);
    let table = Arc::new(connections::ConnectionTable::default());
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let cap = effective_cap(max_connections, nofile::open_file_limit());
        let mut admitted = table.admit(cap);
        let connection = Connection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            ctx: ctx.clone(),
            slot: admitted.slot.clone(),
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = &mut admitted.shed => debug!(%remote, cap, "connection shed: the API connection cap was reached"),
                () = connection.serve(tcp, remote) => {}
            }
        });
    }
}

/// What one accepted connection is served with.
struct Connection {
    acceptor: TlsAcceptor,
    app: Router,
    ctx: Arc<HubContext>,
    slot: connections::ConnectionSlot,
}

impl Connection {
    async fn serve(self, tcp: TcpStream, remote: SocketAddr) {
        let handshake = tokio::time::timeout(TLS_HANDSHAKE_DEADLINE, self.acceptor.accept(tcp));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return debug!(%remote, "TLS handshake failed: {e}"),
            Err(_) => return debug!(%remote, "TLS handshake timed out"),
        };
        let peer = tls.get_ref().1.peer_certificates();
        let identity = auth::connection_identity(&self.ctx, peer, self.slot).await;
        let service = TowerToHyperService::new(self.app.layer(axum::Extension(identity)));
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(tls), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            debug!(%remote, "HTTP connection ended: {e}");
        }
    }
}

/// An API failure: status plus a Docker-style message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            message: self.message,
        });
        (self.status, body).into_response()
    }
}

impl From<SummonError> for ApiError {
    fn from(e: SummonError) -> Self {
        let status = match e {
            SummonError::Pending(_) => StatusCode::CONFLICT,
            SummonError::Timeout(..) | SummonError::Busy(_) => StatusCode::GATEWAY_TIMEOUT,
            SummonError::Offline(_) | SummonError::Disconnected(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Self::new(status, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}
