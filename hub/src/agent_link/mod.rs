//! The QUIC side of the hub: one endpoint for every agent, admitting each new connection within the
//! handshake limits and dispatching it by ALPN to enrolment or to a session.

pub mod admission;
mod enroll;
pub mod interval;
mod session;
pub(crate) mod socket;
pub mod windows;

use std::sync::Arc;

use outpost_common::wire::{CloseCode, ALPN_ENROLL, ALPN_SESSION};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info};

use crate::context::HubContext;
use admission::{Admission, Verdict};

/// Memory for full flow-control windows of summoned agents, by default (`--window-budget`).
pub const DEFAULT_WINDOW_BUDGET: u64 = 1024 * 1024 * 1024;

/// Accept agent connections until the endpoint is closed.
pub(crate) async fn serve(endpoint: quinn::Endpoint, ctx: Arc<HubContext>) {
    while let Some(incoming) = endpoint.accept().await {
        if let Some((incoming, slot)) = admit(&ctx.admission, incoming) {
            tokio::spawn(connect(ctx.clone(), incoming, slot));
        }
    }
    info!("agent listener stopped");
}

/// Apply the admission limits: the attempt with its handshake slot, or `None` when it was sent a
/// Retry or refused.
pub(crate) fn admit(
    admission: &Admission,
    incoming: quinn::Incoming,
) -> Option<(quinn::Incoming, OwnedSemaphorePermit)> {
    match admission.decide(incoming.remote_address_validated(), incoming.may_retry()) {
        Verdict::Accept(slot) => return Some((incoming, slot)),
        Verdict::Retry => {
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
        }
        Verdict::Refuse => incoming.refuse(),
    }
    None
}

async fn connect(ctx: Arc<HubContext>, incoming: quinn::Incoming, slot: OwnedSemaphorePermit) {
    let remote = incoming.remote_address();
    match incoming.await {
        Ok(conn) => dispatch(ctx, conn, slot).await,
        Err(e) => debug!(%remote, "handshake failed: {e}"),
    }
}

async fn dispatch(ctx: Arc<HubContext>, conn: quinn::Connection, slot: OwnedSemaphorePermit) {
    let remote = conn.remote_address();
    match alpn(&conn).as_deref() {
        Some(ALPN_ENROLL) => {
            // Enrolments have their own limit; the handshake is done. Boxed: an enrolment's
            // future is larger than a session's, and would otherwise widen every session's task.
            drop(slot);
            if let Err(e) = Box::pin(enroll::run(&ctx, &conn)).await {
                info!(%remote, "enrolment failed: {e}");
            }
        }
        Some(ALPN_SESSION) => {
            if let Err(e) = session::run(&ctx, conn, slot).await {
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
