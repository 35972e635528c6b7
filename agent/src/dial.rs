//! Dialling the hub: try each address the hub is known by, verify it against the pinned CA, and
//! classify failures into "try again later" and "this can never work".
//!
//! A dialer keeps its TLS client configuration across reconnects (rustls keeps its session
//! tickets there, so a reconnect can resume instead of doing a full handshake), and it can run on
//! a UDP socket shared with other dialers ([`Dialer::on_endpoint`]): the load tool runs thousands
//! of agents in one process over a few sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{pinned_client_config, CertificateDer, ClientAuth, Fingerprint, PinReport};
use outpost_transport::congestion::{PathEstimate, PathMemory};
use outpost_transport::profile::{Role, TransportProfile};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::hub_reach::HubReach;
use crate::tunnel::{self, TcpFallback, TcpReach, TcpRoute};
use attempt::Attempt;

mod attempt;

/// Room in the handshake timeout for the hub's admission queue (at most 8 s there) and a set-up
/// under load.
const HUB_ADMISSION_WAIT: Duration = Duration::from_secs(15);

/// Why no connection to the hub was made.
#[derive(Debug, Error)]
pub enum DialError {
    /// The hub presented a CA other than the pinned one: it is not our hub.
    #[error("the server at {addr} is not the hub this token trusts: its CA fingerprint is {presented}, the token pins {expected}. Check the address or ask for a token from this hub")]
    WrongHub {
        /// The address dialled.
        addr: SocketAddr,
        /// Pinned fingerprint.
        expected: Fingerprint,
        /// What the server presented.
        presented: Fingerprint,
    },
    /// No address could be reached (retryable).
    #[error("cannot reach the hub at any of {addrs:?}: {last}")]
    Unreachable {
        /// The addresses tried.
        addrs: Vec<String>,
        /// The last failure.
        last: String,
    },
    /// The local TLS/QUIC configuration is unusable.
    #[error("local TLS configuration: {0}")]
    Config(String),
}

impl DialError {
    /// Whether retrying can help.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Unreachable { .. })
    }
}

/// How long QUIC has alone before a tunnel is tried too, unless the last connection was on TCP:
/// several of the slowest profile's initial round trips, so a GEO handshake that loses a packet
/// still wins, and well inside the 10 s a device behind a UDP-blocking network may wait.
fn quic_head_start(profile: &TransportProfile) -> Duration {
    (profile.initial_rtt * 6).max(Duration::from_secs(5))
}

/// A QUIC client bound to one local socket per address family, which falls back to a TLS tunnel
/// over TCP where UDP gets no answer ([`crate::tunnel`]).
#[derive(Debug)]
pub struct Dialer {
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
    profile: TransportProfile,
    handshake_timeout: Duration,
    tls: Option<CachedTls>,
    /// The current connection's path estimate, shared with its congestion controller ...
    path: PathMemory,
    /// ... and the last uplink estimate any connection measured: the next one resumes from it
    /// once its handshake's round trip matches (Careful Resume, `congestion::PathMemory`).
    uplink: Option<PathEstimate>,
    /// The path MTU the last session over UDP discovered ([`Dialer::session_ended`]): the next
    /// connection starts from it.
    path_mtu: Option<u16>,
    tcp: TcpRoute,
    /// Whether the last connection went over TCP (cleared when it moves back to UDP): the next
    /// dial then tries both at once.
    on_tcp: Arc<AtomicBool>,
    /// Why the agent took to TCP, for the next tunnel's hello.
    tcp_reason: String,
    /// Where the last connection went, for [`Dialer::tcp_reach`].
    last_target: Option<(SocketAddr, String, Fingerprint)>,
    /// An address the next dial tries before the rest of the list ([`Dialer::prefer`]).
    preferred: Option<String>,
    /// An address the next dial tries after the rest of the list ([`Dialer::hand_off`]).
    deferred: Option<String>,
    /// Whether a connection over UDP has been made: then a QUIC dial that is merely slow (a hub
    /// restarting under its fleet queues handshakes for seconds) is waited out before TCP.
    udp_worked: bool,
}

/// When a dial starts its tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcpStart {
    /// Not at all.
    Never,
    /// At once, beside QUIC (or alone).
    Now,
    /// When QUIC has not finished after this long, or failed.
    After(Duration),
    /// When QUIC has failed.
    WhenQuicFails,
}

/// The client configuration of the last dial, reused while the pin, client certificate and ALPN
/// stay the same.
#[derive(Debug)]
struct CachedTls {
    key: TlsKey,
    config: quinn::ClientConfig,
    report: PinReport,
}

#[derive(Debug, PartialEq, Eq)]
struct TlsKey {
    pin: Fingerprint,
    chain: Option<Vec<CertificateDer<'static>>>,
    alpn: Vec<u8>,
}

/// Several round trips on the slowest path, plus loss recovery, plus the time a busy hub may hold
/// the attempt before its handshake starts (the hub's admission waits at most 8 s,
/// `AdmissionLimits::max_wait`, and refuses after that).
fn handshake_timeout(profile: &TransportProfile) -> Duration {
    profile.initial_rtt * 10 + HUB_ADMISSION_WAIT
}

impl Dialer {
    /// A dialer using `profile`'s transport values, opening its own UDP socket on first use.
    pub fn new(profile: TransportProfile) -> Self {
        Self {
            v4: None,
            v6: None,
            profile,
            handshake_timeout: handshake_timeout(&profile),
            tls: None,
            path: PathMemory::default(),
            uplink: None,
            path_mtu: None,
            tcp: TcpRoute::default(),
            on_tcp: Arc::default(),
            tcp_reason: String::new(),
            udp_worked: false,
            last_target: None,
            preferred: None,
            deferred: None,
        }
    }

    /// Use `route` for TCP from the next dial on.
    pub fn set_tcp_route(&mut self, route: TcpRoute) {
        self.tcp = route;
    }

    fn tcp_start(&self) -> TcpStart {
        match self.tcp.mode {
            TcpFallback::Never => TcpStart::Never,
            TcpFallback::Always => TcpStart::Now,
            TcpFallback::Auto if self.on_tcp() => TcpStart::Now,
            TcpFallback::Auto if self.udp_worked => TcpStart::WhenQuicFails,
            TcpFallback::Auto => TcpStart::After(quic_head_start(&self.profile)),
        }
    }

    /// With TCP allowed: how a session checks whether the hub answers over TCP when its
    /// check-ins go unanswered ([`crate::tunnel::TcpReach`]); on UDP that means UDP is blocked, on
    /// a tunnel (or a session moved back to UDP) that its path is dead while the hub is not.
    pub fn tcp_reach(&self) -> Option<TcpReach> {
        let usable = self.tcp.mode != TcpFallback::Never;
        let (hub, host, pin) = self.last_target.clone().filter(|_| usable)?;
        Some(TcpReach {
            hub,
            host,
            route: self.tcp.clone(),
            pin,
        })
    }

    /// The other hubs of `addrs` to ask when the last connection's hub goes silent
    /// ([`crate::hub_reach`]).
    pub fn hub_reach(&self, addrs: &[String]) -> Option<HubReach> {
        let (_, host, pin) = self.last_target.as_ref()?;
        let reach = HubReach::new(addrs, host, *pin)?;
        Some(reach.on_sockets(self.v4.clone(), self.v6.clone()))
    }

    /// The last connection's hub is stopping and handed its agents to the fleet's other hubs:
    /// the next dial tries the rest of the list first and that hub last.
    pub fn hand_off(&mut self) {
        self.deferred = self.last_target.as_ref().map(|(_, host, _)| host.clone());
    }

    /// A hub of the list answered while the last one went silent: the next dial tries it first.
    pub fn prefer(&mut self, addr: String) {
        self.preferred = Some(addr);
    }

    /// The last connection, before a restart, went over TCP: try TCP beside QUIC at once.
    pub fn assume_on_tcp(&mut self) {
        self.on_tcp.store(true, Ordering::Relaxed);
    }

    /// The last session went silent: UDP may be blocked now, so the next dial gives QUIC only its
    /// head start before trying TCP too.
    pub fn forget_udp(&mut self) {
        self.udp_worked = false;
    }

    /// Whether the last connection was made over TCP and is still there.
    pub fn on_tcp(&self) -> bool {
        self.on_tcp.load(Ordering::Relaxed)
    }

    /// The transport profile new connections use.
    pub fn profile(&self) -> &TransportProfile {
        &self.profile
    }

    /// Use `profile` from the next connection on, keeping the TLS client configuration (and with
    /// it the session tickets a reconnect resumes with).
    pub fn set_profile(&mut self, profile: TransportProfile) {
        self.handshake_timeout = handshake_timeout(&profile);
        if let Some(cached) = &mut self.tls {
            cached
                .config
                .transport_config(profile.transport_config(Role::Agent));
        }
        self.profile = profile;
    }

    /// A dialer that connects through `endpoint`, a client endpoint possibly shared with other
    /// dialers, for targets of its address family (it opens its own socket for the other family).
    pub fn on_endpoint(
        profile: TransportProfile,
        endpoint: quinn::Endpoint,
    ) -> Result<Self, DialError> {
        let local = endpoint
            .local_addr()
            .map_err(|e| DialError::Config(format!("shared UDP socket: {e}")))?;
        let mut dialer = Self::new(profile);
        if local.is_ipv4() {
            dialer.v4 = Some(endpoint);
        } else {
            dialer.v6 = Some(endpoint);
        }
        Ok(dialer)
    }

    fn endpoint_for(&mut self, target: SocketAddr) -> Result<quinn::Endpoint, DialError> {
        let (slot, bind): (&mut Option<quinn::Endpoint>, SocketAddr) = if target.is_ipv4() {
            (
                &mut self.v4,
                "0.0.0.0:0"
                    .parse()
                    .map_err(|_| DialError::Config("bind".into()))?,
            )
        } else {
            (
                &mut self.v6,
                "[::]:0"
                    .parse()
                    .map_err(|_| DialError::Config("bind".into()))?,
            )
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = outpost_transport::connection_id::agent_endpoint(bind)
            .map_err(|e| DialError::Config(format!("cannot open a UDP socket: {e}")))?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// Connect to the first reachable address with ALPN `alpn`, pinning `pin`.
    pub async fn connect(
        &mut self,
        addrs: &[String],
        pin: Fingerprint,
        client: Option<ClientAuth>,
        alpn: &[u8],
    ) -> Result<quinn::Connection, DialError> {
        let (mut config, report) = self.client_config(pin, client, alpn)?;
        config.transport_config(self.next_connection_config());
        let mut last = String::from("no address resolved");
        for addr in self.dial_order(addrs) {
            let targets = match tokio::net::lookup_host(addr.as_str()).await {
                Ok(targets) => targets.collect::<Vec<_>>(),
                Err(e) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
            };
            for target in targets {
                match self.try_target(target, &addr, &config, &report, pin).await {
                    Ok(conn) => return Ok(conn),
                    Err(DialError::Unreachable { last: why, .. }) => {
                        debug!(%target, "dial failed: {why}");
                        last = format!("{target}: {why}");
                    }
                    Err(final_error) => return Err(final_error),
                }
            }
        }
        Err(DialError::Unreachable {
            addrs: addrs.to_vec(),
            last,
        })
    }

    /// The order the next dial tries `addrs` in: the preferred address, the list, the deferred
    /// one (each taken: they order one dial).
    fn dial_order(&mut self, addrs: &[String]) -> Vec<String> {
        let preferred = self.preferred.take().filter(|p| addrs.contains(p));
        let deferred = self
            .deferred
            .take()
            .filter(|d| addrs.contains(d) && Some(d) != preferred.as_ref());
        let placed = |a: &&String| Some(*a) == preferred.as_ref() || Some(*a) == deferred.as_ref();
        let rest: Vec<String> = addrs.iter().filter(|a| !placed(a)).cloned().collect();
        preferred.into_iter().chain(rest).chain(deferred).collect()
    }

    /// `conn`'s session ended: keep the path MTU it discovered for the next connection, unless
    /// it ran over TCP.
    pub fn session_ended(&mut self, conn: &quinn::Connection) {
        self.path_mtu = (!self.on_tcp()).then(|| conn.stats().path.current_mtu);
    }

    /// The transport config of the next connection: its own path memory, offered the uplink
    /// estimate the last connection measured, and the path MTU the last UDP connection found.
    ///
    /// Starting from the known MTU spares the path MTU search: four probes of up to 1,436 bytes
    /// and their acknowledgements, 8 of the 28 datagrams of a resumed reconnect (counted with
    /// nftables on loopback), which a hub restarting under 100,000 agents receives all at once.
    /// Should the path now carry less (another network), quinn's black-hole detection drops the
    /// connection to 1,200 bytes and searches again.
    fn next_connection_config(&mut self) -> Arc<quinn::TransportConfig> {
        if let Some(estimate) = self.path.latest() {
            self.uplink = Some(estimate);
        }
        self.path = PathMemory::default();
        if let Some(estimate) = self.uplink {
            self.path.offer(estimate);
        }
        self.profile
            .connection_config(Role::Agent, self.path.clone(), self.path_mtu)
    }

    /// The cached configuration if it still fits, else a new one (which is then cached).
    fn client_config(
        &mut self,
        pin: Fingerprint,
        client: Option<ClientAuth>,
        alpn: &[u8],
    ) -> Result<(quinn::ClientConfig, PinReport), DialError> {
        let key = TlsKey {
            pin,
            chain: client.as_ref().map(|(chain, _)| chain.clone()),
            alpn: alpn.to_vec(),
        };
        if let Some(cached) = self.tls.as_ref().filter(|c| c.key == key) {
            return Ok((cached.config.clone(), cached.report.clone()));
        }
        let (tls, report) = pinned_client_config(pin, client, &[alpn])
            .map_err(|e| DialError::Config(e.to_string()))?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| DialError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.profile.transport_config(Role::Agent));
        let cached = self.tls.insert(CachedTls {
            key,
            config,
            report,
        });
        Ok((cached.config.clone(), cached.report.clone()))
    }

    /// A new connection, its idle timeout set.
    fn connected(&self, conn: quinn::Connection) -> quinn::Connection {
        // The handshake advertised the longest idle timeout a session may need; the session
        // driver raises this one as its check-in interval grows.
        conn.set_max_idle_timeout(Some(self.profile.idle_timeout));
        conn
    }

    /// Dial `target` (named `host` in the address list) by QUIC, by a tunnel, or both as the
    /// route says.
    async fn try_target(
        &mut self,
        target: SocketAddr,
        host: &str,
        config: &quinn::ClientConfig,
        report: &PinReport,
        pin: Fingerprint,
    ) -> Result<quinn::Connection, DialError> {
        let quic = match self.tcp.mode {
            TcpFallback::Always => None,
            TcpFallback::Auto | TcpFallback::Never => Some(self.endpoint_for(target)?),
        };
        let start = self.tcp_start();
        let attempt = Attempt {
            target,
            config,
            tunnel_transport: self.profile.tunnel_config(Role::Agent),
            timeout: self.handshake_timeout,
            pin,
        };
        let (quic_failed_tx, quic_failed) = oneshot::channel();
        let mut quic_failed_tx = Some(quic_failed_tx);
        let quic = std::pin::pin!(async {
            match quic {
                Some(endpoint) => attempt.quic(&endpoint, report).await,
                None => std::future::pending().await,
            }
        });
        let route = self.tcp.clone();
        let reason = self.tcp_reason.clone();
        let tunnel = std::pin::pin!(async {
            let reason = match (start, route.mode) {
                (TcpStart::Never, _) => return std::future::pending().await,
                (_, TcpFallback::Always) => "TCP chosen (--tcp-fallback always)".to_string(),
                (TcpStart::Now, _) => reason,
                (TcpStart::After(head_start), _) => tokio::select! {
                    () = tokio::time::sleep(head_start) => format!("no QUIC answer within {head_start:?}"),
                    Ok(why) = quic_failed => format!("QUIC failed: {why}"),
                },
                (TcpStart::WhenQuicFails, _) => match quic_failed.await {
                    Ok(why) => format!("QUIC failed: {why}"),
                    Err(_) => return std::future::pending().await,
                },
            };
            attempt
                .tunnel(host, &route, &reason)
                .await
                .map(|t| (t, reason))
        });
        let (mut quic, mut tunnel) = (quic, tunnel);
        let mut quic_done = route.mode == TcpFallback::Always;
        let mut tunnel_done = start == TcpStart::Never;
        let mut last;
        loop {
            tokio::select! {
                result = &mut quic, if !quic_done => match result {
                    Ok(conn) => {
                        self.on_tcp.store(false, Ordering::Relaxed);
                        self.udp_worked = true;
                        self.last_target = Some((target, host.to_owned(), pin));
                        return Ok(self.connected(conn));
                    }
                    Err(DialError::Unreachable { last: why, .. }) => {
                        quic_done = true;
                        if let Some(tx) = quic_failed_tx.take() {
                            let _ = tx.send(why.clone());
                        }
                        last = why;
                    }
                    Err(final_error) => return Err(final_error),
                },
                result = &mut tunnel, if !tunnel_done => match result {
                    Ok(((conn, opened), reason)) => {
                        info!(hub = %target, via_proxy = opened.via_proxy, %reason, "connected over TCP (QUIC in TLS)");
                        self.on_tcp.store(true, Ordering::Relaxed);
                        self.path_mtu = None;
                        self.last_target = Some((target, host.to_owned(), pin));
                        if route.mode == TcpFallback::Auto {
                            tunnel::return_to_udp(opened, target, route.first_udp_retry, self.on_tcp.clone());
                        }
                        self.tcp_reason = reason;
                        return Ok(self.connected(conn));
                    }
                    Err(DialError::Unreachable { last: why, .. }) => {
                        tunnel_done = true;
                        last = format!("TCP: {why}");
                    }
                    Err(final_error) => return Err(final_error),
                },
            }
            if quic_done && tunnel_done {
                return Err(DialError::Unreachable {
                    addrs: vec![target.to_string()],
                    last,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_transport::profile::LAN;
    use tokio::time::Instant;

    fn addrs(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    fn dialed_last(dialer: &mut Dialer, host: &str) {
        let pin = Fingerprint::of(b"a hub CA");
        dialer.last_target = Some(("127.0.0.1:7000".parse().unwrap(), host.to_owned(), pin));
    }

    #[test]
    fn a_handed_off_agent_dials_its_last_hub_last_once() {
        let list = addrs(&["a:1", "b:1", "c:1"]);
        let mut dialer = Dialer::new(LAN);
        assert_eq!(dialer.dial_order(&list), list);
        dialed_last(&mut dialer, "a:1");
        dialer.hand_off();
        assert_eq!(dialer.dial_order(&list), addrs(&["b:1", "c:1", "a:1"]));
        assert_eq!(dialer.dial_order(&list), list, "one dial only");
    }

    #[test]
    fn a_preferred_hub_goes_first_and_a_handed_off_one_last() {
        let list = addrs(&["a:1", "b:1", "c:1"]);
        let mut dialer = Dialer::new(LAN);
        dialed_last(&mut dialer, "b:1");
        dialer.hand_off();
        dialer.prefer("c:1".to_owned());
        assert_eq!(dialer.dial_order(&list), addrs(&["c:1", "a:1", "b:1"]));
        // An address no longer in the list is ignored; one preferred and deferred goes first.
        dialed_last(&mut dialer, "c:1");
        dialer.hand_off();
        dialer.prefer("c:1".to_owned());
        assert_eq!(dialer.dial_order(&list), addrs(&["c:1", "a:1", "b:1"]));
        dialed_last(&mut dialer, "gone:1");
        dialer.hand_off();
        assert_eq!(dialer.dial_order(&list), list);
    }

    /// A hub's session endpoint on loopback, from a fresh PKI in `dir`.
    fn loopback_hub(dir: &tempfile::TempDir) -> (quinn::Endpoint, Fingerprint) {
        use outpost_protocol::wire::ALPN_SESSION;
        let pki = outpost_certs::HubPki::load_or_create(dir.path(), &[]).unwrap();
        let tls = quinn::crypto::rustls::QuicServerConfig::try_from(
            pki.server_config(&[ALPN_SESSION]).unwrap(),
        )
        .unwrap();
        let config = quinn::ServerConfig::with_crypto(Arc::new(tls));
        let server = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        (server, pki.ca_fingerprint())
    }

    /// The agent's end of a new connection and the hub's.
    async fn dial(
        dialer: &mut Dialer,
        hub: &quinn::Endpoint,
        pin: Fingerprint,
    ) -> (quinn::Connection, quinn::Connection) {
        let addrs = [hub.local_addr().unwrap().to_string()];
        let accepted = async { hub.accept().await.unwrap().await.unwrap() };
        let (conn, hub_side) = tokio::join!(
            dialer.connect(&addrs, pin, None, outpost_protocol::wire::ALPN_SESSION),
            accepted
        );
        (conn.unwrap(), hub_side)
    }

    #[tokio::test]
    async fn the_next_connection_starts_at_the_path_mtu_the_last_session_found() {
        let dir = tempfile::tempdir().unwrap();
        let (hub, pin) = loopback_hub(&dir);
        let mut dialer = Dialer::new(LAN);
        let (first, _hub_side) = dial(&mut dialer, &hub, pin).await;
        // The search sends a probe at a time, each when the connection next transmits (check-ins,
        // here datagrams): wait until a second passes without one.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut found = first.stats().path;
        loop {
            for _ in 0..10 {
                first.send_datagram(b"check-in".to_vec().into()).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let now = first.stats().path;
            if now.sent_plpmtud_probes == found.sent_plpmtud_probes && now.current_mtu > 1200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the path MTU search did not end: {now:?}"
            );
            found = now;
        }
        assert!(
            found.sent_plpmtud_probes > 0,
            "the first connection searched"
        );
        dialer.session_ended(&first);
        first.close(0u32.into(), b"");

        let (second, _hub_side) = dial(&mut dialer, &hub, pin).await;
        assert_eq!(second.stats().path.current_mtu, found.current_mtu);
        for _ in 0..10 {
            second.send_datagram(b"check-in".to_vec().into()).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            second.stats().path.sent_plpmtud_probes,
            0,
            "nothing left to search: {found:?} then {:?}",
            second.stats().path
        );
    }

    #[tokio::test]
    async fn a_dialer_on_a_shared_endpoint_dials_through_it() {
        let shared = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut dialer = Dialer::on_endpoint(LAN, shared.clone()).unwrap();
        let used = dialer.endpoint_for("127.0.0.1:9".parse().unwrap()).unwrap();
        assert_eq!(used.local_addr().unwrap(), shared.local_addr().unwrap());
    }
}
