//! Dialling the hub: try each address the hub is known by, verify it against the pinned CA, and
//! classify failures into "try again later" and "this can never work".
//!
//! A dialer keeps its TLS client configuration across reconnects (rustls keeps its session
//! tickets there, so a reconnect can resume instead of doing a full handshake), and it can run on
//! a UDP socket shared with other dialers ([`Dialer::on_endpoint`]): the load tool runs thousands
//! of agents in one process over a few sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{
    pinned_client_config, CertificateDer, ClientAuth, Fingerprint, PinReport, HUB_SERVER_NAME,
};
use outpost_transport::congestion::{PathEstimate, PathMemory};
use outpost_transport::profile::{Role, TransportProfile};
use thiserror::Error;
use tracing::debug;

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

/// A QUIC client bound to one local socket per address family.
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
        }
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
        let endpoint = quinn::Endpoint::client(bind)
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
        for addr in addrs {
            let targets = match tokio::net::lookup_host(addr.as_str()).await {
                Ok(targets) => targets.collect::<Vec<_>>(),
                Err(e) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
            };
            for target in targets {
                match self.try_one(target, &config, &report, pin).await {
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

    /// The transport config of the next connection: its own path memory, offered the uplink
    /// estimate the last connection measured.
    fn next_connection_config(&mut self) -> Arc<quinn::TransportConfig> {
        if let Some(estimate) = self.path.latest() {
            self.uplink = Some(estimate);
        }
        self.path = PathMemory::default();
        if let Some(estimate) = self.uplink {
            self.path.offer(estimate);
        }
        self.profile
            .connection_config(Role::Agent, self.path.clone())
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

    async fn try_one(
        &mut self,
        target: SocketAddr,
        config: &quinn::ClientConfig,
        report: &PinReport,
        pin: Fingerprint,
    ) -> Result<quinn::Connection, DialError> {
        let unreachable = |why: String| DialError::Unreachable {
            addrs: vec![target.to_string()],
            last: why,
        };
        let endpoint = self.endpoint_for(target)?;
        report.clear();
        let connecting = endpoint
            .connect_with(config.clone(), target, HUB_SERVER_NAME)
            .map_err(|e| unreachable(e.to_string()))?;
        let result = tokio::time::timeout(self.handshake_timeout, connecting).await;
        if let Some(presented) = report.mismatch() {
            return Err(DialError::WrongHub {
                addr: target,
                expected: pin,
                presented,
            });
        }
        match result {
            Ok(Ok(conn)) => {
                // The handshake advertised the longest idle timeout a session may need; the
                // session driver raises this one as its check-in interval grows.
                conn.set_max_idle_timeout(Some(self.profile.idle_timeout));
                Ok(conn)
            }
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!(
                "no handshake within {:?}",
                self.handshake_timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_transport::profile::LAN;

    #[tokio::test]
    async fn a_dialer_on_a_shared_endpoint_dials_through_it() {
        let shared = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut dialer = Dialer::on_endpoint(LAN, shared.clone()).unwrap();
        let used = dialer.endpoint_for("127.0.0.1:9".parse().unwrap()).unwrap();
        assert_eq!(used.local_addr().unwrap(), shared.local_addr().unwrap());
    }
}
