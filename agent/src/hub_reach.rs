//! Whether another hub of the fleet answers while this session's hub is silent (issue #18).
//!
//! Several hubs on one store serve one fleet, and every `Welcome` lists them all. When check-ins
//! to the session's hub go unanswered, that is an outage of the device's link, or the hub died.
//! The two look alike from here, so the agent asks: if another hub of the list completes a
//! handshake (the enrolment ALPN, no client certificate, the pinned CA), the link works and this
//! hub is gone, and the agent reconnects to the one that answered at once instead of waiting out
//! the idle timeout (110 s, sized to ride out a minute's outage). On an outage of the link no
//! other hub answers either, and the session rides it out as before.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use outpost_certs::{pinned_client_config, Fingerprint, HUB_SERVER_NAME};
use outpost_protocol::wire::{CloseCode, ALPN_ENROLL};
use outpost_transport::close::CloseCodeVarint as _;
use tracing::{debug, info};

/// How long one hub's handshake may take: several round trips on the slowest profile.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);

/// The other hubs to ask, and how.
#[derive(Clone, Debug)]
pub struct HubReach {
    /// The address this session dialled.
    current: String,
    others: Vec<String>,
    config: quinn::ClientConfig,
    /// The dialer's sockets (IPv4, IPv6), if it has them: a check from a fleet of agents on a few
    /// sockets (the swarm) opens no socket of its own.
    sockets: (Option<quinn::Endpoint>, Option<quinn::Endpoint>),
}

impl HubReach {
    /// The hubs of `addrs` other than `current` (the address this session dialled), checked
    /// against `pin`; `None` if no TLS configuration can be made for it.
    pub fn new(addrs: &[String], current: &str, pin: Fingerprint) -> Option<Self> {
        let (tls, _report) = pinned_client_config(pin, None, &[ALPN_ENROLL]).ok()?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).ok()?;
        let mut reach = Self {
            current: current.to_owned(),
            others: Vec::new(),
            config: quinn::ClientConfig::new(std::sync::Arc::new(crypto)),
            sockets: (None, None),
        };
        reach.set_addrs(addrs);
        Some(reach)
    }

    /// Check from these sockets (IPv4, IPv6) where they are open, instead of a socket of its own.
    pub fn on_sockets(mut self, v4: Option<quinn::Endpoint>, v6: Option<quinn::Endpoint>) -> Self {
        self.sockets = (v4, v6);
        self
    }

    /// The fleet's hubs are now `addrs` (a `HubMessage::HubAddrs` mid-session).
    pub fn set_addrs(&mut self, addrs: &[String]) {
        self.others = addrs
            .iter()
            .filter(|a| **a != self.current)
            .cloned()
            .collect();
    }

    /// Whether there is another hub to ask.
    pub fn has_others(&self) -> bool {
        !self.others.is_empty()
    }

    /// The first of the other hubs, in list order, that completes a handshake now; the
    /// connection is closed at once.
    pub async fn first_answering(&self) -> Option<String> {
        for addr in &self.others {
            let Ok(targets) = tokio::net::lookup_host(addr.as_str()).await else {
                continue;
            };
            for target in targets {
                if self.answers(target).await {
                    info!(hub = %addr, "another hub of the fleet answers");
                    return Some(addr.clone());
                }
            }
        }
        None
    }

    async fn answers(&self, target: SocketAddr) -> bool {
        let (shared, local): (_, SocketAddr) = match target {
            SocketAddr::V4(_) => (&self.sockets.0, (Ipv4Addr::UNSPECIFIED, 0).into()),
            SocketAddr::V6(_) => (&self.sockets.1, (Ipv6Addr::UNSPECIFIED, 0).into()),
        };
        let (endpoint, own) = match shared {
            Some(endpoint) => (endpoint.clone(), false),
            None => match outpost_transport::connection_id::agent_endpoint(local) {
                Ok(endpoint) => (endpoint, true),
                Err(_) => return false,
            },
        };
        let Ok(connecting) = endpoint.connect_with(self.config.clone(), target, HUB_SERVER_NAME)
        else {
            return false;
        };
        match tokio::time::timeout(REACH_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => {
                conn.close(
                    CloseCode::Done.to_varint(),
                    b"checking that the hub is alive",
                );
                // A socket of its own waits for the close to leave; a shared one never idles.
                if own {
                    endpoint.wait_idle().await;
                }
                true
            }
            Ok(Err(e)) => {
                debug!(%target, "the other hub did not answer: {e}");
                false
            }
            Err(_) => false,
        }
    }
}
