//! Start a hub: data dir, PKI, store, admin token, the QUIC endpoint for agents, the HTTPS API,
//! the liveness flusher and, if asked for, the metrics listener. Listeners bind before anything is
//! spawned, so a test can start many hubs on port 0 in one process and read the bound addresses
//! back. The store's `connected` flags are cleared before the agent endpoint exists (a crash left
//! its sessions' flags set) and again after a clean shutdown's last flush.

use outpost_transport::close::CloseCodeVarint as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{Fingerprint, PkiError};
use outpost_protocol::tunnel::ALPN_TUNNEL;
use outpost_protocol::wire::{CloseCode, EndpointTiming, ALPN_ENROLL, ALPN_SESSION};
use outpost_transport::profile::Role;
use rand::RngCore;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::agent_link::admission::{self, Admission};
use crate::agent_link::connection_ids::HubConnectionIds;
use crate::agent_link::socket::HubSocket;
use crate::agent_link::windows::{self, WindowBudget};
use crate::config::{AgentTcp, HubConfig};
use crate::context::HubContext;
use crate::fleet;
use crate::metrics::{self, Metrics};
use crate::registry::Registry;
use crate::store::{self, admin_creds, settings, Store, StoreError};
use crate::{agent_link, api, liveness, restart_notice};

/// Why a hub could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data directory could not be created or written.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The PKI could not be loaded or created.
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    /// The CA the hubs of the store share could not be settled.
    #[error("hub CA: {0}")]
    SharedCa(#[from] crate::shared_ca::SharedCaError),
    /// `--hub-name` cannot name a hub: it goes into the certificate the hub presents to the
    /// other hubs.
    #[error("hub name {0:?} is not allowed: use 1 to 64 characters from a-z, A-Z, 0-9, '.', '_', '-', '@'")]
    HubName(String),
    /// `--peer-url` is not an `https://host:port` URL, or the hub-to-hub certificate failed.
    #[error("hub-to-hub link: {0}")]
    Peers(#[from] crate::peers::PeerError),
    /// This hub could not take its place among the hubs of its store.
    #[error("{0}")]
    Hubs(#[from] crate::hubs::RegisterError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A listener could not bind.
    #[error("cannot listen for {what} on {addr}: {source} (is another hub running? choose another address)")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// The registry mirror could not open (its credentials file, its directory).
    #[error("registry mirror: {0}")]
    Mirror(#[from] crate::mirror::error::MirrorOpenError),
    /// The TLS configuration was rejected by QUIC.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// A running hub.
#[derive(Debug)]
pub struct RunningHub {
    /// Bound UDP address for agents.
    pub agent_addr: SocketAddr,
    /// Bound TCP address of the API.
    pub api_addr: SocketAddr,
    /// Bound TCP address of the agents' tunnel listener, unless it is off.
    pub agent_tcp_addr: Option<SocketAddr>,
    /// Bound TCP address of the metrics listener, if the hub has one.
    pub metrics_addr: Option<SocketAddr>,
    /// Shared state.
    pub ctx: Arc<HubContext>,
    /// Set when this start created the admin token (first start).
    pub new_admin_token: Option<PathBuf>,
    endpoint: quinn::Endpoint,
    /// The agent listener: it keeps running while the hub drains.
    listener: JoinHandle<()>,
    /// The API, the liveness flusher, the tickers and the metrics listener.
    tasks: Vec<JoinHandle<()>>,
}

/// Start a hub with `config`.
pub async fn start(config: HubConfig) -> Result<RunningHub, StartError> {
    let dir = &config.data_dir;
    create_private_dir(dir)?;
    let socket =
        agent_link::socket::bind(config.agent_listen).map_err(|source| StartError::Bind {
            what: "agents (UDP)",
            addr: config.agent_listen,
            source,
        })?;
    let agent_addr = socket.local_addr().map_err(|source| StartError::Bind {
        what: "agents (UDP)",
        addr: config.agent_listen,
        source,
    })?;
    let tunnel_listener = bind_agent_tcp(config.agent_tcp, agent_addr).await?;
    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| StartError::Bind {
            what: "the admin API (TCP)",
            addr: config.api_listen,
            source,
        })?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "the admin API (TCP)",
            addr: config.api_listen,
            source,
        })?;
    let metrics_listener = bind_metrics(config.metrics_listen).await?;
    let metrics_addr = metrics_listener.as_ref().map(|(_, addr)| *addr);
    let agent_tcp_addr = tunnel_listener.as_ref().map(|(_, addr)| *addr);
    let hub_addrs = if config.public_addrs.is_empty() {
        default_public_addrs(agent_addr)
    } else {
        config.public_addrs.clone()
    };
    let names: Vec<String> = hub_addrs.iter().filter_map(|a| host_of(a)).collect();
    let store = Store::open_location(&config.store_location())?;
    let pki = crate::shared_ca::load(&store, dir, &names)?;
    if let Some(name) = config
        .hub_name
        .as_ref()
        .filter(|n| !outpost_certs::valid_name(n))
    {
        return Err(StartError::HubName(name.clone()));
    }
    let hub_name = crate::hubs::name(dir, config.hub_name.as_deref()).map_err(|source| {
        StartError::DataDir {
            path: dir.to_owned(),
            source,
        }
    })?;
    let peer_url = config.peer_url.clone().unwrap_or_else(|| api_url(api_addr));
    crate::peers::check_url(&peer_url)?;
    let peer_link = crate::peers::PeerLink::new(&pki, &hub_name)?;
    let instance = crate::hubs::instance(dir).map_err(|source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    })?;
    let hubs = crate::hubs::FleetHubs::register(&store, hub_name, hub_addrs, &peer_url, &instance)?;
    let (admin_token_hash, new_admin_token) = admin_token(&store, dir)?;

    let tickets = match config.ticket_keys {
        crate::tickets::TicketKeySource::Store => crate::tickets::start(&store),
        crate::tickets::TicketKeySource::Process => None,
    };
    let mut quic_tls = pki.server_config(&[ALPN_ENROLL, ALPN_SESSION])?;
    if let Some((ticketer, _)) = &tickets {
        quic_tls.ticketer = ticketer.clone();
        quic_tls.send_tls13_tickets = crate::tickets::TICKETS_PER_HANDSHAKE;
    }
    let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(quic_tls)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
    server_config.transport_config(config.transport.transport_config(Role::Hub));
    let path_mtus = crate::path_mtu::PathMtus::new(
        crate::path_mtu::MtuMemory::load(&store)?,
        server_config.clone(),
        config.transport,
    );
    let mut tunnel_server_config = server_config.clone();
    tunnel_server_config.transport_config(config.transport.tunnel_config(Role::Hub));
    let bind_error = |source| StartError::Bind {
        what: "agents (UDP)",
        addr: agent_addr,
        source,
    };
    let metrics = Metrics::new();
    let tunnels = agent_link::tunnel::Tunnels::default();
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(&store)?,
        Some(server_config),
        HubSocket::wrap(socket, metrics.wire(), tunnels.clone()).map_err(bind_error)?,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(bind_error)?;
    let api_tls = Arc::new(pki.https_server_config()?);

    let fleet = fleet::Fleet::restore(&store, hubs.id)?;
    let jobs = crate::jobs::Jobs::restore(&store, hubs.id)?;
    let (audit, audit_records) = crate::audit::Audit::new();
    let ctx = Arc::new(HubContext {
        store,
        registry: Registry::default(),
        pings: Default::default(),
        pki,
        hubs,
        peer_link,
        session: EndpointTiming {
            checkin_interval_ms: millis(config.checkin_interval),
            standby_after_ms: millis(config.standby_after),
        },
        summon_timeout: config.summon_timeout,
        checkin_tuning: crate::session::interval::TunerTiming {
            hold: config.checkin_hold,
            ..Default::default()
        },
        admin_credentials: api::AdminCredentials::new(admin_token_hash, dir.join("admin.token")),
        enroll_slots: Semaphore::new(config.max_concurrent_enrollments),
        admission: Admission::new(
            config.admission,
            admission::handshake_deadline(&config.transport),
        ),
        windows: WindowBudget::new(config.window_budget, &config.transport),
        proxy_slots: Arc::new(Semaphore::new(config.max_proxy_streams)),
        max_proxy_streams: config.max_proxy_streams,
        agent_cert_validity: config.agent_cert_validity,
        max_pending_per_fleet: config.max_pending_per_fleet,
        fleet,
        jobs,
        metrics,
        audit,
        mirror: crate::mirror::Mirror::open(&config.mirror, dir)?,
        alerts: crate::alerts::Alerts::default(),
        traffic: crate::traffic::Traffic::new(config.budget_period),
        tunnels,
        tunnel_server_config: Arc::new(tunnel_server_config),
        path_mtus,
        tunnel_counts: Default::default(),
        tickets: tickets.as_ref().map(|(ticketer, _)| ticketer.clone()),
        reconnect_rate: config.reconnect_rate,
    });
    write_api_url(dir, api_addr)?;
    let listener = tokio::spawn(agent_link::serve(endpoint.clone(), ctx.clone()));
    let mut tasks = vec![
        tokio::spawn(api::serve(
            api_listener,
            api_tls,
            api::router(ctx.clone()),
            ctx.clone(),
            config.max_api_connections,
        )),
        tokio::spawn(liveness::run_flusher(ctx.clone(), config.flush_interval)),
        tokio::spawn(crate::hubs::run_heartbeat(ctx.clone())),
        tokio::spawn(fleet::run_ticker(ctx.clone())),
        tokio::spawn(crate::jobs::run_ticker(ctx.clone(), config.job_retention)),
        tokio::spawn(crate::audit::writer::run(
            ctx.clone(),
            audit_records,
            config.audit_retention,
        )),
        tokio::spawn(crate::alerts::run_watch(ctx.clone())),
        tokio::spawn(crate::alerts::run_deliveries(ctx.clone())),
        tokio::spawn(crate::traffic::run_flusher(ctx.clone())),
    ];
    if let Some((ticketer, keys)) = tickets {
        let rotation = crate::tickets::run_rotation(ctx.clone(), ticketer, keys);
        tasks.push(tokio::spawn(rotation));
    }
    // Hubs sharing a PostgreSQL store hear each other's changes (`crate::changes`).
    if let store::StoreLocation::Postgres(url) = config.store_location() {
        tasks.push(tokio::spawn(crate::changes::run_listener(ctx.clone(), url)));
    }
    if let Some((listener, addr)) = tunnel_listener {
        info!(%addr, "agent TCP listener (QUIC in TLS, for networks that drop UDP)");
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(ctx.pki.server_config(&[ALPN_TUNNEL])?));
        tasks.push(tokio::spawn(agent_link::tunnel::serve(
            listener,
            tls,
            ctx.tunnels.clone(),
            ctx.tunnel_counts.clone(),
        )));
    }
    if let Some((listener, addr)) = metrics_listener {
        info!(%addr, "metrics listener (plain HTTP, GET /metrics only)");
        tasks.push(tokio::spawn(metrics::http::serve(listener, ctx.clone())));
    }
    info!(%agent_addr, %api_addr, hub = %ctx.hubs.name, addrs = ?ctx.hubs.addrs(), "hub started");
    info!(
        full_window_grants = ctx.windows.max_grants(),
        standby_window_bytes = windows::cost(windows::Windows::STANDBY),
        worst_case_mib_at_25000 = ctx.windows.worst_case(25_000) >> 20,
        "flow-control memory bound"
    );
    Ok(RunningHub {
        agent_addr,
        api_addr,
        agent_tcp_addr,
        metrics_addr,
        ctx,
        new_admin_token,
        endpoint,
        listener,
        tasks,
    })
}

/// How long a stopping hub waits for every session's close to be sent: 100,000 closes took
/// longer than 2 s while the load tool shared the two cores (`scale` bench).
const CLOSES_SENT_WITHIN: Duration = Duration::from_secs(20);
/// How long a stopping hub then lets its last packets leave.
const SHUTDOWN_DRAIN: Duration = Duration::from_millis(500);

impl RunningHub {
    /// Write liveness once more, close every agent connection and stop.
    ///
    /// New connection attempts are ignored from the first moment, not refused: an agent whose
    /// session just closed dials again within a second, and a refusal would grow its backoff
    /// while an ignored first packet is retransmitted and reaches the next hub on this port
    /// (the `scale` bench: every agent was refused once or twice by a hub that refused while it
    /// drained).
    ///
    /// The store is written before the sessions close, not after: the restart notice's spread
    /// starts when an agent reads the close, and the last write takes seconds at 100,000 agents
    /// (19 s in the `scale` bench when it came after the close). Agents whose moment fell in it
    /// found no hub, and arrived together when the next one listened.
    pub async fn shutdown(self) {
        let began = Instant::now();
        self.ctx.admission.drain();
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = crate::traffic::flush(&self.ctx, store::unix_now()).await {
            warn!("traffic counts not written at shutdown: {e}");
        }
        let counted = began.elapsed();
        // One call, so no flush lands after it; the flags of sessions still being set up when the
        // hub began draining (never written, or written by a flush already running) are cleared too.
        let ctx = self.ctx.clone();
        let now = Instant::now();
        let last = self.ctx.store.call(move |c| {
            let hub = ctx.hubs.id;
            store::liveness::write_liveness(c, hub, &ctx.registry.take_all(now))?;
            store::hubs::release(c, hub)?;
            store::hubs::stopped(c, hub, store::unix_now())
        });
        if let Err(e) = last.await {
            warn!("liveness not written at shutdown: {e}");
        }
        let written = began.elapsed();
        let rate = self.ctx.reconnect_rate;
        let closing = crate::hand_off::close_sessions(&self.ctx, |agents| {
            restart_notice::spread(agents, rate)
        });
        let notice = closing.back_here;
        let unsent = closing.wait_sent(CLOSES_SENT_WITHIN).await;
        // Let the last closes leave the socket, but do not wait out every connection's draining
        // period: with 25,000 agents that took over two minutes (measured by the scale bench). An
        // agent whose close was lost learns at its next packet (the new hub answers with a
        // stateless reset) or at its idle timeout. Connections still being set up are closed last.
        let _ = tokio::time::timeout(SHUTDOWN_DRAIN, self.endpoint.wait_idle()).await;
        self.endpoint
            .close(CloseCode::Stopping.to_varint(), notice.encode().as_bytes());
        self.listener.abort();
        info!(
            ?counted,
            ?written,
            stopped = ?began.elapsed(),
            unsent,
            "stopped: traffic counted, liveness written, sessions closed and drained"
        );
    }
}

/// The agents' TCP listener as configured: on the bound UDP socket's address and port by default.
/// By default a port already taken on TCP (the UDP port was free, the same number on TCP need not
/// be: an ephemeral `--agent-listen …:0` may meet a client connection's port) costs only the TCP
/// path, with a warning; an address asked for explicitly must bind.
async fn bind_agent_tcp(
    agent_tcp: AgentTcp,
    agent_addr: SocketAddr,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let addr = match agent_tcp {
        AgentTcp::Off => return Ok(None),
        AgentTcp::SamePort => agent_addr,
        AgentTcp::At(addr) => addr,
    };
    let bound = async {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        Ok::<_, std::io::Error>((listener, bound))
    };
    match (bound.await, agent_tcp) {
        (Ok(bound), _) => Ok(Some(bound)),
        (Err(e), AgentTcp::SamePort) => {
            warn!(%addr, "no TCP path for agents whose network drops UDP: cannot listen on TCP {addr}: {e} (free the port, or choose one with --agent-tcp-listen)");
            Ok(None)
        }
        (Err(source), _) => Err(StartError::Bind {
            what: "agents (TCP)",
            addr,
            source,
        }),
    }
}

/// The metrics listener, bound before anything is spawned (a test passes port 0 and reads it back).
async fn bind_metrics(
    addr: Option<SocketAddr>,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let Some(addr) = addr else { return Ok(None) };
    let error = |source| StartError::Bind {
        what: "metrics (TCP)",
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok(Some((listener, bound)))
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn create_private_dir(dir: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Without `--public-addr`: this host's name, then loopback, on the bound port.
fn default_public_addrs(bound: SocketAddr) -> Vec<String> {
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        return vec![bound.to_string()];
    }
    let mut addrs = Vec::new();
    if let Some(host) = hostname() {
        addrs.push(format!("{host}:{port}"));
    }
    addrs.push(format!("127.0.0.1:{port}"));
    addrs
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "localhost").then(|| name.to_owned())
}

/// The host part of `host:port` (IPv6 in brackets allowed).
fn host_of(addr: &str) -> Option<String> {
    let (host, _port) = addr.rsplit_once(':')?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
}

/// The settings row holding the stateless-reset key.
const RESET_KEY_SETTING: &str = "stateless_reset_key";

fn admin_token(store: &Store, dir: &Path) -> Result<([u8; 32], Option<PathBuf>), StartError> {
    let conn = store.lock();
    if let Some(hash) = admin_creds::admin_token_hash(&conn)? {
        return Ok((hash.0, None));
    }
    let (token, hash) = api::new_admin_token();
    let path = dir.join("admin.token");
    api::write_admin_token(&path, &token)?;
    admin_creds::set_admin_token_hash(&conn, &hash)?;
    Ok((hash.0, Some(path)))
}

/// The QUIC endpoint's keys, kept in the store across restarts: the key connection ids are
/// hashed with (so a restarted hub recognises its predecessor's ids as its own) and the key
/// stateless-reset tokens are derived from (so the agent trusts the reset). After a crash or
/// restart the new process answers an agent's next check-in with a reset, and the agent
/// reconnects at once instead of waiting out its idle timeout (110 s).
fn endpoint_config(store: &Store) -> Result<quinn::EndpointConfig, StartError> {
    let key = endpoint_key(store)?;
    // Two keys from one stored secret: 24 bytes for the reset HMAC, 8 for connection ids.
    let (reset_key, cid_key) = key.split_at(24);
    let cid_key = cid_key.to_vec();
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset_key,
    )));
    config.cid_generator(move || Box::new(HubConnectionIds::new(&cid_key)));
    // quinn sends at most one reset per 20 ms by default, from one budget for every destination:
    // too few after a restart under 25,000 agents, and a spoofed spray could take them all. The
    // hub's socket bounds resets per destination network and in all instead
    // (`agent_link::socket`), so quinn's own interval is off.
    config.min_reset_interval(Duration::ZERO);
    Ok(config)
}

fn endpoint_key(store: &Store) -> Result<[u8; 32], StartError> {
    let conn = store.lock();
    let stored = settings::setting(&conn, RESET_KEY_SETTING)?
        .and_then(|hex| hex.parse::<Fingerprint>().ok());
    let bytes = match stored {
        Some(key) => key.0,
        None => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            // Thirty-two bytes with a hex form: the store keeps the key as a `Fingerprint`.
            settings::set_setting(&conn, RESET_KEY_SETTING, &Fingerprint(bytes).to_string())?;
            bytes
        }
    };
    Ok(bytes)
}

/// `DATA_DIR/api.url`, so admin commands on this machine find the API without flags.
fn write_api_url(dir: &Path, api: SocketAddr) -> Result<(), StartError> {
    std::fs::write(dir.join("api.url"), api_url(api) + "\n").map_err(|source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    })
}

/// The admin API's URL: `https://` and the bound address (loopback when bound to any).
fn api_url(api: SocketAddr) -> String {
    let host = if api.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        match api {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        }
    };
    format!("https://{host}:{}", api.port())
}

/// Resolves at SIGINT (ctrl-c) or SIGTERM: when a hub (or the demo) should stop cleanly.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
