//! Speaking the enrolment (and session) protocol directly over QUIC, as an attacker would: no agent binary, any
//! request, any number of connections held open for as long as the hub allows.

use std::sync::Arc;

use outpost_certs::{
    certs_from_pem, pinned_client_config, AgentKey, ClientAuth, Fingerprint, HUB_SERVER_NAME,
};
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::{self, EnrollReply, EnrollRequest, ALPN_ENROLL, MAX_ENROLL_FRAME};
use outpost_protocol::{AgentId, Secret};

use crate::Hub;

/// A QUIC client endpoint that trusts `hub`'s CA (which is not secret) and speaks `alpn`.
pub fn client(hub: &Hub, alpn: &[u8]) -> quinn::Endpoint {
    client_with(hub, alpn, None)
}

/// Like [`client`], presenting `auth` (an agent's certificate chain and key) when given.
pub fn client_with(hub: &Hub, alpn: &[u8], auth: Option<ClientAuth>) -> quinn::Endpoint {
    let ca = std::fs::read_to_string(hub.data_dir.join("ca.pem")).expect("hub ca.pem");
    let pin = Fingerprint::of(&certs_from_pem(&ca).expect("hub CA")[0]);
    let (tls, _) = pinned_client_config(pin, auth, &[alpn]).expect("client TLS");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// Complete a handshake with `hub` from `endpoint`.
pub async fn connect(endpoint: &quinn::Endpoint, hub: &Hub) -> quinn::Connection {
    endpoint
        .connect(hub.agent_addr.parse().expect("hub addr"), HUB_SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake")
}

/// A well-formed request for `token`'s endpoint with `secret`, a fresh key and `agent_version`.
pub fn request(token: &JoinToken, secret: Secret, agent_version: &str) -> EnrollRequest {
    let key = AgentKey::generate().expect("key");
    let agent_id = AgentId::generate();
    EnrollRequest {
        endpoint: token.endpoint,
        secret,
        agent_id,
        csr_der: key.csr_der(agent_id.0).expect("csr"),
        agent_version: agent_version.into(),
    }
}

/// Send `request` on a new enrolment connection and read the hub's answer.
pub async fn enrol(hub: &Hub, request: &EnrollRequest) -> EnrollReply {
    let endpoint = client(hub, ALPN_ENROLL);
    let conn = connect(&endpoint, hub).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    wire::write_frame(&mut send, request).await.expect("write");
    let _ = send.finish();
    let reply = wire::read_frame(&mut recv, MAX_ENROLL_FRAME)
        .await
        .expect("reply");
    conn.close(0u32.into(), b"");
    endpoint.wait_idle().await;
    reply
}
