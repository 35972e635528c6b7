//! A hostile but enrolled agent: it enrols with a real join token and speaks the session protocol
//! with a real agent certificate over real QUIC, but every frame and datagram is the test's choice.
//! What a compromised device (or anyone holding a leaked fleet token) can send the hub.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use outpost_certs::{certs_from_pem, pinned_client_config, AgentKey, Fingerprint, HUB_SERVER_NAME};
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::{
    self, AgentMessage, Datagram, EnrollReply, EnrollRequest, HubMessage, Welcome, ALPN_ENROLL,
    ALPN_SESSION, MAX_CONTROL_FRAME, MAX_ENROLL_FRAME,
};
use outpost_protocol::{AgentId, EndpointId};
use rustls::pki_types::CertificateDer;

use crate::Hub;

/// An enrolled device identity, held by the test.
#[derive(Debug)]
pub struct RawAgent {
    /// The endpoint the hub made (or bound) for it.
    pub endpoint: EndpointId,
    /// Whether it waits for approval (enrolled through a fleet token).
    pub pending: bool,
    hub_addr: SocketAddr,
    pin: Fingerprint,
    agent_id: AgentId,
    cert: CertificateDer<'static>,
    key: AgentKey,
}

/// One session of a [`RawAgent`], past hello and welcome.
#[derive(Debug)]
pub struct RawSession {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// The control stream, agent → hub.
    pub send: quinn::SendStream,
    /// The control stream, hub → agent.
    pub recv: quinn::RecvStream,
    /// What the hub said first.
    pub welcome: Welcome,
}

/// A QUIC client endpoint on loopback that trusts the hub's CA by its pin, presenting `client`.
fn dial(
    hub: SocketAddr,
    pin: Fingerprint,
    client: Option<outpost_certs::ClientAuth>,
    alpn: &[u8],
    transport: quinn::TransportConfig,
) -> anyhow::Result<quinn::Connecting> {
    let (tls, _) = pinned_client_config(pin, client, &[alpn])?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
    Ok(endpoint.connect(hub, HUB_SERVER_NAME)?)
}

impl RawAgent {
    /// Enrol with `edge_key` as a new device would.
    pub async fn enrol(hub: &Hub, edge_key: &str) -> anyhow::Result<Self> {
        let token = JoinToken::decode(edge_key)?;
        let ca = std::fs::read_to_string(hub.data_dir.join("ca.pem"))?;
        let pin = Fingerprint::of(&certs_from_pem(&ca)?[0]);
        let hub_addr: SocketAddr = hub.agent_addr.parse()?;
        let key = AgentKey::generate()?;
        let agent_id = AgentId::generate();
        let request = EnrollRequest {
            endpoint: token.endpoint,
            secret: token.secret,
            agent_id,
            csr_der: key.csr_der(agent_id.0)?,
            agent_version: "raw-test-agent".into(),
        };
        let conn = dial(hub_addr, pin, None, ALPN_ENROLL, Default::default())?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&wire::encode_frame(&request)).await?;
        let reply = wire::read_frame(&mut recv, MAX_ENROLL_FRAME).await?;
        conn.close(0u32.into(), b"");
        let EnrollReply::Accepted(enrolled) = reply else {
            bail!("enrolment refused: {reply:?}");
        };
        Ok(Self {
            endpoint: enrolled.endpoint,
            pending: enrolled.pending_approval,
            hub_addr,
            pin,
            agent_id,
            cert: CertificateDer::from(enrolled.cert_der),
            key,
        })
    }

    /// Connect with the issued certificate, say hello and read the welcome.
    pub async fn connect(&self) -> anyhow::Result<RawSession> {
        self.connect_with(quinn::TransportConfig::default()).await
    }

    /// [`Self::connect`] with `transport` (a small stream window plays an agent that reads slowly).
    pub async fn connect_with(
        &self,
        transport: quinn::TransportConfig,
    ) -> anyhow::Result<RawSession> {
        let client = (vec![self.cert.clone()], self.key.private_key_der());
        let conn = dial(
            self.hub_addr,
            self.pin,
            Some(client),
            ALPN_SESSION,
            transport,
        )?
        .await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = AgentMessage::Hello {
            agent_version: "raw-test-agent".into(),
        };
        wire::write_frame(&mut send, &hello).await?;
        let first = wire::read_frame(&mut recv, MAX_CONTROL_FRAME).await;
        let HubMessage::Welcome(welcome) = first.context("welcome")? else {
            bail!("the hub did not start with a welcome");
        };
        Ok(RawSession {
            conn,
            send,
            recv,
            welcome,
        })
    }
}

impl RawAgent {
    /// A certificate renewal request for this device's key, as the agent sends it.
    pub fn renewal(&self) -> anyhow::Result<AgentMessage> {
        Ok(AgentMessage::Renew {
            csr_der: self.key.csr_der(self.agent_id.0)?,
        })
    }
}

impl RawSession {
    /// Send one control frame.
    pub async fn send(&mut self, message: &AgentMessage) -> anyhow::Result<()> {
        Ok(wire::write_frame(&mut self.send, message).await?)
    }

    /// Read the next control frame from the hub.
    pub async fn read(&mut self) -> anyhow::Result<HubMessage> {
        Ok(wire::read_frame(&mut self.recv, MAX_CONTROL_FRAME).await?)
    }

    /// Send one check-in datagram.
    pub fn check_in(&self, seq: u32) -> anyhow::Result<()> {
        let datagram = wire::encode_datagram(&Datagram::CheckIn { seq });
        Ok(self.conn.send_datagram(datagram.into())?)
    }
}
