//! The handle of one live session: the `quinn::Connection`, the control queue towards the agent's
//! driver, and a lock around the session's state machine ([`HubSession`]). What the rest of the hub
//! (API, proxy, driver) holds of a connected agent.

use outpost_transport::close::CloseCodeVarint as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use outpost_protocol::snapshot::EngineSnapshot;
use outpost_protocol::stack::{StackReport, StateDigest};
use outpost_protocol::stream::MAX_STREAMS_PER_DEVICE;
use outpost_protocol::wire::CloseCode;
use outpost_protocol::{AgentId, EndpointId};
use outpost_transport::congestion::{delivery_rate_of, path_memory_of, PathEstimate};
use tokio::sync::{oneshot, Semaphore};
use tokio::time::Instant;

use super::control::{Control, ControlQueue, Refused};
use super::Entry;
use crate::agent_link::tunnel::{Path, Tunnels};
use crate::ping_cache::PingCache;
use crate::session::delivery::{Deliver, ReportRefused};
use crate::session::interval::{CheckinSetup, CheckinTuner};
use crate::session::{
    CheckIn, ConnectionEnd, Flush, HubSession, Link, LiveView, Ready, Renewal, SnapshotCounts,
    SnapshotRefused, Status, Summon, SummonError, WindowChange, WireCounts,
};
use crate::store::endpoints::SavedPath;
use crate::store::{unix_seconds, LivenessUpdate};
use crate::traffic::tally::{Tally, UpDown};
use crate::traffic::SessionTraffic;

/// One connected agent.
#[derive(Debug)]
pub struct LiveSession {
    /// The endpoint the agent's certificate maps to.
    pub endpoint: EndpointId,
    /// The agent.
    pub agent_id: AgentId,
    conn: quinn::Connection,
    control: ControlQueue,
    state: Mutex<HubSession<oneshot::Sender<()>>>,
    proxy_slots: Arc<Semaphore>,
    ping: PingCache,
    traffic: SessionTraffic,
    tunnels: Tunnels,
}

impl LiveSession {
    /// A session for a freshly authenticated connection.
    pub fn new(
        endpoint: EndpointId,
        agent_id: AgentId,
        conn: quinn::Connection,
        tunnels: Tunnels,
        pending: bool,
        migrations: u64,
        checkin: CheckinSetup,
    ) -> Self {
        let now = Instant::now();
        let mut state = HubSession::new(
            endpoint,
            now,
            tunnels.resolve(conn.remote_address()).addr,
            pending,
            migrations,
            CheckinTuner::new(checkin.interval, checkin.timing, now),
        );
        state.offer_quiet(now, checkin.quiet);
        Self {
            endpoint,
            agent_id,
            conn,
            control: ControlQueue::default(),
            state: Mutex::new(state),
            proxy_slots: Arc::new(Semaphore::new(MAX_STREAMS_PER_DEVICE as usize)),
            ping: PingCache::default(),
            traffic: SessionTraffic::default(),
            tunnels,
        }
    }

    /// Where the agent is now, and whether over UDP or a tunnel.
    pub fn path(&self) -> Path {
        self.tunnels.resolve(self.conn.remote_address())
    }

    /// The bytes this session's streams carried, by class, and what a flush last wrote.
    pub fn traffic(&self) -> &SessionTraffic {
        &self.traffic
    }

    /// What this session has cost so far: the wire, and each counted class.
    pub fn tally(&self) -> Tally {
        let stats = self.conn.stats();
        self.traffic.counters.tally(
            UpDown {
                up: stats.udp_rx.bytes,
                down: stats.udp_tx.bytes,
            },
            stats.path.lost_bytes,
        )
    }

    /// When the session's connection was set up ([`HubSession::connected_at`]).
    pub fn connected_at(&self) -> Instant {
        self.state().connected_at()
    }

    /// Whether the agent takes the fleet's hub addresses mid-session
    /// ([`HubSession::takes_hub_addrs`]).
    pub fn takes_hub_addrs(&self) -> bool {
        self.state().takes_hub_addrs()
    }

    /// Whether the agent announced `feature` ([`HubSession::announced`]).
    pub fn announced(&self, feature: outpost_protocol::job::Features) -> bool {
        self.state().announced(feature)
    }

    /// Whether the agent understands a deferral ([`HubSession::takes_deferrals`]).
    pub fn takes_deferrals(&self) -> bool {
        self.state().takes_deferrals()
    }

    /// What the connection's congestion controller (on its current path) has measured so far.
    pub fn path_estimate(&self) -> Option<PathEstimate> {
        path_memory_of(&self.conn)?.latest()
    }

    fn state(&self) -> MutexGuard<'_, HubSession<oneshot::Sender<()>>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the device should run changed ([`HubSession::handle_desired_changed`]).
    pub fn desired_changed(&self) -> Deliver {
        self.state().handle_desired_changed()
    }

    /// A stack report arrived: whether to keep it ([`HubSession::handle_report`]).
    pub fn admit_report(&self, report: &StackReport) -> Result<(), ReportRefused> {
        self.state().handle_report(Instant::now(), report)
    }

    /// The agent announced what it can do: whether it runs jobs
    /// ([`HubSession::handle_features`]).
    pub fn announce(
        &self,
        features: outpost_protocol::job::Features,
    ) -> Result<bool, crate::session::jobs::JobRefused> {
        let mut state = self.state();
        let quiet = state.handle_quiet(Instant::now(), features);
        self.went_quiet(quiet);
        state.handle_features(Instant::now(), features)
    }

    /// Whether the device is on the `quiet` policy: its NAT binding may have lapsed since its
    /// last check-in, so nothing reaches it before the next.
    pub fn is_quiet(&self) -> bool {
        self.state().is_quiet()
    }

    /// An admin changed the device's group's `quiet` policy (`None`: the default one).
    pub fn set_quiet(&self, interval: Option<Duration>) {
        let quiet = self.state().offer_quiet(Instant::now(), interval);
        self.went_quiet(quiet);
    }

    fn went_quiet(&self, interval: Option<Duration>) {
        if let Some(interval) = interval {
            // The agent advertised an idle timeout long enough (`Features::QUIET`).
            self.conn
                .set_max_idle_timeout(Some(outpost_transport::profile::idle_timeout_for(interval)));
            tracing::info!(endpoint = %self.endpoint, ?interval, "quiet check-in policy: reachable at each check-in");
        }
    }

    /// A job message arrived: whether to keep it ([`HubSession::handle_job_message`]).
    pub fn admit_job_message(
        &self,
        result: Option<&outpost_protocol::job::JobResult>,
    ) -> Result<(), crate::session::jobs::JobRefused> {
        self.state().handle_job_message(Instant::now(), result)
    }

    /// The desired state was read: whether to send it ([`HubSession::handle_desired`]).
    pub fn desired_read(&self, desired: StateDigest) -> bool {
        self.state().handle_desired(desired)
    }

    /// Note a renewal request: the session's first, or a later one (which the driver refuses
    /// before it costs a signature or a store write).
    pub fn renewal(&self) -> Renewal {
        self.state().handle_renewal()
    }

    /// The engine's last answer to the docker CLI's `/_ping` ([`crate::proxy::ping`]).
    pub(crate) fn ping_cache(&self) -> &PingCache {
        &self.ping
    }

    /// The control messages waiting for the session driver.
    pub fn control(&self) -> &ControlQueue {
        &self.control
    }

    /// The QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The per-device limit on proxied requests in flight.
    pub fn proxy_slots(&self) -> Arc<Semaphore> {
        self.proxy_slots.clone()
    }

    /// Proxied requests in flight now.
    pub fn proxy_streams(&self) -> u32 {
        MAX_STREAMS_PER_DEVICE - self.proxy_slots.available_permits() as u32
    }

    /// A check-in arrived at `now`, naming the state the agent runs if it is a version-3 one
    /// ([`HubSession::handle_checkin`], [`HubSession::handle_applied`]).
    pub fn record_checkin(&self, now: Instant, applied: Option<StateDigest>) -> (CheckIn, Deliver) {
        let remote = self.path().addr;
        // One lock for the whole check-in: 100,000 devices check in on this path.
        let mut state = self.state();
        let deliver = applied.map_or(Deliver::Nothing, |applied| state.handle_applied(applied));
        let was_quiet = state.is_quiet();
        let checkin = state.handle_checkin(now, SystemTime::now(), remote);
        if was_quiet && !state.is_quiet() {
            let interval = state.checkin_interval();
            self.conn
                .set_max_idle_timeout(Some(outpost_transport::profile::idle_timeout_for(interval)));
            tracing::info!(endpoint = %self.endpoint, ?interval, "quiet check-in policy ended");
        }
        (checkin, deliver)
    }

    /// Sample the connection's path between check-ins ([`HubSession::handle_path`]).
    pub fn note_path(&self) -> bool {
        let remote = self.path().addr;
        self.state().handle_path(remote)
    }

    /// The agent reported `Ready` for summon `id`: wake the summoner and say what the windows
    /// need, or `None` for a `Ready` no summon waits for ([`HubSession::handle_ready`]).
    pub fn resolve_summon(&self, id: u32) -> Option<WindowChange> {
        let answered = self.state().handle_ready(id);
        match answered {
            Ready::Unsolicited => None,
            Ready::Answered { waiter, windows } => {
                let _ = waiter.send(());
                Some(windows)
            }
        }
    }

    /// The window budget granted the full windows an answered summon asked for.
    pub fn windows_granted(&self) {
        self.state().handle_windows_granted();
    }

    /// The agent sent an engine snapshot: what to store, or why not.
    pub fn admit_snapshot(
        &self,
        now: Instant,
        snapshot: EngineSnapshot,
    ) -> Result<EngineSnapshot, SnapshotRefused> {
        self.state().handle_snapshot(now, snapshot)
    }

    /// Snapshots this session sent, by outcome.
    pub fn snapshot_counts(&self) -> SnapshotCounts {
        self.state().snapshot_counts()
    }

    /// The agent returned to standby.
    pub fn enter_standby(&self) {
        self.state().handle_standby();
    }

    /// The session ended: summoners still waiting learn it now (`SummonError::Disconnected`), not
    /// at their timeout.
    pub fn release_summoners(&self) {
        let waiters = self.state().handle_ended();
        drop(waiters);
    }

    /// Whether this session is sent jobs ([`HubSession::runs_jobs`]).
    pub fn runs_jobs(&self) -> bool {
        self.state().runs_jobs()
    }

    /// Whether this session is sent drift policies ([`HubSession::reads_drift_policy`]).
    pub fn reads_drift_policy(&self) -> bool {
        self.state().reads_drift_policy()
    }

    /// An admin approved this pending device: true if it was pending and its agent is told.
    pub fn approve(&self) -> bool {
        let was_pending = self.state().handle_approval(Instant::now());
        was_pending && self.control.push(Control::Approved).is_ok()
    }

    /// The status an admin sees, with `stale_after` the liveness bound. Without the controller's
    /// resumes: reading them copies the whole controller (quinn hands out a clone), which the
    /// proxy's per-request status check and each row of the list need not pay.
    pub fn view(&self, now: Instant, stale_after: Duration) -> LiveView {
        let link = Link {
            rtt: self.conn.rtt(),
            wire: wire_counts(&self.conn),
            proxy_streams: self.proxy_streams(),
        };
        let path = self.path().kind;
        LiveView {
            path,
            ..self.state().view(now, stale_after, link)
        }
    }

    /// [`Self::view`] with the congestion controller's resumes, silences and state, for one
    /// endpoint's detail.
    pub fn detail_view(&self, now: Instant, stale_after: Duration) -> LiveView {
        let controller = delivery_rate_of(&self.conn);
        LiveView {
            resumes: controller.as_ref().map(|c| c.resume_stats()),
            silences: controller.as_ref().map(|c| c.silence_stats()),
            sender: controller.as_ref().map(|c| c.sender_state()),
            ..self.view(now, stale_after)
        }
    }

    /// Ask the agent to open stream credit and wait for its `Ready`: how long it took, or `None`
    /// when the device was active already (nothing was sent).
    pub async fn summon(&self, timeout: Duration) -> Result<Option<Duration>, SummonError> {
        let (tx, rx) = oneshot::channel();
        let id = match self.state().handle_summon(tx) {
            Summon::Pending => return Err(SummonError::Pending(self.endpoint)),
            Summon::Active => return Ok(None),
            Summon::Send { id } => id,
        };
        let sent = Instant::now();
        if let Err(refused) = self.control.push(Control::Summon { id }) {
            self.state().handle_summon_given_up(id);
            return Err(match refused {
                Refused::Full => SummonError::Busy(self.endpoint),
                Refused::Closed => SummonError::Disconnected(self.endpoint),
            });
        }
        let timeout = self.state().summon_wait(timeout);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(Some(sent.elapsed())),
            Ok(Err(_)) => Err(SummonError::Disconnected(self.endpoint)),
            Err(_) => {
                self.state().handle_summon_given_up(id);
                Err(SummonError::Timeout(self.endpoint, timeout))
            }
        }
    }

    /// Close the connection with a reason the agent understands.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.conn.close(code.to_varint(), reason.as_bytes());
    }

    /// UDP datagrams the connection has sent so far. Once it is closed it sends nothing but its
    /// close, so a count above the one read at the close means the close has gone out.
    pub fn datagrams_sent(&self) -> u64 {
        self.conn.stats().udp_tx.datagrams
    }
}

impl Entry for LiveSession {
    fn endpoint(&self) -> EndpointId {
        self.endpoint
    }

    fn close(&self, code: CloseCode, reason: &str) {
        Self::close(self, code, reason);
    }

    fn save(&self, now: Instant, flush: Flush) -> Option<LivenessUpdate> {
        let save = self.state().poll_save(now, flush)?;
        Some(save.into_update(|| {
            let stats = self.conn.stats();
            let over_udp = !self.tunnels.is_tunnel(self.conn.remote_address());
            ConnectionEnd {
                wire: (stats.udp_tx.bytes, stats.udp_rx.bytes),
                path: self.path_estimate().map(|estimate| SavedPath {
                    estimate,
                    measured_at: unix_seconds(SystemTime::now()),
                }),
                path_mtu: crate::path_mtu::worth_keeping(stats.path.current_mtu)
                    .filter(|_| over_udp),
            }
        }))
    }

    fn status(&self, now: Instant, stale_after: Duration) -> Status {
        self.state().status(now, stale_after)
    }
}

fn wire_counts(conn: &quinn::Connection) -> WireCounts {
    let stats = conn.stats();
    WireCounts {
        tx_bytes: stats.udp_tx.bytes,
        tx_datagrams: stats.udp_tx.datagrams,
        rx_bytes: stats.udp_rx.bytes,
        rx_datagrams: stats.udp_rx.datagrams,
        tx_parity_frames: stats.frame_tx.repair,
        rx_rebuilt_chunks: stats.frame_rx.repaired,
    }
}
