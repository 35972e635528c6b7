//! The QUIC side of the hub: one endpoint for every agent, admitting each new connection within the
//! handshake limits (a slot, a deadline, Retry under load: see [`admission`]) and dispatching it by
//! ALPN to enrolment or to a session.

pub mod admission;
pub mod connection_ids;
mod deliver;
mod driver;
mod enroll;
mod establish;
mod fetch;
mod fetch_grant;
mod outbox;
mod renew;
mod reports;
pub(crate) mod socket;
pub mod tunnel;
pub mod windows;

use outpost_transport::close::CloseCodeVarint as _;
use std::future::Future;
use std::sync::Arc;

use outpost_protocol::wire::{CloseCode, ALPN_ENROLL, ALPN_SESSION};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info};

use crate::context::HubContext;
use admission::{Admission, SourcePrefix, Verdict, Waiting};

/// Memory for full flow-control windows of summoned agents, by default (`--window-budget`).
pub const DEFAULT_WINDOW_BUDGET: u64 = 1024 * 1024 * 1024;

/// Accept agent connections until the endpoint is closed.
pub(crate) async fn serve(endpoint: quinn::Endpoint, ctx: Arc<HubContext>) {
    accept_loop(&endpoint, &ctx.admission, &ctx.tunnels, |incoming, slot| {
        tokio::spawn(connect(ctx.clone(), incoming, slot));
    })
    .await;
    info!("agent listener stopped");
}

/// Apply the admission limits to every attempt on `endpoint`: `admitted` gets each attempt with
/// its handshake slot; attempts wait for a slot (round-robin by source prefix) and are refused when
/// they waited too long or the queue is full; once the hub drains, they are ignored.
pub(crate) async fn accept_loop(
    endpoint: &quinn::Endpoint,
    admission: &Admission,
    tunnels: &tunnel::Tunnels,
    mut admitted: impl FnMut(quinn::Incoming, OwnedSemaphorePermit),
) {
    let limits = admission.limits();
    let mut waiting = Waiting::new(limits.max_waiting, limits.max_wait);
    let mut expired = Vec::new();
    loop {
        let expiry = waiting.next_expiry();
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if let Some((incoming, slot)) = admit(admission, tunnels, incoming, &mut waiting) {
                    admitted(incoming, slot);
                }
            }
            slot = admission.slot(), if !waiting.is_empty() && !admission.draining() => {
                let Ok(slot) = slot else { break };
                if let Some(incoming) = waiting.pop_fresh(Instant::now(), &mut expired) {
                    admitted(incoming, slot);
                }
            }
            () = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                waiting.take_expired(Instant::now(), &mut expired);
            }
            () = admission.drain_started(), if !waiting.is_empty() => {
                waiting.drain().for_each(quinn::Incoming::ignore);
            }
        }
        for incoming in expired.drain(..) {
            admission.count_refused();
            incoming.refuse();
        }
        admission.note_waiting(waiting.len());
    }
}

/// Decide on one attempt: it comes back with its slot, or it was sent a Retry, queued, refused
/// (queue full) or ignored (draining).
fn admit(
    admission: &Admission,
    tunnels: &tunnel::Tunnels,
    incoming: quinn::Incoming,
    waiting: &mut Waiting<quinn::Incoming>,
) -> Option<(quinn::Incoming, OwnedSemaphorePermit)> {
    let now = Instant::now();
    let verdict = admission.decide(
        now,
        incoming.remote_address_validated(),
        incoming.may_retry(),
        !waiting.is_empty(),
    );
    match verdict {
        Verdict::Accept(slot) => return Some((incoming, slot)),
        Verdict::Retry => {
            if let Err(e) = incoming.retry() {
                e.into_incoming().refuse();
            }
        }
        Verdict::Wait => match waiting.push(now, source_prefix(tunnels, &incoming), incoming) {
            Ok(()) => admission.count_waited(),
            Err(incoming) => {
                admission.count_refused();
                incoming.refuse();
            }
        },
        Verdict::Ignore => incoming.ignore(),
    }
    None
}

/// The attempt's network, for the waiting queue's fairness: a tunnel's is its TCP peer's.
fn source_prefix(tunnels: &tunnel::Tunnels, incoming: &quinn::Incoming) -> SourcePrefix {
    tunnels.resolve(incoming.remote_address()).addr.ip().into()
}

/// One admitted attempt: its handshake on this task, then the session or enrolment on a task of
/// its own. The handshake's state (the attempt itself, 384 B, held twice by an `async fn` that
/// borrows it; its deadline) would otherwise stay in the task cell of every session it set up,
/// ~800 B per connected agent.
async fn connect(ctx: Arc<HubContext>, incoming: quinn::Incoming, slot: OwnedSemaphorePermit) {
    let remote = incoming.remote_address();
    let config = if ctx.tunnels.is_tunnel(remote) {
        Some(ctx.tunnel_server_config.clone())
    } else {
        ctx.path_mtus.config_for(remote)
    };
    if let Some(conn) = handshake(&ctx.admission, incoming, config).await {
        tokio::spawn(dispatch(ctx, conn, slot));
    }
}

/// The handshake of an admitted attempt, within the admission's deadline, with `config` in place
/// of the endpoint's server config if given (a tunnel's). One past its deadline is dropped, which
/// closes it (quinn's implicit close); the caller then frees its slot. Either timeout, ours or the
/// idle timeout the client asked for, counts as a silent handshake.
pub(crate) async fn handshake(
    admission: &Admission,
    incoming: quinn::Incoming,
    config: Option<Arc<quinn::ServerConfig>>,
) -> Option<quinn::Connection> {
    let remote = incoming.remote_address();
    let validated = incoming.remote_address_validated();
    let accepted = match config {
        Some(config) => incoming.accept_with(config),
        None => incoming.accept(),
    };
    let connecting = match accepted {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(%remote, "handshake refused: {e}");
            return None;
        }
    };
    match timeout(admission.handshake_deadline(), connecting).await {
        Ok(Ok(conn)) => {
            admission.count_accepted();
            Some(conn)
        }
        // The client's own idle timeout (its transport parameter) ended the silence first.
        Ok(Err(quinn::ConnectionError::TimedOut)) | Err(_) => {
            admission.count_timed_out(Instant::now(), validated);
            debug!(%remote, "handshake timed out");
            None
        }
        Ok(Err(e)) => {
            debug!(%remote, "handshake failed: {e}");
            None
        }
    }
}

/// What a connection is for, by its ALPN.
enum Purpose {
    Enroll,
    Session,
}

/// Run an established connection's enrolment or session. This future is the task of every
/// connected agent for the session's life, so nothing is held across the session's await but what
/// its end needs (the tunnel's claim, the address to log); not an `async fn`, for the reason
/// [`driver`]'s `drive` gives.
#[allow(clippy::manual_async_fn)] // an `async fn` holds `ctx` and `conn` twice
fn dispatch(
    ctx: Arc<HubContext>,
    conn: quinn::Connection,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()> {
    async move {
        let first = conn.remote_address();
        ctx.tunnels.claim(first);
        let remote = ctx.tunnels.resolve(first).addr;
        // The handshake advertised the longest idle timeout any session may need; until a
        // session says otherwise (a `quiet` device), this connection gives up after the default.
        conn.set_max_idle_timeout(Some(outpost_transport::profile::idle_timeout_for(
            ctx.checkin_interval(),
        )));
        match purpose(&conn) {
            Some(Purpose::Enroll) => {
                // Enrolments have their own limit; the handshake is done. Boxed: an enrolment's
                // future is larger than a session's, and would otherwise widen every session's
                // task.
                drop(slot);
                if let Err(e) = Box::pin(enroll::run(&ctx, &conn)).await {
                    info!(%remote, "enrolment failed: {e}");
                }
            }
            Some(Purpose::Session) => {
                if let Err(e) = driver::run(&ctx, conn.clone(), slot).await {
                    info!(%remote, "session ended: {e}");
                }
            }
            None => conn.close(
                CloseCode::ProtocolViolation.to_varint(),
                b"unknown protocol",
            ),
        }
        ctx.tunnels.release(first);
        ctx.tunnels.release(conn.remote_address());
    }
}

/// The connection's purpose by its ALPN, decided before anything is awaited: the protocol name
/// would otherwise be held for the session's life.
fn purpose(conn: &quinn::Connection) -> Option<Purpose> {
    match alpn(conn).as_deref() {
        Some(ALPN_ENROLL) => Some(Purpose::Enroll),
        Some(ALPN_SESSION) => Some(Purpose::Session),
        _ => None,
    }
}

fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, F: Future>(_: fn(A, B, C) -> F) -> usize {
        size_of::<F>()
    }

    /// A connected agent's task is `dispatch`'s future in a tokio task cell: the future plus
    /// 104 B of tokio's (header, scheduler, task id, stage, trailer), rounded up to 128 B. At most
    /// 664 B keeps the cell at 768 B per agent; it was 2,048 B while the handshake and the
    /// store's futures were held inline (heaptrack at 400 agents, `idle_agents`). A store call, a
    /// handshake or an enrolment awaited inline again fails this.
    #[test]
    fn a_connected_agents_task_fits_a_768_byte_cell() {
        let size = future_size(dispatch);
        assert!(size <= 664, "dispatch's future is {size} B");
    }
}
