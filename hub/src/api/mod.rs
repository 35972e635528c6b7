//! The admin HTTPS API: bearer-authenticated JSON over TLS (the hub's own certificate).
//!
//! Errors are Docker-style `{"message": …}` bodies with a fitting status, so the docker CLI (which
//! will reach devices through this listener) and scripts print something a human can act on.

mod admin_certs;
mod auth;
mod endpoints;
mod labels;
mod list;
mod reset;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::context::HubContext;
use crate::registry::SummonError;

pub use view::EndpointView;

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

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
        .route("/api/endpoints/{id}/reset", post(reset::reset))
        .route("/api/admin-certs", post(admin_certs::create))
        .route(
            "/api/endpoints/{id}/docker/{*rest}",
            any(crate::proxy::handle),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API route") })
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_admin,
        ))
        .with_state(ctx)
}

/// Serve `app` over TLS on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    ctx: Arc<HubContext>,
) {
    let acceptor = TlsAcceptor::from(tls);
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
        let acceptor = acceptor.clone();
        let app = app.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!(%remote, "TLS handshake failed: {e}"),
                Err(_) => return debug!(%remote, "TLS handshake timed out"),
            };
            let identity =
                auth::connection_identity(&ctx, tls.get_ref().1.peer_certificates()).await;
            let service = TowerToHyperService::new(app.layer(axum::Extension(identity)));
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                debug!(%remote, "HTTP connection ended: {e}");
            }
        });
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
        let body = Json(serde_json::json!({ "message": self.message }));
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
