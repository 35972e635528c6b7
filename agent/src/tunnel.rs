//! The agent's TCP path to the hub, for networks that drop UDP: QUIC in a TLS tunnel
//! (`outpost_protocol::tunnel` has the why and the framing), directly or through an HTTP proxy,
//! and the way back to UDP.
//!
//! A tunnel gets an endpoint of its own on a [`TunnelSocket`], and the connection is dialled to the
//! hub's QUIC address as over UDP. When UDP answers again ([`probe::udp_answers`], retried with
//! backoff up to [`MAX_RETRY_UDP`]), the endpoint is rebound to a UDP socket: QUIC migrates the
//! connection, so the session and its streams (a running `logs -f`) carry on over UDP and the
//! tunnel is closed.

pub mod http_connect;
pub mod probe;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{pinned_client_config, Fingerprint, HUB_SERVER_NAME};
use outpost_protocol::backoff::Backoff;
use outpost_protocol::tunnel::{encode_hello, TunnelHello, ALPN_TUNNEL};
use outpost_transport::tunnel::{Pumped, TunnelSocket};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::{debug, info};

pub use http_connect::{Proxy, ProxyError};

/// While on TCP, the agent asks whether UDP answers again after this long, then doubling ...
pub const FIRST_RETRY_UDP: Duration = Duration::from_secs(30);
/// ... up to this: a network that blocks UDP rarely stops, and a probe costs one round trip.
pub const MAX_RETRY_UDP: Duration = Duration::from_secs(600);
/// How long a probe waits for the hub's answer, over its three tries.
const PROBE_WAIT: Duration = Duration::from_secs(3);
/// How long the tunnel stays open after the move to UDP, for packets already in it.
const TUNNEL_LINGER: Duration = Duration::from_secs(5);

/// The file in the data directory whose presence says the last connection went over TCP, so a
/// restarted agent tries TCP beside QUIC at once instead of after the head start.
const ON_TCP_FILE: &str = "on-tcp";

/// Whether the last connection, as remembered in `data_dir`, went over TCP.
pub fn remembered_on_tcp(data_dir: &std::path::Path) -> bool {
    data_dir.join(ON_TCP_FILE).exists()
}

/// Remember in `data_dir` whether this connection went over TCP.
pub fn remember_on_tcp(data_dir: &std::path::Path, on_tcp: bool) -> std::io::Result<()> {
    let path = data_dir.join(ON_TCP_FILE);
    match (on_tcp, path.exists()) {
        (true, false) => std::fs::write(path, b"tcp\n"),
        (false, true) => std::fs::remove_file(path),
        _ => Ok(()),
    }
}

/// When the agent uses TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TcpFallback {
    /// QUIC first; TCP too when no QUIC handshake completes within a few seconds (default).
    Auto,
    /// TCP only (a network known to drop UDP).
    Always,
    /// QUIC only.
    Never,
}

/// How the agent reaches the hub over TCP.
#[derive(Clone, Debug)]
pub struct TcpRoute {
    /// When to use TCP.
    pub mode: TcpFallback,
    /// An HTTP proxy to go through.
    pub proxy: Option<Proxy>,
    /// The hub's TCP port, when it is not the QUIC port (`serve --agent-tcp-listen`).
    pub port: Option<u16>,
    /// How soon a connection on TCP first asks whether UDP answers again.
    pub first_udp_retry: Duration,
}

impl Default for TcpRoute {
    fn default() -> Self {
        Self {
            mode: TcpFallback::Auto,
            proxy: None,
            port: None,
            first_udp_retry: FIRST_RETRY_UDP,
        }
    }
}

impl TcpRoute {
    /// QUIC only, as the load tool's agents dial (thousands of tunnels would measure TCP).
    pub fn quic_only() -> Self {
        Self {
            mode: TcpFallback::Never,
            ..Self::default()
        }
    }
}

/// Why a tunnel could not be opened.
#[derive(Debug)]
pub enum TunnelFailure {
    /// The server presented another CA than the pinned one.
    WrongHub(Fingerprint),
    /// Anything a retry may cure.
    Unreachable(String),
}

/// An open tunnel: the endpoint a connection is dialled on, and its pump.
#[derive(Debug)]
pub struct Tunnel {
    /// The endpoint on the tunnel's socket.
    pub endpoint: quinn::Endpoint,
    /// The pump; it ends when the tunnel does.
    pub pump: JoinHandle<Pumped>,
    /// Whether it goes through a proxy.
    pub via_proxy: bool,
}

/// Open a tunnel to the hub at `hub` (its QUIC address; `host` is the name it was dialled by, for
/// a proxy to resolve), saying `reason` in the hello.
pub async fn open(
    hub: SocketAddr,
    host: &str,
    route: &TcpRoute,
    pin: Fingerprint,
    reason: &str,
) -> Result<Tunnel, TunnelFailure> {
    let unreachable = |why: String| TunnelFailure::Unreachable(why);
    let port = route.port.unwrap_or(hub.port());
    let tcp = match &route.proxy {
        Some(proxy) => proxy
            .connect(&format!("{host}:{port}"))
            .await
            .map_err(|e| unreachable(e.to_string()))?,
        None => TcpStream::connect(SocketAddr::new(hub.ip(), port))
            .await
            .map_err(|e| unreachable(format!("TCP {}: {e}", SocketAddr::new(hub.ip(), port))))?,
    };
    tune(&tcp);
    let local_port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    let (tls, report) = pinned_client_config(pin, None, &[ALPN_TUNNEL])
        .map_err(|e| unreachable(format!("TLS configuration: {e}")))?;
    let name = ServerName::try_from(HUB_SERVER_NAME).map_err(|e| unreachable(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let mut stream = match connector.connect(name, tcp).await {
        Ok(stream) => stream,
        Err(e) => {
            return Err(match report.mismatch() {
                Some(presented) => TunnelFailure::WrongHub(presented),
                None => unreachable(format!("TLS: {e}")),
            })
        }
    };
    let hello = TunnelHello {
        via_proxy: route.proxy.is_some(),
        reason: reason.into(),
    };
    stream
        .write_all(&encode_hello(&hello))
        .await
        .map_err(|e| unreachable(format!("tunnel hello: {e}")))?;
    // The socket's family must be the hub address's, or quinn would map it.
    let local = match hub {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), local_port),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), local_port),
    };
    let (socket, pump) = TunnelSocket::spawn(stream, hub, local);
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        outpost_transport::connection_id::agent_endpoint_config(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| unreachable(format!("endpoint on the tunnel: {e}")))?;
    Ok(Tunnel {
        endpoint,
        pump,
        via_proxy: route.proxy.is_some(),
    })
}

/// How to ask whether the hub answers over TCP: the session's hub and the agent's route there.
#[derive(Clone, Debug)]
pub struct TcpReach {
    /// The hub's QUIC address.
    pub hub: SocketAddr,
    /// The name it was dialled by.
    pub host: String,
    /// Proxy and port.
    pub route: TcpRoute,
    /// The pinned CA.
    pub pin: Fingerprint,
}

/// How long the TCP check may take: a TCP and a TLS handshake on the slowest path.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

impl TcpReach {
    /// Whether a tunnel to the hub opens now (TCP, the proxy if any, TLS with the pinned CA); the
    /// tunnel is closed at once, before any packet.
    pub async fn answers(&self) -> bool {
        let opened = tokio::time::timeout(
            REACH_TIMEOUT,
            open(
                self.hub,
                &self.host,
                &self.route,
                self.pin,
                "checking whether UDP is blocked",
            ),
        )
        .await;
        matches!(opened, Ok(Ok(_)))
    }
}

/// No Nagle (a check-in should not wait), and keepalive so a dead path is noticed while idle.
fn tune(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let tuned = stream
        .set_nodelay(true)
        .and_then(|()| socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive));
    if let Err(e) = tuned {
        debug!("cannot tune the tunnel's TCP socket: {e}");
    }
}

/// While a connection runs over `tunnel`, ask now and then whether UDP reaches `hub` again
/// (the first time within `first_retry`); when it does, move the endpoint, and so the connection,
/// to a UDP socket, clear `on_tcp`, and close the tunnel. Ends with the tunnel: the hub closes it
/// a second after the session ends.
pub fn return_to_udp(
    mut tunnel: Tunnel,
    hub: SocketAddr,
    first_retry: Duration,
    on_tcp: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(first_retry, MAX_RETRY_UDP.max(first_retry));
        loop {
            let delay = backoff.next_delay(&mut rand::rng());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = &mut tunnel.pump => return,
            }
            if tunnel.endpoint.open_connections() == 0 {
                return;
            }
            if !probe::udp_answers(hub, PROBE_WAIT, 3).await {
                debug!(%hub, "UDP still gets no answer; staying on TCP");
                continue;
            }
            match rebind(&tunnel.endpoint, hub) {
                Ok(()) => {
                    info!(%hub, "UDP answers again: moving the session to QUIC over UDP");
                    on_tcp.store(false, Ordering::Relaxed);
                    tokio::time::sleep(TUNNEL_LINGER).await;
                    tunnel.pump.abort();
                    return;
                }
                Err(e) => debug!("cannot open a UDP socket to move to: {e}"),
            }
        }
    });
}

fn rebind(endpoint: &quinn::Endpoint, hub: SocketAddr) -> std::io::Result<()> {
    let bind: SocketAddr = match hub {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    endpoint.rebind(std::net::UdpSocket::bind(bind)?)
}
