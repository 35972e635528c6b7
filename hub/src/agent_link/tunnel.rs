//! The agents' TCP listener, for devices whose network drops UDP: TLS with the hub's certificate
//! (ALPN `outpost-tunnel/1`), the agent's hello, then QUIC packets both ways into the same endpoint
//! as UDP (`outpost_protocol::tunnel` has the why and the framing; [`table`] how quinn sees them).
//!
//! What a stranger gets before a QUIC session exists is bounded like the QUIC side's handshakes:
//! [`SETUP_SLOTS`] tunnels may be open without a session, each for [`SETUP_DEADLINE`] from its TCP
//! accept to its QUIC handshake's end (TLS, hello and the handshake itself); a slowloris holds a
//! slot for that long and no more, and with every slot taken a new connection is closed at once.
//! Bad bytes (not TLS, not a hello, a zero or oversized packet length) end the tunnel at once. A
//! tunnel carrying a session lives as long as the session: the hub closes it when the session ends,
//! and TCP keepalive with a user timeout ([`DEAD_PEER_AFTER`]) ends one whose device vanished.

pub(crate) mod table;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_protocol::tunnel::{read_hello, TunnelError};
use outpost_transport::tunnel::{pump, Pumped};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub use table::{Path, PathKind, Tunnels};

/// Tunnels open without a QUIC session at once: the QUIC side's handshake slots (512) again.
pub const SETUP_SLOTS: usize = 512;
/// From a tunnel's TCP accept to the end of the QUIC handshake inside it: a TLS handshake and a
/// QUIC one of a few round trips each, on the slowest (GEO) path with losses, plus the hub's own
/// admission wait (at most 8 s).
pub const SETUP_DEADLINE: Duration = Duration::from_secs(20);
/// A tunnel whose peer acknowledges nothing for this long is dead (TCP user timeout; keepalive
/// probes an idle one after [`KEEPALIVE_IDLE`]): longer than QUIC's 110 s idle timeout, so TCP
/// never ends a session through an outage QUIC would have waited out.
pub const DEAD_PEER_AFTER: Duration = Duration::from_secs(120);
/// An idle tunnel is probed after this long without traffic (check-ins keep a live one busier).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Counts of what the listener turned away, for the log and the metrics.
#[derive(Debug, Default)]
pub struct TunnelCounts {
    /// Connections closed at once: every setup slot taken.
    pub refused_busy: AtomicU64,
    /// Connections that did not become a QUIC session in time, or sent bad bytes.
    pub failed_setup: AtomicU64,
}

/// Accept tunnels on `listener` until the task is aborted.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    tunnels: Tunnels,
    counts: Arc<TunnelCounts>,
) {
    let slots = Arc::new(Semaphore::new(SETUP_SLOTS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                warn!("agent TCP accept failed: {e}");
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            counts.refused_busy.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "tunnel refused: every setup slot is taken");
            continue;
        };
        let (tls, tunnels, counts) = (tls.clone(), tunnels.clone(), counts.clone());
        tokio::spawn(async move {
            if let Err(why) = run(stream, peer, tls, &tunnels, slot).await {
                counts.failed_setup.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "tunnel closed: {why}");
            }
        });
    }
}

/// One tunnel, from its TCP accept to its end.
async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    tunnels: &Tunnels,
    slot: OwnedSemaphorePermit,
) -> Result<(), String> {
    let deadline = Instant::now() + SETUP_DEADLINE;
    tune(&stream);
    let setup = async {
        let mut stream = tls.accept(stream).await.map_err(|e| format!("TLS: {e}"))?;
        let hello = read_hello(&mut stream)
            .await
            .map_err(|e: TunnelError| e.to_string())?;
        Ok::<_, String>((stream, hello))
    };
    let (stream, hello) = timeout_at(deadline, setup)
        .await
        .map_err(|_| format!("no hello within {SETUP_DEADLINE:?}"))??;
    let registered = tunnels.register(peer, hello.via_proxy, hello.reason);
    let addr = registered.addr;
    let mut claimed = registered.claimed;
    let mut pumping = std::pin::pin!(pump(stream, addr, registered.inbound, registered.outbound));
    let setup_ended = tokio::select! {
        ended = &mut pumping => Some(ended),
        claim = timeout_at(deadline, claimed.wait_for(|claimed| *claimed)) => match claim {
            Ok(Ok(_)) => None,
            _ => {
                tunnels.remove(addr);
                return Err(format!("no QUIC session within {SETUP_DEADLINE:?}"));
            }
        },
    };
    drop(slot);
    let ended = match setup_ended {
        Some(ended) => ended,
        None => pumping.await,
    };
    tunnels.remove(addr);
    match ended {
        Pumped::Closed => Ok(()),
        Pumped::Refused(e) => Err(e.to_string()),
        Pumped::Failed(e) => {
            info!(%peer, "agent tunnel failed: {e}");
            Ok(())
        }
    }
}

/// No Nagle (a check-in should not wait for an ack), keepalive, and the user timeout.
fn tune(stream: &TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    let tuned = stream
        .set_nodelay(true)
        .and_then(|()| sock.set_tcp_keepalive(&keepalive))
        .and_then(|()| sock.set_tcp_user_timeout(Some(DEAD_PEER_AFTER)));
    if let Err(e) = tuned {
        debug!("cannot tune an agent TCP socket: {e}");
    }
}
