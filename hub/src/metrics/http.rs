//! `GET /metrics`, in two places: the admin API's route (behind the admin credential, like every
//! other route) and, with `serve --metrics-listen`, a plain-HTTP listener of its own that serves
//! nothing else. The second is for a Prometheus that should hold no admin credential: an operator
//! binds it to a private interface, and it gives away fleet-level counts only (no device ids,
//! names or addresses).
//!
//! The listener is bounded like the admin API, on a smaller scale: a client has
//! [`HEADER_READ_TIMEOUT`] to send its request's head (and again between requests on a kept
//! connection), and at most [`MAX_CONNECTIONS`] are served at once; more wait in the kernel's
//! backlog.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::api::ApiError;
use crate::context::HubContext;

/// The exposition's media type: OpenMetrics text, as `prometheus-client` writes it.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a client of the metrics listener has to send a request's head: a scraper sends it
/// at once; 10 s matches the admin API's.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the metrics listener serves at once: a scraper or two, and room for a curl.
const MAX_CONNECTIONS: usize = 16;

/// Answer a scrape: every series, or a 500 saying why not.
pub(crate) async fn scrape(State(ctx): State<Arc<HubContext>>) -> Response {
    match ctx.metrics.render(&ctx).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serve `GET /metrics` alone, in plain HTTP, on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<HubContext>) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "only /metrics is here") })
        .with_state(ctx);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            serve_connection(tcp, app).await;
            drop(slot);
        });
    }
}

async fn serve_connection(tcp: TcpStream, app: Router) {
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        debug!("metrics connection ended: {e}");
    }
}
