//! The connection ids an agent issues, and the client endpoint that issues them.
//!
//! Every packet the hub sends to an agent starts with one of the agent's connection ids. quinn's
//! default is 8 bytes from a keyed hash: a server's way to recognise its own ids after a restart
//! (the hub does that with its own ids, `outpost-hub`'s `agent_link::connection_ids`). An agent's
//! endpoint holds a few connections (the hub, a reach probe, a tunnel; a `swarm` socket a few
//! thousand), so 4 random bytes keep its ids unique (quinn draws again on a clash) and unlinkable
//! across paths, and save 4 bytes on every hub → agent packet: 0.27 % of a 10 MB `docker load`'s
//! bytes, ~2 % of an idle check-in's.

use std::net::SocketAddr;
use std::sync::Arc;

/// Bytes in each connection id an agent issues.
pub const AGENT_CID_LEN: usize = 4;

/// quinn's endpoint settings for an agent: its own connection ids [`AGENT_CID_LEN`] bytes long.
pub fn agent_endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(|| Box::new(quinn_proto::RandomConnectionIdGenerator::new(AGENT_CID_LEN)));
    config
}

/// A client endpoint on a new UDP socket bound to `bind` (dual-stack when `bind` is IPv6), with
/// [`agent_endpoint_config`]: `quinn::Endpoint::client` with an agent's connection ids.
pub fn agent_endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    agent_endpoint_on(bound_socket(bind)?)
}

/// A client endpoint with [`agent_endpoint_config`] on `socket`, already bound.
pub fn agent_endpoint_on(socket: std::net::UdpSocket) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        agent_endpoint_config(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

fn bound_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if bind.is_ipv6() {
        // As quinn's own client endpoint: dual-stack where the platform allows it.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&bind.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent's first Initial packet names its own connection id (the source id of the long
    /// header, which every later packet from the hub carries): [`AGENT_CID_LEN`] bytes.
    #[tokio::test]
    async fn an_agent_endpoint_issues_four_byte_ids() {
        let listener = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let endpoint = agent_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let client = quinn::ClientConfig::new(Arc::new(crypto));
        let _connecting = endpoint
            .connect_with(client, listener.local_addr().unwrap(), "hub")
            .unwrap();
        let mut initial = [0u8; 1500];
        let (len, _) = listener.recv_from(&mut initial).await.unwrap();
        let initial = &initial[..len];
        assert_eq!(initial[0] & 0xc0, 0xc0, "a long header");
        let dcid_len = usize::from(initial[5]);
        let scid_len = usize::from(initial[6 + dcid_len]);
        assert_eq!(scid_len, AGENT_CID_LEN);
    }
}
