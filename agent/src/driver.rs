//! The thin async driver around [`outpost_protocol::agent_session::AgentSession`]: it feeds the state machine
//! what arrives (acks, summons, timers) and carries out what it asks, in a fixed order — datagrams,
//! then events, then sleep until the next deadline.
//!
//! No `select!` branch awaits I/O: control frames are queued and written from a branch of their
//! own, and frames are read the same way, each by a future pinned across iterations that owns its
//! half of the control stream while it runs (`driver/outbox.rs`).
//!
//! A [`SessionObserver`] may watch it (the load tool times check-in acks for thousands of agents);
//! the agent binary passes none.
//!
//! This file is the driver itself: setting a session up and its loop. What the loop hands work to
//! lives beside it, one part each: how a session ends (`driver/end.rs`), the control frames
//! waiting to be written (`driver/outbox.rs`), the stack worker (`driver/deploying.rs`), the job
//! runner (`driver/jobs.rs`), the loopback registry (`driver/registry.rs`), engine snapshots
//! (`driver/snapshots.rs`) and what a silent hub makes it check (`driver/silence.rs`).

use outpost_transport::profile::idle_timeout_for;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use outpost_protocol::agent_session::{AgentEvent, AgentSession, SessionTiming};
use outpost_protocol::stream::STANDBY_STREAMS;
use outpost_protocol::wire::{
    self, AgentMessage, Datagram, HubMessage, Welcome, WireError, MAX_CONTROL_FRAME,
};
use quinn::VarInt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::deploy::Deployer;
use crate::docker_host::DockerHost;
use crate::hub_reach::HubReach;
use crate::job::JobRunner;
use crate::loopback::HubLink;
use crate::route::RouteWatch;
use crate::tunnel::TcpReach;
use crate::{relay, renew};
use deploying::{next_status, Deploying};
use end::ended;
pub use end::{Interruption, SessionEnd, SessionObserver};
use jobs::{features, Jobs};
use outbox::{Backlog, Outbox};
use outpost_protocol::token::check_hub_addrs;
use outpost_protocol::window::TransferWindow;
use registry::Registry;
use silence::SilenceChecks;
use snapshots::Snapshots;

mod deploying;
mod end;
mod jobs;
mod outbox;
mod registry;
mod silence;
mod snapshots;

/// How long the hub has to answer the hello.
const WELCOME_DEADLINE: Duration = Duration::from_secs(30);

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
    pub renewal: Option<renew::Renewal>,
    /// The agent's stack worker, when it applies stacks ([`crate::deploy`]).
    pub deployer: Option<Arc<Deployer>>,
    /// The agent's job runner, when it runs jobs ([`crate::job`]).
    pub jobs: Option<JobRunner>,
    /// The loopback registry's link to the hub, when it serves one ([`crate::loopback`]).
    pub registry: Option<HubLink>,
    /// How to ask whether the hub answers over TCP when check-ins go unanswered, for a session on
    /// UDP that may fall back ([`crate::tunnel::TcpReach`]).
    pub tcp_reach: Option<TcpReach>,
    /// How to ask whether another hub of the fleet answers when check-ins go unanswered
    /// ([`crate::hub_reach`]).
    pub hub_reach: Option<HubReach>,
    /// Where the driver leaves the fleet's hub addresses the hub sent mid-session, for the agent
    /// to remember (as it does a `Welcome`'s).
    pub heard_hub_addrs: Arc<Mutex<Option<Vec<String>>>>,
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
    let mut snapshots = Snapshots::new(defaults.docker.clone());
    let snapshot_taken = defaults.snapshot_on_connect.then(|| {
        snapshots.take();
        Instant::now()
    });
    let (mut send, recv) = conn.open_bi().await?;
    let hello = AgentMessage::Hello {
        agent_version: env!("CARGO_PKG_VERSION").into(),
    };
    wire::write_frame(&mut send, &hello).await?;
    let mut outbox = Outbox::default();
    if snapshot_taken.is_some() {
        snapshots
            .send_behind_hello(conn, &mut send, &mut outbox)
            .await?;
    }
    let (recv, welcome) = welcome(conn, recv).await?;
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
    let renewing = match renew::attach(conn, defaults.renewal.clone()) {
        Some((request, requested)) => {
            outbox.push(&request)?;
            Some(requested)
        }
        None => None,
    };
    if let Some(taken) = snapshot_taken {
        session.handle_snapshot_taken(taken.into_std());
    }
    let deploying = defaults
        .deployer
        .map(|deployer| Deploying::open(deployer, &mut session, &mut outbox))
        .transpose()?;
    let deploys = deploying.is_some();
    let registry = defaults.registry.is_some();
    let features = features(deploys, defaults.jobs.is_some(), registry);
    outbox.push(&AgentMessage::Features(features))?;
    let jobs = defaults.jobs.map(Jobs::open);
    conn.set_max_idle_timeout(Some(idle_timeout_for(session.checkin_interval())));
    let driver = Driver {
        conn,
        interval: session.checkin_interval(),
        session,
        outbox,
        snapshots,
        route: RouteWatch::new(conn.remote_address(), defaults.watch_route),
        observer: defaults.observer,
        renewing,
        deploying,
        jobs,
        registry: defaults.registry.map(Registry::start),
        silence: SilenceChecks::new(defaults.tcp_reach, defaults.hub_reach),
        heard_hub_addrs: defaults.heard_hub_addrs,
    };
    driver.drive(send, recv).await
}

/// The hub's welcome, the first frame it sends, with the stream handed back for the rest.
async fn welcome(
    conn: &quinn::Connection,
    recv: quinn::RecvStream,
) -> Result<(quinn::RecvStream, Welcome), SessionEnd> {
    let first = tokio::select! {
        first = tokio::time::timeout(WELCOME_DEADLINE, wire::next_frame::<HubMessage, _>(recv, MAX_CONTROL_FRAME)) => first,
        closed = conn.closed() => return Err(closed.into()),
    };
    let (recv, first) = first.map_err(|_| SessionEnd::Lost("no welcome from the hub".into()))?;
    let HubMessage::Welcome(welcome) = first? else {
        return Err(SessionEnd::Lost(
            "the hub did not start with a welcome".into(),
        ));
    };
    Ok((recv, welcome))
}

/// One welcomed session: the state machine and what carries out its decisions.
struct Driver<'c> {
    conn: &'c quinn::Connection,
    /// The check-in interval the connection's idle timeout was set for.
    interval: Duration,
    session: AgentSession,
    outbox: Outbox,
    snapshots: Snapshots,
    route: RouteWatch,
    observer: Option<Arc<dyn SessionObserver>>,
    renewing: Option<renew::Requested>,
    deploying: Option<Deploying>,
    jobs: Option<Jobs>,
    registry: Option<Registry>,
    /// What a silent hub makes the driver check.
    silence: SilenceChecks,
    heard_hub_addrs: Arc<Mutex<Option<Vec<String>>>>,
}

impl Driver<'_> {
    /// The loop: send what the session asks, queue its control frames, then wait for whichever
    /// comes first. Reads and writes of the control stream are futures pinned across iterations,
    /// each owning its half of the stream while it runs, so no branch ever awaits I/O.
    async fn drive(
        mut self,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Result<(), SessionEnd> {
        let conn = self.conn;
        let (closed_tx, mut closed_rx) = mpsc::channel::<()>(64);
        let mut reading = Box::pin(wire::next_frame(recv, MAX_CONTROL_FRAME));
        // Starts with nothing to write; `idle` holds the stream whenever no write runs.
        let mut writing = Box::pin(outbox::write_all(send, Vec::new()));
        let mut idle = None;
        loop {
            self.transmit();
            while let Some(event) = self.session.poll_event() {
                self.carry_out(event)?;
            }
            if let Some(send) = idle.take() {
                match self.outbox.take() {
                    Some(bytes) => writing.set(outbox::write_all(send, bytes)),
                    None => idle = Some(send),
                }
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now().into_std();
                    self.session.handle_received(now, conn.stats().frame_rx.stream);
                    self.session.handle_timeout(now);
                }
                datagram = conn.read_datagram() => self.on_datagram(&datagram?),
                (recv, message) = &mut reading => {
                    reading.set(wire::next_frame(recv, MAX_CONTROL_FRAME));
                    match message {
                        Ok(message) => self.on_hub_message(message)?,
                        Err(WireError::Closed) => return Err(conn.closed().await.into()),
                        Err(e) => return Err(e.into()),
                    }
                }
                (send, written) = &mut writing, if idle.is_none() => {
                    written?;
                    idle = Some(send);
                }
                stream = conn.accept_bi() => {
                    let (send, recv) = stream?;
                    outpost_transport::tail_repair::send_bulk(&send);
                    outpost_transport::tail_repair::receive_bulk(&recv);
                    self.session.handle_stream_opened(Instant::now().into_std());
                    debug!(open = self.session.open_streams(), "proxy stream opened");
                    relay_stream(send, recv, self.snapshots.docker.clone(), closed_tx.clone());
                }
                Some(snapshot) = self.snapshots.ready.recv() => {
                    debug!(containers = snapshot.containers.len(), "sending engine snapshot");
                    self.outbox.push(&AgentMessage::Snapshot(snapshot))?;
                }
                Some(()) = closed_rx.recv() => {
                    self.session.handle_stream_closed(Instant::now().into_std());
                    info!(
                        rebuilt = conn.stats().frame_rx.repaired,
                        open = self.session.open_streams(),
                        "proxy stream closed"
                    );
                }
                status = next_status(&mut self.deploying) => {
                    self.session.set_applied(status.applied);
                    if let Some(report) = status.report {
                        self.outbox.push(&AgentMessage::StackStatus(report))?;
                    }
                }
                message = jobs::next_message(&mut self.jobs), if jobs::room(&self.outbox) => {
                    self.outbox.push(&message)?;
                }
                source = self.route.changed() => {
                    info!(?source, "the local address that reaches the hub changed; checking in now");
                    self.session.handle_path_change(Instant::now().into_std());
                }
                (finding, received) = self.silence.next() => {
                    // Anything received since the check began means the session's path works
                    // again: that was an outage, not a block or a dead hub.
                    if received == conn.stats().udp_rx.datagrams {
                        return Err(silence::end_session(conn, finding));
                    }
                }
                closed = conn.closed() => return Err(closed.into()),
            }
        }
    }

    /// Send the check-ins the session asks for (a datagram never waits).
    fn transmit(&mut self) {
        while let Some(datagram) = self.session.poll_transmit() {
            if let Err(e) = self.conn.send_datagram(wire::encode(&datagram).into()) {
                debug!("check-in not sent: {e}");
            }
        }
    }

    fn on_datagram(&mut self, bytes: &[u8]) {
        match wire::decode::<Datagram>(bytes) {
            Ok(datagram) => {
                self.session
                    .handle_datagram(Instant::now().into_std(), datagram);
                self.keep_idle_timeout();
                let sample = self.session.poll_rtt_sample();
                if let (Some(observer), Some(rtt)) = (&self.observer, sample) {
                    observer.checkin_acked(rtt);
                }
            }
            Err(e) => warn!("ignoring a malformed datagram from the hub: {e}"),
        }
    }

    /// The connection's idle timeout follows the check-in interval the hub asks for (minutes for
    /// a `quiet` device), so a silence the hub asked for never ends the connection.
    fn keep_idle_timeout(&mut self) {
        let interval = self.session.checkin_interval();
        if std::mem::replace(&mut self.interval, interval) != interval {
            info!(?interval, "check-in interval from the hub");
            self.conn
                .set_max_idle_timeout(Some(idle_timeout_for(interval)));
        }
    }

    fn on_hub_message(&mut self, message: HubMessage) -> Result<(), SessionEnd> {
        let now = Instant::now().into_std();
        match message {
            HubMessage::Summon { id } => self.session.handle_summon(now, id),
            HubMessage::Approved => info!("an administrator approved this device"),
            HubMessage::Settings(settings) => self.session.handle_settings(settings),
            HubMessage::Welcome(_) => {
                return Err(SessionEnd::Lost("the hub sent a second welcome".into()))
            }
            HubMessage::Renewed { cert_der } => match &self.renewing {
                Some(requested) => requested.answered(&cert_der),
                None => debug!("a renewed certificate this session did not ask for"),
            },
            HubMessage::Desired(state) => self.deploying()?.deployer.offer(state.into()),
            HubMessage::DesiredOrder(order) => self.deploying()?.deployer.offer(order),
            HubMessage::Job(order) => self.jobs()?.runner.offer(order),
            HubMessage::JobAck { id } => self.jobs()?.runner.ack(id),
            HubMessage::JobCancel { id } => self.jobs()?.runner.cancel(id),
            HubMessage::Registry { streams, upstreams } => match &self.registry {
                Some(registry) => registry.attach(self.conn, streams, upstreams),
                None => debug!("the hub offered a registry this agent does not serve"),
            },
            HubMessage::HubAddrs(addrs) => {
                check_hub_addrs(&addrs).map_err(|e| {
                    SessionEnd::Lost(format!("the hub sent broken hub addresses: {e}"))
                })?;
                info!(?addrs, "the fleet's hubs changed");
                self.silence.set_hub_addrs(&addrs);
                *self
                    .heard_hub_addrs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(addrs);
            }
            HubMessage::TransferWindow(window) => {
                let window = window.map(TransferWindow::check).transpose().map_err(|e| {
                    SessionEnd::Lost(format!("the hub sent a broken transfer window: {e}"))
                })?;
                info!(window = ?window.map(|w| w.to_string()), "the hub set this device's transfer window");
                if let Some(registry) = &self.registry {
                    registry.set_window(window);
                }
            }
        }
        Ok(())
    }

    /// The stack worker; a hub sends stacks only to an agent whose check-ins name an applied
    /// state, which an agent without a stack worker never sends.
    fn deploying(&self) -> Result<&Deploying, SessionEnd> {
        self.deploying.as_ref().ok_or_else(|| {
            SessionEnd::Lost("the hub sent stacks to an agent that applies none".into())
        })
    }

    /// The job runner; a hub sends jobs only to an agent that announced it runs them.
    fn jobs(&self) -> Result<&Jobs, SessionEnd> {
        self.jobs
            .as_ref()
            .ok_or_else(|| SessionEnd::Lost("the hub sent a job to an agent that runs none".into()))
    }

    /// Do what the session decided; control frames are queued, never awaited here.
    fn carry_out(&mut self, event: AgentEvent) -> Result<(), Backlog> {
        match event {
            AgentEvent::GrantStreams(count) => {
                self.conn
                    .set_max_concurrent_bi_streams(VarInt::from_u32(count));
            }
            AgentEvent::SendReady(id) => {
                debug!(id, "summoned");
                self.outbox.push(&AgentMessage::Ready { id })?;
            }
            AgentEvent::EnterStandby => {
                self.conn
                    .set_max_concurrent_bi_streams(VarInt::from_u32(STANDBY_STREAMS));
                self.outbox.push(&AgentMessage::Standby)?;
                info!("back to standby");
            }
            AgentEvent::TakeSnapshot => self.snapshots.take(),
            AgentEvent::HubSilent { missed } => {
                warn!(missed, "the hub has not acknowledged the last check-ins");
                // Silence on UDP is an outage, a block or a dead hub; only a block leaves TCP
                // answering, only a dead hub leaves the fleet's other hubs answering.
                self.silence.start(self.conn.stats().udp_rx.datagrams);
            }
        }
        Ok(())
    }
}

/// Relay one proxy stream on its own task; `closed` hears when it ends.
fn relay_stream(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    docker: DockerHost,
    closed: mpsc::Sender<()>,
) {
    tokio::spawn(async move {
        match relay::serve(send, recv, &docker).await {
            Ok(moved) => debug!(?moved, "proxy stream done"),
            Err(e) => info!("proxy stream ended: {e}"),
        }
        let _ = closed.send(()).await;
    });
}

#[cfg(test)]
mod tests;
