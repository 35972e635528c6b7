//! The QUIC side of the hub: one endpoint for every agent, dispatching each connection by ALPN to
//! enrolment or to a session.

mod enroll;
mod session;

use std::sync::Arc;

use outpost_common::wire::{CloseCode, ALPN_ENROLL, ALPN_SESSION};
use tracing::{debug, info};

use crate::context::HubContext;

/// Accept agent connections until the endpoint is closed.
pub(crate) async fn serve(endpoint: quinn::Endpoint, ctx: Arc<HubContext>) {
    while let Some(incoming) = endpoint.accept().await {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => dispatch(ctx, conn).await,
                Err(e) => debug!(%remote, "handshake failed: {e}"),
            }
        });
    }
    info!("agent listener stopped");
}

async fn dispatch(ctx: Arc<HubContext>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    match alpn(&conn).as_deref() {
        Some(ALPN_ENROLL) => {
            if let Err(e) = enroll::run(&ctx, &conn).await {
                info!(%remote, "enrolment failed: {e}");
            }
        }
        Some(ALPN_SESSION) => {
            if let Err(e) = session::run(&ctx, conn).await {
                info!(%remote, "session ended: {e}");
            }
        }
        _ => conn.close(
            CloseCode::ProtocolViolation.as_varint(),
            b"unknown protocol",
        ),
    }
}

fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}
