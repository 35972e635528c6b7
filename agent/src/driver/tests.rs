//! The driver against a scripted hub on a real loopback QUIC connection.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_protocol::wire::{read_frame, EndpointTiming, ALPN_SESSION};
use outpost_protocol::EndpointId;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::io::AsyncReadExt;

use super::*;

/// The hub's receive window on each stream: the hello fits, an engine snapshot does not.
const HUB_STREAM_WINDOW: u32 = 32;
/// How long the hub waits for what a working driver does at once (or within a 1 s check-in
/// interval); only a broken driver ever waits it out.
const PATIENCE: Duration = Duration::from_secs(30);

/// The hub's and the agent's ends of a loopback session connection. The agent grants no streams
/// until summoned, as its dialer's profiles do.
async fn connect(dir: &tempfile::TempDir) -> (quinn::Connection, quinn::Connection) {
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let tls = QuicServerConfig::try_from(pki.server_config(&[ALPN_SESSION]).unwrap()).unwrap();
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(tls));
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(VarInt::from_u32(HUB_STREAM_WINDOW));
    server_config.transport_config(Arc::new(transport));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let (tls, _) = pinned_client_config(pki.ca_fingerprint(), None, &[ALPN_SESSION]).unwrap();
    let mut client_config =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(0));
    client_config.transport_config(Arc::new(transport));
    let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let dial = client
        .connect_with(client_config, server.local_addr().unwrap(), HUB_SERVER_NAME)
        .unwrap();
    let (agent, hub) = tokio::join!(dial, async {
        server.accept().await.unwrap().await.unwrap()
    });
    (hub, agent.unwrap())
}

fn setup(docker: DockerHost) -> DriverSetup {
    DriverSetup {
        session: SessionTiming {
            checkin_interval: Duration::from_secs(25),
            standby_after: Duration::from_secs(60),
            ack_timeout: Duration::from_secs(5),
            max_missed_acks: 3,
            stream_credit: 8,
        },
        docker,
        snapshot_on_connect: true,
        observer: None,
        watch_route: false,
        renewal: None,
        deployer: None,
    }
}

async fn next_checkin(hub: &quinn::Connection) -> u32 {
    loop {
        let bytes = hub
            .read_datagram()
            .await
            .expect("the connection ended before the next check-in");
        if let Ok(Datagram::CheckIn { seq }) = wire::decode(&bytes) {
            return seq;
        }
    }
}

/// The snapshot's write waits for credit the hub never gives; meanwhile the agent must still check
/// in and answer a summon. A driver that awaited the write inside its loop did neither.
#[tokio::test]
async fn a_write_the_hub_does_not_read_holds_up_neither_checkins_nor_summons() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, agent) = connect(&dir).await;
    // No engine here: the snapshot reports the missing socket, a frame of a few hundred bytes.
    let docker = DockerHost::Unix(dir.path().join("docker.sock"));
    let agent = tokio::spawn(async move { run(&agent, setup(docker), |_| {}).await });

    let (mut to_agent, mut from_agent) = hub.accept_bi().await.unwrap();
    let hello: AgentMessage = read_frame(&mut from_agent, MAX_CONTROL_FRAME)
        .await
        .unwrap();
    assert!(matches!(hello, AgentMessage::Hello { .. }), "{hello:?}");
    let welcome = HubMessage::Welcome(Welcome {
        endpoint: EndpointId(1),
        pending_approval: false,
        settings: EndpointTiming {
            checkin_interval_ms: 1_000,
            standby_after_ms: 600_000,
        },
        hub_addrs: Vec::new(),
    });
    wire::write_frame(&mut to_agent, &welcome).await.unwrap();

    // The snapshot's length arrives, and then the rest of it waits for credit.
    let announced = from_agent.read_u32().await.unwrap() as usize;
    assert!(
        announced > 2 * HUB_STREAM_WINDOW as usize,
        "the snapshot ({announced} bytes) must not fit the window"
    );
    let first = next_checkin(&hub).await;
    let acked = Datagram::Ack {
        seq: first,
        interval_s: 1,
    };
    hub.send_datagram(wire::encode_datagram(&acked).into())
        .unwrap();
    let later = tokio::time::timeout(PATIENCE, next_checkin(&hub)).await;
    assert!(
        later.is_ok_and(|seq| seq > first),
        "no check-in while the write waits"
    );
    wire::write_frame(&mut to_agent, &HubMessage::Summon { id: 7 })
        .await
        .unwrap();
    let granted = tokio::time::timeout(PATIENCE, hub.open_bi()).await;
    assert!(
        granted.is_ok(),
        "the summon was not answered with stream credit"
    );

    // Once the hub reads again, the queued frames follow the snapshot in order.
    let mut body = vec![0; announced];
    from_agent.read_exact(&mut body).await.unwrap();
    let snapshot: AgentMessage = wire::decode(&body).unwrap();
    assert!(
        matches!(snapshot, AgentMessage::Snapshot(_)),
        "{snapshot:?}"
    );
    let ready: AgentMessage = read_frame(&mut from_agent, MAX_CONTROL_FRAME)
        .await
        .unwrap();
    assert_eq!(ready, AgentMessage::Ready { id: 7 });
    agent.abort();
}
