//! One agent session: authenticate the certificate against the store, then drive the control stream
//! and the check-in datagrams until the connection ends.
//!
//! The driver is thin: one loop per connection feeds the session ([`crate::session`], through its
//! registry handle) what arrives and carries out what it answers: acks, window grants, frames to
//! send. Frame reads are not cancel-safe, so the read of the next control frame is one future kept
//! across iterations of the `select!` rather than a task of its own: one task per agent (plus
//! quinn's connection driver), which matters at tens of thousands of agents. Writes are the same
//! shape the other way ([`super::outbox`]): no branch awaits a write, so a write parked on the
//! agent's flow control never stops acks, summons or standby.
//!
//! The task's future is what an idle session costs the hub besides quinn's state, so it holds
//! only the loop's: the set-up and the store's work (a snapshot, a renewal, a delivery, a
//! transfer window) are boxed while they run, and the functions that make up the task are not
//! `async fn`s (see [`drive`]). Its tokio task cell is 768 B per connected agent, 2,048 B when the
//! handshake and the store's futures were held inline (heaptrack at 400 agents, `idle_agents`).

use outpost_transport::close::CloseCodeVarint as _;
use outpost_transport::congestion::path_memory_of;
use std::future::{poll_fn, Future};
use std::sync::Arc;

use outpost_protocol::job::{Features, JobSpec};
use outpost_protocol::snapshot::EngineSnapshot;
use outpost_protocol::wire::{
    self, AgentMessage, CloseCode, HubMessage, WireError, MAX_CONTROL_FRAME,
};
use thiserror::Error;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::establish::{establish, Established, HELLO_DEADLINE};
use super::fetch::FetchStreams;
use super::outbox::Outbox;
use super::reports::{answer_checkin, store_snapshot};
use super::windows::WindowGrant;
use crate::context::HubContext;
use crate::registry::{Control, LiveSession};
use crate::session::delivery::Deliver;
use crate::session::{Renewal, WindowChange};
use crate::store::{traffic, StoreError};
use crate::traffic::tally::{Class, Direction};

/// Why a session ended.
#[derive(Debug, Error)]
pub(super) enum SessionError {
    /// The client certificate is missing, unreadable or not an agent's.
    #[error("client certificate refused: {0}")]
    BadCertificate(String),
    /// The certificate was revoked or its endpoint removed.
    #[error("certificate {0} is revoked or unknown")]
    Revoked(String),
    /// The agent did not open its control stream in time.
    #[error("no hello within {HELLO_DEADLINE:?}")]
    NoHello,
    /// The agent broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connection ended.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The control stream failed.
    #[error("control stream: {0}")]
    Wire(#[from] WireError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Run the session on `conn`; `admission` is the handshake slot, held until the session is set up
/// (certificate checked against the store, hello and welcome exchanged). Not an `async fn`, for
/// the reason [`drive`] gives.
#[allow(clippy::manual_async_fn)] // an `async fn` holds `ctx` and `conn` twice
pub(super) fn run(
    ctx: &Arc<HubContext>,
    conn: quinn::Connection,
    admission: OwnedSemaphorePermit,
) -> impl Future<Output = Result<(), SessionError>> + '_ {
    async move {
        // Boxed, so the set-up's futures are freed once it is done and the task that lives as
        // long as the session holds only the driver's state.
        let Established {
            session,
            send,
            recv,
        } = match Box::pin(establish(ctx, &conn)).await {
            Ok(established) => established,
            Err(e) => {
                // A broken hello (wrong first message, an agent version with control characters)
                // is told apart from a hub going away.
                if matches!(e, SessionError::Protocol(_)) {
                    conn.close(
                        CloseCode::ProtocolViolation.to_varint(),
                        e.to_string().as_bytes(),
                    );
                }
                return Err(e);
            }
        };
        drop(admission);
        ctx.fleet.presence(session.endpoint, true);
        let result = drive(ctx, &session, send, recv).await;
        ended(ctx, &session);
        result
    }
}

/// The session ended: take it out of the registry and, unless a newer one replaced it, mark the
/// device offline.
fn ended(ctx: &HubContext, session: &Arc<LiveSession>) {
    ctx.traffic.session_ended(session);
    session.control().close();
    session.enter_standby();
    session.release_summoners();
    ctx.registry.remove(session);
    // A session replaced by the device's newer one leaves the device online (and its ping
    // answer was kept when it was replaced).
    if ctx.registry.get(session.endpoint).is_none() {
        ctx.pings
            .keep(session.endpoint, session.ping_cache(), Instant::now());
        ctx.fleet.presence(session.endpoint, false);
        ctx.jobs.offline(session.endpoint);
    }
    let snapshots = session.snapshot_counts();
    if snapshots.refused > 0 {
        warn!(endpoint = %session.endpoint, snapshots.admitted, snapshots.refused, "snapshots over the allowance were refused on this session");
    }
    info!(endpoint = %session.endpoint, "agent disconnected");
}

/// What the driver holds besides the streams: frames to write and the session's window grant.
struct Driving<'a> {
    ctx: &'a Arc<HubContext>,
    session: &'a Arc<LiveSession>,
    conn: quinn::Connection,
    outbox: Outbox,
    /// Full flow-control windows, while a summon or a fetch stream holds them; dropping returns
    /// them.
    grant: Option<WindowGrant>,
    /// Whether the summon's side holds `grant` (the session knows it as granted).
    summon_grant: bool,
    /// Fetch streams ([`super::fetch`]); while any is open, the grant stays.
    fetches: FetchStreams,
    /// The agent runs a registry this hub had nothing for when it said so (no upstream, nothing
    /// pushed yet): offered again with a pull job, for an image pushed since.
    registry_waiting: bool,
}

/// What a control frame leaves to do after [`Driving::on_message`].
enum Next {
    /// Read the next frame.
    Read,
    /// The agent closed its control stream: the session ends.
    End,
    /// Work that awaits the store.
    Store(StoreWork),
}

/// What the driver awaits the store for ([`Driving::carry_out`]): each is rare on an idle
/// session (its start, a snapshot, a renewal, an admin's change).
enum StoreWork {
    /// Store this snapshot (a store write).
    Snapshot(EngineSnapshot),
    /// Answer this renewal request (a signature and a store write).
    Renew(Vec<u8>),
    /// Read the device's desired state and send it if the agent runs another (a store read).
    Deliver,
    /// Read the device's transfer window and send it (a store read).
    Window,
}

/// Feed the session what the connection brings and carry out what it asks, in one loop whose
/// branches never await a write: frames go to the outbox and leave from the write branch.
///
/// Not an `async fn`: its future is the session's task for the session's life, and an `async fn`
/// keeps every argument it borrows across an await twice (rustc moves them into locals) and the
/// control stream's receiving half after the frame reader has taken it (80 B per session). What
/// the loop needs is set up here and moved into it once.
fn drive<'a>(
    ctx: &'a Arc<HubContext>,
    session: &'a Arc<LiveSession>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> impl Future<Output = Result<(), SessionError>> + 'a {
    let mut driving = Driving {
        ctx,
        session,
        conn: session.connection().clone(),
        outbox: Outbox::default(),
        grant: None,
        summon_grant: false,
        fetches: FetchStreams::default(),
        registry_waiting: false,
    };
    // One allocation for the whole session: `set` reuses it for each frame.
    let mut reading = Box::pin(wire::next_frame::<AgentMessage, _>(recv, MAX_CONTROL_FRAME));
    async move {
        loop {
            // The select only decides; the store's work is awaited after it, so the branch outputs
            // are not held across that await (the task lives as long as the session).
            let next = tokio::select! {
                datagram = driving.conn.read_datagram() => {
                    match answer_checkin(ctx, session, &datagram?)? {
                        Deliver::ReadDesired => Next::Store(StoreWork::Deliver),
                        Deliver::Nothing => Next::Read,
                    }
                }
                (recv, message) = &mut reading => {
                    reading.set(wire::next_frame(recv, MAX_CONTROL_FRAME));
                    driving.on_message(message)?
                }
                control = session.control().pop(), if driving.outbox.has_room() => {
                    match control.message() {
                        Some(message) => {
                            if matches!(control, Control::Summon { .. }) {
                                driving.take_summon_grant();
                            }
                            driving.outbox.push(&message);
                            Next::Read
                        }
                        None => driving.on_lookup(control),
                    }
                }
                written = poll_fn(|cx| driving.outbox.poll_write(cx, &mut send)), if !driving.outbox.is_empty() => {
                    written?;
                    Next::Read
                }
                // Only fetch streams: the agent has credit for more than its control stream only
                // after `HubMessage::Registry`.
                stream = driving.conn.accept_bi() => {
                    let (send, recv) = stream?;
                    driving.fetch_opened(send, recv);
                    Next::Read
                }
                () = driving.fetches.closed() => {
                    driving.settle_grant();
                    driving.yield_while_fetching();
                    Next::Read
                }
            };
            match next {
                Next::Read => {}
                Next::End => return Ok(()),
                // Boxed: the store's futures and what they carry would otherwise be part of the
                // task of every session, idle or not, for the session's life.
                Next::Store(work) => Box::pin(driving.carry_out(work)).await,
            }
        }
    }
}

impl Driving<'_> {
    /// Do what needs the store, then go back to the loop.
    async fn carry_out(&mut self, work: StoreWork) {
        let (ctx, session) = (self.ctx, self.session);
        match work {
            StoreWork::Snapshot(snapshot) => store_snapshot(ctx, session, snapshot).await,
            StoreWork::Renew(csr_der) => {
                if let Some(answer) = super::renew::answer(ctx, session, csr_der).await {
                    self.outbox.push(&answer);
                }
            }
            StoreWork::Window => {
                let endpoint = session.endpoint;
                let read = ctx.store.read(move |c| traffic::window_for(c, endpoint));
                match read.await {
                    Ok(window) => {
                        self.outbox.push(&HubMessage::TransferWindow(window));
                    }
                    Err(e) => warn!(%endpoint, "the transfer window was not read: {e}"),
                }
            }
            StoreWork::Deliver => {
                if let Some(message) = super::deliver::desired_to_send(ctx, session).await {
                    let bytes = self.outbox.push(&message);
                    session
                        .traffic()
                        .add(Class::Stacks, Direction::Down, bytes as u64);
                }
            }
        }
    }

    /// Act on one control frame, or the stream's end; what needs the store is left to the caller.
    fn on_message(
        &mut self,
        message: Result<AgentMessage, WireError>,
    ) -> Result<Next, SessionError> {
        let session = self.session;
        if message.is_ok() && session.note_path() {
            info!(endpoint = %session.endpoint, remote = %session.path().addr, "connection migrated");
        }
        match message {
            Ok(AgentMessage::Ready { id }) => self.on_ready(id),
            Ok(AgentMessage::Standby) => {
                // The grant goes back whether or not a `Ready` confirmed it: a summon takes it
                // when it is sent.
                session.enter_standby();
                self.summon_grant = false;
                self.settle_grant();
            }
            Ok(AgentMessage::Snapshot(snapshot)) => {
                let bytes = wire::encode(&snapshot).len() as u64;
                session
                    .traffic()
                    .add(Class::Snapshots, Direction::Up, bytes);
                return Ok(Next::Store(StoreWork::Snapshot(snapshot)));
            }
            Ok(AgentMessage::Renew { csr_der }) => {
                if session.renewal() == Renewal::Again {
                    return Err(self.violation(SessionError::Protocol(
                        "a second certificate renewal on one session".into(),
                    )));
                }
                return Ok(Next::Store(StoreWork::Renew(csr_der)));
            }
            Ok(AgentMessage::Hello { .. }) => {
                return Err(SessionError::Protocol("second hello".into()))
            }
            Ok(AgentMessage::StackStatus(report)) => {
                let bytes = wire::encode(&report).len() as u64;
                session.traffic().add(Class::Stacks, Direction::Up, bytes);
                if let Err(refused) = session.admit_report(&report) {
                    return Err(self.violation(SessionError::Protocol(refused.to_string())));
                }
                // Kept and fed to the rollouts at the fleet's next tick, in one transaction with
                // every other report of that second.
                self.ctx.fleet.report(session.endpoint, report);
            }
            Ok(AgentMessage::Features(features)) => {
                match session.announce(features) {
                    Ok(true) => self.ctx.jobs.online(session.endpoint),
                    Ok(false) => {}
                    Err(refused) => {
                        return Err(self.violation(SessionError::Protocol(refused.to_string())))
                    }
                }
                if features.contains(Features::IMAGE_PULL) {
                    self.ctx.jobs.pulls_images(session.endpoint);
                }
                if features.contains(Features::REGISTRY) {
                    self.offer_registry();
                }
                if features.contains(Features::DEFERRAL) {
                    // Read and sent from the control queue, like an admin's change of windows.
                    let _ = session.control().push(Control::WindowChanged);
                }
                // A check-in may have been answered before the announcement, with the digest
                // an older agent would name: read the order again.
                if features.contains(Features::DRIFT_REPORT)
                    && session.desired_changed() == Deliver::ReadDesired
                {
                    return Ok(Next::Store(StoreWork::Deliver));
                }
            }
            Ok(AgentMessage::JobStarted { id }) => {
                if let Err(refused) = session.admit_job_message(None) {
                    return Err(self.violation(SessionError::Protocol(refused.to_string())));
                }
                self.ctx.jobs.started(session.endpoint, id);
            }
            Ok(AgentMessage::JobResult(result)) => {
                if let Err(refused) = session.admit_job_message(Some(&result)) {
                    return Err(self.violation(SessionError::Protocol(refused.to_string())));
                }
                self.ctx.jobs.result(session.endpoint, result);
            }
            Ok(AgentMessage::JobProgress(progress)) => {
                if let Err(refused) = session.admit_job_message(None) {
                    return Err(self.violation(SessionError::Protocol(refused.to_string())));
                }
                self.ctx.jobs.progress(session.endpoint, progress);
            }
            Err(WireError::Closed) => return Ok(Next::End),
            Err(e) => return Err(self.violation(e.into())),
        }
        Ok(Next::Read)
    }

    /// A control message the driver must look something up for.
    fn on_lookup(&mut self, control: Control) -> Next {
        match control {
            Control::Job { id } => {
                if let Some(order) = self.ctx.jobs.order(id) {
                    if self.registry_waiting && matches!(order.spec, JobSpec::PullImage { .. }) {
                        self.offer_registry();
                    }
                    self.outbox.push(&HubMessage::Job(order));
                }
                Next::Read
            }
            Control::WindowChanged if self.session.takes_deferrals() => {
                Next::Store(StoreWork::Window)
            }
            Control::WindowChanged => Next::Read,
            Control::HubAddrsChanged => {
                if self.session.takes_hub_addrs() {
                    let addrs = self.ctx.hubs.addrs_for(self.session.endpoint);
                    self.outbox.push(&HubMessage::HubAddrs(addrs));
                }
                Next::Read
            }
            // A few bytes each, at most a session's allowance of results (`session::jobs`).
            Control::JobAcks => {
                for id in self.ctx.jobs.take_acks(self.session.endpoint) {
                    self.outbox.push(&HubMessage::JobAck { id });
                }
                Next::Read
            }
            _ => match self.session.desired_changed() {
                Deliver::ReadDesired => Next::Store(StoreWork::Deliver),
                Deliver::Nothing => Next::Read,
            },
        }
    }

    /// A `Ready`: only an answer to a waiting summon counts, and may take full windows.
    fn on_ready(&mut self, id: u32) {
        match self.session.resolve_summon(id) {
            None => {
                debug!(endpoint = %self.session.endpoint, id, "ignored a ready for no waiting summon")
            }
            Some(WindowChange::Grant) => {
                if self.grant.is_none() {
                    self.grant = self.ctx.windows.grant(&self.conn);
                }
                if self.grant.is_some() {
                    self.summon_grant = true;
                    self.session.windows_granted();
                }
            }
            Some(WindowChange::Keep) => {}
        }
    }

    /// A hub with a mirror grants an agent that runs a loopback registry its fetch streams; one
    /// with nothing to serve yet offers again with the session's first pull job.
    fn offer_registry(&mut self) {
        let offer = super::fetch::offer(self.ctx, &self.conn);
        self.registry_waiting = offer.is_none();
        if let Some(offer) = offer {
            self.outbox.push(&offer);
        }
    }

    /// A fetch stream opened: served on its own task, with full windows while any is open.
    fn fetch_opened(&mut self, send: quinn::SendStream, recv: quinn::RecvStream) {
        // Manifests and blobs go out on it.
        outpost_transport::tail_repair::send_bulk(&send);
        if self.grant.is_none() {
            self.grant = self.ctx.windows.grant(&self.conn);
        }
        self.fetches
            .spawn(self.ctx.clone(), self.session.clone(), send, recv);
        self.yield_while_fetching();
    }

    /// While image blobs flow, the connection's sender trades a little rate for a short queue at
    /// the device's bottleneck, so the admin's calls do not wait behind the blobs there (stream
    /// priority orders only what waits at the hub; `outpost_transport`'s `delivery_rate::audit`).
    /// Asked of the current path each time: a migration to a new address gives it a new
    /// controller.
    fn yield_while_fetching(&self) {
        if let Some(path) = path_memory_of(&self.conn) {
            path.set_yielding(self.fetches.open() > 0);
        }
    }

    /// A summon is going out: it takes the full windows now, not when its `Ready` comes back, so
    /// a request the proxy opened beside it on standby credit runs at full windows from its first
    /// byte (a `docker load` on GEO sent 16 KiB in its first round trip without). Still only for a
    /// summon the hub sent: nothing the agent says takes a grant.
    fn take_summon_grant(&mut self) {
        if self.grant.is_none() {
            self.grant = self.ctx.windows.grant(&self.conn);
        }
        self.summon_grant |= self.grant.is_some();
    }

    /// Return the full windows once neither a summon nor a fetch stream holds them.
    fn settle_grant(&mut self) {
        if !self.summon_grant && self.fetches.open() == 0 {
            self.grant = None;
        }
    }

    /// Close the connection as a protocol violation, telling the agent why.
    fn violation(&self, e: SessionError) -> SessionError {
        self.conn.close(
            CloseCode::ProtocolViolation.to_varint(),
            e.to_string().as_bytes(),
        );
        e
    }
}
