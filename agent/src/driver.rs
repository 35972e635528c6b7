//! The thin async driver around [`outpost_protocol::agent_session::AgentSession`]: it feeds the state machine
//! what arrives (acks, summons, timers) and carries out what it asks, in a fixed order — datagrams,
//! then events, then sleep until the next deadline.
//!
//! A [`SessionObserver`] may watch it (the load tool times check-in acks for thousands of agents);
//! the agent binary passes none.

use outpost_transport::close::CloseCodeVarint as _;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use outpost_protocol::agent_session::{AgentEvent, AgentSession, SessionTiming};
use outpost_protocol::wire::{
    self, AgentMessage, CloseCode, Datagram, HubMessage, RestartNotice, Welcome, WireError,
    MAX_CONTROL_FRAME,
};
use quinn::VarInt;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::docker_host::DockerHost;
use crate::route::RouteWatch;
use crate::{relay, snapshot};
use outpost_protocol::snapshot::EngineSnapshot;

/// How long the hub has to answer the hello.
const WELCOME_DEADLINE: Duration = Duration::from_secs(30);

/// How a session ended.
#[derive(Debug, Error)]
pub enum SessionEnd {
    /// The hub removed this endpoint or revoked its certificate: stop for good.
    #[error("the hub revoked this device: {0}")]
    Revoked(String),
    /// The hub is stopping and asked to be redialled at a random moment within `spread`.
    #[error("the hub is stopping; reconnecting within {spread:?}")]
    HubStopping {
        /// The window the reconnect moment is drawn from.
        spread: Duration,
    },
    /// The connection was lost or closed; reconnect.
    #[error("connection lost: {0}")]
    Lost(String),
}

impl From<quinn::ConnectionError> for SessionEnd {
    fn from(e: quinn::ConnectionError) -> Self {
        match &e {
            quinn::ConnectionError::ApplicationClosed(close)
                if CloseCode::from_varint(close.error_code) == Some(CloseCode::Revoked) =>
            {
                Self::Revoked(String::from_utf8_lossy(&close.reason).into_owned())
            }
            quinn::ConnectionError::ApplicationClosed(close)
                if CloseCode::from_varint(close.error_code) == Some(CloseCode::Stopping) =>
            {
                match RestartNotice::decode(&close.reason) {
                    Some(notice) => Self::HubStopping {
                        spread: notice.spread,
                    },
                    None => Self::Lost(e.to_string()),
                }
            }
            _ => Self::Lost(e.to_string()),
        }
    }
}

impl From<WireError> for SessionEnd {
    fn from(e: WireError) -> Self {
        Self::Lost(format!("control stream: {e}"))
    }
}

/// Watches sessions from outside: what a process running many agents counts. Every method has an
/// empty default.
pub trait SessionObserver: Send + Sync + fmt::Debug {
    /// The hub welcomed the agent: the session is up.
    fn established(&self) {}
    /// A check-in was acknowledged `rtt` after it was sent.
    fn checkin_acked(&self, _rtt: Duration) {}
    /// No session could be set up, or it was lost; the agent retries after a backoff.
    fn interrupted(&self, _cause: &Interruption) {}
}

/// Why the agent is about to reconnect.
#[derive(Debug, Error)]
pub enum Interruption {
    /// The hub could not be reached.
    #[error(transparent)]
    Dial(crate::dial::DialError),
    /// The session ended (not by revocation).
    #[error(transparent)]
    Session(SessionEnd),
}

/// What a session needs from the agent's configuration.
#[derive(Clone, Debug)]
pub struct DriverSetup {
    /// Initial session timing (the hub's welcome overrides it).
    pub session: SessionTiming,
    /// The local engine proxy streams are relayed to.
    pub docker: DockerHost,
    /// Send an engine snapshot as soon as the session is up (first session after start or enrolment).
    pub snapshot_on_connect: bool,
    /// Told what happens to the session, if anyone is watching.
    pub observer: Option<Arc<dyn SessionObserver>>,
    /// Check in at once when the local address that reaches the hub changes ([`crate::route`]).
    pub watch_route: bool,
    /// Renewing the certificate this session connected with ([`crate::renew`]).
    pub renewal: Option<crate::renew::Renewal>,
}

/// Run one session on an authenticated connection until it ends. `on_welcome` sees the hub's
/// greeting (to persist new hub addresses).
pub async fn run(
    conn: &quinn::Connection,
    defaults: DriverSetup,
    on_welcome: impl FnOnce(&Welcome),
) -> Result<(), SessionEnd> {
    serve(conn, defaults, on_welcome)
        .await
        .map_err(|e| ended(conn, e))
}

async fn serve(
    conn: &quinn::Connection,
    defaults: DriverSetup,
    on_welcome: impl FnOnce(&Welcome),
) -> Result<(), SessionEnd> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = AgentMessage::Hello {
        agent_version: env!("CARGO_PKG_VERSION").into(),
    };
    wire::write_frame(&mut send, &hello).await?;
    let first = tokio::select! {
        first = tokio::time::timeout(WELCOME_DEADLINE, wire::read_frame::<HubMessage, _>(&mut recv, MAX_CONTROL_FRAME)) => first,
        closed = conn.closed() => return Err(closed.into()),
    };
    let first = first.map_err(|_| SessionEnd::Lost("no welcome from the hub".into()))?;
    let HubMessage::Welcome(welcome) = first? else {
        return Err(SessionEnd::Lost(
            "the hub did not start with a welcome".into(),
        ));
    };
    on_welcome(&welcome);
    if let Some(observer) = &defaults.observer {
        observer.established();
    }
    info!(endpoint = %welcome.endpoint, pending = welcome.pending_approval, "session established");
    if welcome.pending_approval {
        info!(
            "waiting for an administrator to approve this device (outpost-hub endpoint approve {})",
            welcome.endpoint
        );
    }
    let mut session = AgentSession::new(Instant::now().into_std(), defaults.session);
    session.handle_settings(welcome.settings);
    let (hub_tx, hub_rx) = mpsc::channel(16);
    let reader = tokio::spawn(wire::forward_frames(recv, MAX_CONTROL_FRAME, hub_tx));
    let hub_rx = crate::renew::attach(conn, &mut send, defaults.renewal.clone(), hub_rx).await?;
    let snapshots = Snapshots::new(defaults.docker.clone());
    if defaults.snapshot_on_connect {
        session.request_snapshot(Instant::now().into_std());
    }
    let acks = AckTimer::new(defaults.observer.clone());
    let route = RouteWatch::new(conn.remote_address(), defaults.watch_route);
    let result = drive(
        conn,
        &mut session,
        &mut send,
        hub_rx,
        snapshots,
        acks,
        route,
    )
    .await;
    reader.abort();
    result
}

/// Prefer the connection's close reason (a revocation, say) over the stream error it caused.
fn ended(conn: &quinn::Connection, error: SessionEnd) -> SessionEnd {
    match (conn.close_reason(), error) {
        (Some(reason), SessionEnd::Lost(_)) => reason.into(),
        (_, error) => error,
    }
}

async fn drive(
    conn: &quinn::Connection,
    session: &mut AgentSession,
    send: &mut quinn::SendStream,
    mut hub: mpsc::Receiver<Result<HubMessage, WireError>>,
    mut snapshots: Snapshots,
    mut acks: AckTimer,
    mut route: RouteWatch,
) -> Result<(), SessionEnd> {
    let (closed_tx, mut closed_rx) = mpsc::channel::<()>(64);
    loop {
        while let Some(datagram) = session.poll_transmit() {
            acks.sent(&datagram);
            if let Err(e) = conn.send_datagram(wire::encode(&datagram).into()) {
                debug!("check-in not sent: {e}");
            }
        }
        while let Some(event) = session.poll_event() {
            carry_out(conn, send, event, &snapshots).await?;
        }
        let deadline = session
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => session.handle_timeout(Instant::now().into_std()),
            datagram = conn.read_datagram() => {
                match wire::decode::<Datagram>(&datagram?) {
                    Ok(datagram) => {
                        acks.received(&datagram);
                        session.handle_datagram(Instant::now().into_std(), datagram);
                    }
                    Err(e) => warn!("ignoring a malformed datagram from the hub: {e}"),
                }
            }
            message = hub.recv() => match message {
                Some(Ok(message)) => handle_hub_message(session, message)?,
                Some(Err(WireError::Closed)) | None => return Err(conn.closed().await.into()),
                Some(Err(e)) => return Err(e.into()),
            },
            stream = conn.accept_bi() => {
                let (send, recv) = stream?;
                session.handle_stream_opened(Instant::now().into_std());
                debug!(open = session.open_streams(), "proxy stream opened");
                let docker = snapshots.docker.clone();
                let closed = closed_tx.clone();
                tokio::spawn(async move {
                    match relay::serve(send, recv, &docker).await {
                        Ok(moved) => debug!(?moved, "proxy stream done"),
                        Err(e) => info!("proxy stream ended: {e}"),
                    }
                    let _ = closed.send(()).await;
                });
            }
            Some(snapshot) = snapshots.ready.recv() => {
                debug!(containers = snapshot.containers.len(), "sending engine snapshot");
                wire::write_frame(send, &AgentMessage::Snapshot(snapshot)).await?;
            }
            Some(()) = closed_rx.recv() => {
                session.handle_stream_closed(Instant::now().into_std());
                info!(open = session.open_streams(), "proxy stream closed");
            }
            source = route.changed() => {
                info!(?source, "the local address that reaches the hub changed; checking in now");
                session.handle_path_change(Instant::now().into_std());
            }
            closed = conn.closed() => return Err(closed.into()),
        }
    }
}

fn handle_hub_message(session: &mut AgentSession, message: HubMessage) -> Result<(), SessionEnd> {
    let now = Instant::now().into_std();
    match message {
        HubMessage::Summon { id } => session.handle_summon(now, id),
        HubMessage::Approved => info!("an administrator approved this device"),
        HubMessage::Settings(settings) => session.handle_settings(settings),
        HubMessage::Welcome(_) => {
            return Err(SessionEnd::Lost("the hub sent a second welcome".into()))
        }
        HubMessage::Renewed { .. } => debug!("a renewed certificate this session did not ask for"),
    }
    Ok(())
}

/// Times check-ins for the observer: the last one sent, matched against acks by sequence number.
struct AckTimer {
    observer: Option<Arc<dyn SessionObserver>>,
    last: Option<(u32, Instant)>,
}

impl AckTimer {
    fn new(observer: Option<Arc<dyn SessionObserver>>) -> Self {
        Self {
            observer,
            last: None,
        }
    }

    fn sent(&mut self, datagram: &Datagram) {
        if let (Some(_), Datagram::CheckIn { seq }) = (&self.observer, datagram) {
            self.last = Some((*seq, Instant::now()));
        }
    }

    fn received(&mut self, datagram: &Datagram) {
        let (Some(observer), Datagram::Ack { seq, .. }) = (&self.observer, datagram) else {
            return;
        };
        if let Some((_, sent)) = self.last.filter(|(sent_seq, _)| sent_seq == seq) {
            observer.checkin_acked(sent.elapsed());
            self.last = None;
        }
    }
}

/// Engine snapshots are taken off the driver (a slow engine must not stall check-ins) and handed
/// back through a channel to be sent on the control stream. The session paces them
/// ([`AgentEvent::TakeSnapshot`]); [`snapshot::take`] trims each to the hub's budget.
struct Snapshots {
    docker: DockerHost,
    taken: mpsc::Sender<EngineSnapshot>,
    ready: mpsc::Receiver<EngineSnapshot>,
}

impl Snapshots {
    fn new(docker: DockerHost) -> Self {
        let (taken, ready) = mpsc::channel(1);
        Self {
            docker,
            taken,
            ready,
        }
    }

    fn take(&self) {
        let docker = self.docker.clone();
        let taken = self.taken.clone();
        tokio::spawn(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let _ = taken.send(snapshot::take_from(&docker, now).await).await;
        });
    }
}

async fn carry_out(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    event: AgentEvent,
    snapshots: &Snapshots,
) -> Result<(), SessionEnd> {
    match event {
        AgentEvent::GrantStreams(count) => {
            conn.set_max_concurrent_bi_streams(VarInt::from_u32(count));
        }
        AgentEvent::SendReady(id) => {
            debug!(id, "summoned");
            wire::write_frame(send, &AgentMessage::Ready { id }).await?;
        }
        AgentEvent::EnterStandby => {
            conn.set_max_concurrent_bi_streams(VarInt::from_u32(0));
            wire::write_frame(send, &AgentMessage::Standby).await?;
            info!("back to standby");
        }
        AgentEvent::TakeSnapshot => snapshots.take(),
        AgentEvent::HubSilent { missed } => {
            warn!(missed, "the hub has not acknowledged the last check-ins");
        }
    }
    Ok(())
}
