//! One target's dial by either path: a QUIC handshake on a UDP endpoint, or a tunnel to the hub
//! and the same handshake through it (with the tunnel's fixed-window transport config).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::{Fingerprint, PinReport, HUB_SERVER_NAME};

use super::DialError;
use crate::tunnel::{self, TcpRoute, Tunnel, TunnelFailure};

/// One target's dial, by either path.
pub(super) struct Attempt<'a> {
    pub(super) target: SocketAddr,
    pub(super) config: &'a quinn::ClientConfig,
    /// The transport config of a connection inside a tunnel (a fixed window: TCP controls it).
    pub(super) tunnel_transport: Arc<quinn::TransportConfig>,
    pub(super) timeout: Duration,
    pub(super) pin: Fingerprint,
}

impl Attempt<'_> {
    fn unreachable(&self, why: String) -> DialError {
        DialError::Unreachable {
            addrs: vec![self.target.to_string()],
            last: why,
        }
    }

    /// A handshake on `endpoint` with `config` within the timeout.
    async fn handshake(
        &self,
        endpoint: &quinn::Endpoint,
        config: quinn::ClientConfig,
        report: &PinReport,
    ) -> Result<quinn::Connection, DialError> {
        report.clear();
        let connecting = endpoint
            .connect_with(config, self.target, HUB_SERVER_NAME)
            .map_err(|e| self.unreachable(e.to_string()))?;
        let result = tokio::time::timeout(self.timeout, connecting).await;
        if let Some(presented) = report.mismatch() {
            return Err(DialError::WrongHub {
                addr: self.target,
                expected: self.pin,
                presented,
            });
        }
        match result {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.unreachable(e.to_string())),
            Err(_) => Err(self.unreachable(format!("no handshake within {:?}", self.timeout))),
        }
    }

    pub(super) async fn quic(
        &self,
        endpoint: &quinn::Endpoint,
        report: &PinReport,
    ) -> Result<quinn::Connection, DialError> {
        self.handshake(endpoint, self.config.clone(), report).await
    }

    /// A tunnel, then the QUIC handshake through it.
    pub(super) async fn tunnel(
        &self,
        host: &str,
        route: &TcpRoute,
        reason: &str,
    ) -> Result<(quinn::Connection, Tunnel), DialError> {
        let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
        let opened = tokio::time::timeout(
            self.timeout,
            tunnel::open(self.target, host, route, self.pin, reason),
        )
        .await
        .map_err(|_| self.unreachable(format!("no tunnel within {:?}", self.timeout)))?
        .map_err(|failure| match failure {
            TunnelFailure::WrongHub(presented) => DialError::WrongHub {
                addr: self.target,
                expected: self.pin,
                presented,
            },
            TunnelFailure::Unreachable(why) => self.unreachable(why),
        })?;
        // The tunnel's TLS checked the pin already; the handshake inside checks it again.
        let report = PinReport::default();
        let mut config = self.config.clone();
        config.transport_config(self.tunnel_transport.clone());
        let conn = self.handshake(&opened.endpoint, config, &report).await?;
        Ok((conn, opened))
    }
}
