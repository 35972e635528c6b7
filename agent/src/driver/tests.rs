//! The driver against a scripted hub on a real loopback QUIC connection.
#![allow(clippy::unwrap_used)]

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;

use outpost_certs::{pinned_client_config, HubPki, HUB_SERVER_NAME};
use outpost_protocol::job::{EngineMethod, Features, JobOrder, JobOutcome, JobSpec};
use outpost_protocol::wire::{read_frame, EndpointTiming, ALPN_SESSION};
use outpost_protocol::EndpointId;
use outpost_transport::profile;
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
    connect_with_window(dir, HUB_STREAM_WINDOW).await
}

/// [`connect`], with the hub's receive window on each stream `window` bytes.
async fn connect_with_window(
    dir: &tempfile::TempDir,
    window: u32,
) -> (quinn::Connection, quinn::Connection) {
    let pki = HubPki::load_or_create(dir.path(), &[]).unwrap();
    let tls = QuicServerConfig::try_from(pki.server_config(&[ALPN_SESSION]).unwrap()).unwrap();
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(tls));
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(VarInt::from_u32(window));
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
        tcp_reach: None,
        hub_reach: None,
        heard_hub_addrs: Default::default(),
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
        jobs: None,
        registry: None,
    }
}

/// The hub's side of the session's start: the hello read, the welcome sent.
async fn greet(hub: &quinn::Connection) -> (quinn::SendStream, quinn::RecvStream) {
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
    (to_agent, from_agent)
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

    let (mut to_agent, mut from_agent) = greet(&hub).await;

    // The snapshot due at connect follows the hello: its length arrives, and then the rest of it
    // waits for credit, with the features queued behind it.
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
    let features: AgentMessage = read_frame(&mut from_agent, MAX_CONTROL_FRAME)
        .await
        .unwrap();
    assert_eq!(
        features,
        AgentMessage::Features(Features::QUIET.with(Features::HUB_ADDRS)),
        "every agent announces `QUIET`"
    );
    let ready: AgentMessage = read_frame(&mut from_agent, MAX_CONTROL_FRAME)
        .await
        .unwrap();
    assert_eq!(ready, AgentMessage::Ready { id: 7 });
    agent.abort();
}

/// The snapshot due at connect is in the hello's flight: the hub reads it before it has sent the
/// welcome, so a new session knows its engine (and the hub can answer its pings) a round trip
/// sooner. The hello's own features still follow the welcome.
#[tokio::test]
async fn the_snapshot_due_at_connect_reaches_the_hub_before_its_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, agent) = connect_with_window(&dir, profile::HUB_STANDBY_WINDOW).await;
    let docker = DockerHost::Unix(dir.path().join("docker.sock"));
    let agent = tokio::spawn(async move { run(&agent, setup(docker), |_| {}).await });

    let (_to_agent, mut from_agent) = hub.accept_bi().await.unwrap();
    let hello: AgentMessage = read_frame(&mut from_agent, MAX_CONTROL_FRAME)
        .await
        .unwrap();
    assert!(matches!(hello, AgentMessage::Hello { .. }), "{hello:?}");
    let behind = tokio::time::timeout(
        PATIENCE,
        read_frame::<AgentMessage, _>(&mut from_agent, MAX_CONTROL_FRAME),
    )
    .await
    .expect("nothing behind the hello without a welcome")
    .unwrap();
    let AgentMessage::Snapshot(snapshot) = behind else {
        panic!("{behind:?} behind the hello");
    };
    assert!(
        snapshot.error.is_some(),
        "the snapshot says the engine is missing: {snapshot:?}"
    );
    agent.abort();
}

/// An Engine API job: the engine is absent in these tests, so it fails saying so.
fn ping(id: u64) -> JobOrder {
    JobOrder {
        id,
        spec: JobSpec::Engine {
            method: EngineMethod::Get,
            path: "/_ping".to_owned(),
            body: Vec::new(),
        },
        expires_in_ms: 60_000,
        timeout_ms: 10_000,
    }
}

async fn next_message(from_agent: &mut quinn::RecvStream) -> AgentMessage {
    let read = read_frame(from_agent, MAX_CONTROL_FRAME);
    tokio::time::timeout(PATIENCE, read).await.unwrap().unwrap()
}

fn failed(message: &AgentMessage, id: u64) -> bool {
    matches!(message, AgentMessage::JobResult(r) if r.id == id && matches!(r.outcome, JobOutcome::Failed(_)))
}

/// Leave the results of jobs `ids` held in `journal`, as an agent that ran them and restarted
/// would find them.
async fn hold_results(docker: &DockerHost, journal: &Path, ids: RangeInclusive<u64>) {
    let before = JobRunner::start(docker.clone(), journal).unwrap();
    let mut mail = before.attach();
    let count = ids.clone().count();
    for id in ids {
        before.offer(ping(id));
    }
    let mut ended = 0;
    while ended < count {
        if let AgentMessage::JobResult(_) = mail.recv().await.unwrap() {
            ended += 1;
        }
    }
}

/// A result held from before (the agent restarted) goes right after the announcement; an order
/// is started and answered; an acknowledgement lets the journal forget the result.
#[tokio::test]
async fn jobs_are_announced_then_held_results_resent_and_orders_answered() {
    let dir = tempfile::tempdir().unwrap();
    let docker = DockerHost::Unix(dir.path().join("docker.sock"));
    let journal = dir.path().join("jobs");
    hold_results(&docker, &journal, 1..=1).await;
    let (hub, agent) = connect(&dir).await;
    let mut jobs = setup(docker.clone());
    jobs.snapshot_on_connect = false;
    jobs.jobs = Some(JobRunner::start(docker, &journal).unwrap());
    let agent = tokio::spawn(async move { run(&agent, jobs, |_| {}).await });

    let (mut to_agent, mut from_agent) = greet(&hub).await;
    let features = next_message(&mut from_agent).await;
    assert_eq!(
        features,
        AgentMessage::Features(
            Features::QUIET
                .with(Features::HUB_ADDRS)
                .with(Features::JOBS)
        )
    );
    assert!(failed(&next_message(&mut from_agent).await, 1), "held");
    wire::write_frame(&mut to_agent, &HubMessage::JobAck { id: 1 })
        .await
        .unwrap();
    wire::write_frame(&mut to_agent, &HubMessage::Job(ping(2)))
        .await
        .unwrap();

    let started = next_message(&mut from_agent).await;
    assert_eq!(started, AgentMessage::JobStarted { id: 2 });
    let ended = next_message(&mut from_agent).await;
    let AgentMessage::JobResult(result) = &ended else {
        panic!("{ended:?}");
    };
    let JobOutcome::Failed(reason) = &result.outcome else {
        panic!("{result:?}");
    };
    assert!(reason.contains("not reachable"), "{reason}");
    let forgotten = async {
        while !journal.join("1.done").exists() || journal.join("1.result").exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert!(tokio::time::timeout(PATIENCE, forgotten).await.is_ok());
    agent.abort();
}

/// A hub that sends a job to an agent that announced none breaks the protocol.
#[tokio::test]
async fn an_agent_without_a_runner_ends_the_session_on_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, agent) = connect(&dir).await;
    let mut plain = setup(DockerHost::Unix(dir.path().join("docker.sock")));
    plain.snapshot_on_connect = false;
    let agent = tokio::spawn(async move { run(&agent, plain, |_| {}).await });

    let (mut to_agent, _from_agent) = greet(&hub).await;
    wire::write_frame(&mut to_agent, &HubMessage::Job(ping(1)))
        .await
        .unwrap();

    let ended = tokio::time::timeout(PATIENCE, agent)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&ended, Err(SessionEnd::Lost(why)) if why.contains("runs none")),
        "{ended:?}"
    );
}

/// More held results than the outbox has room for go out as the hub reads them (its window is a
/// few bytes): the session neither drops one nor ends on a full outbox.
#[tokio::test]
async fn a_thousand_held_results_are_sent_as_the_hub_reads_them() {
    const HELD: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let docker = DockerHost::Unix(dir.path().join("docker.sock"));
    let journal = dir.path().join("jobs");
    hold_results(&docker, &journal, 1..=HELD).await;
    let (hub, agent) = connect(&dir).await;
    let mut jobs = setup(docker.clone());
    jobs.snapshot_on_connect = false;
    jobs.jobs = Some(JobRunner::start(docker, &journal).unwrap());
    let agent = tokio::spawn(async move { run(&agent, jobs, |_| {}).await });

    let (_to_agent, mut from_agent) = greet(&hub).await;
    let features = next_message(&mut from_agent).await;
    assert_eq!(
        features,
        AgentMessage::Features(
            Features::QUIET
                .with(Features::HUB_ADDRS)
                .with(Features::JOBS)
        )
    );
    for id in 1..=HELD {
        assert!(failed(&next_message(&mut from_agent).await, id), "{id}");
    }
    assert!(!agent.is_finished(), "the session is up");
    agent.abort();
}
