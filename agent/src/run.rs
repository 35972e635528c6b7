//! The agent's life: enrol once, then keep a session up for as long as the process runs. When to
//! dial again, and when to stop, is [`outpost_protocol::reconnect`]'s decision (backoff with full
//! jitter, reset after a stable session, a stopping hub's restart spread; refusals are final and
//! end the process with their reason, network failures never are); this loop dials and sleeps.
//!
//! [`run_with`] takes [`Hooks`]: a dialer (perhaps on a shared socket) and an observer, so a load
//! tool can run thousands of real agents in one process; [`run`] is the agent binary's plain case.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use outpost_certs::Fingerprint;
use outpost_protocol::agent_session::SessionTiming;
use outpost_protocol::backoff::Backoff;
use outpost_protocol::reconnect::{Next, Outcome, Reconnect};
use outpost_protocol::token::JoinToken;
use outpost_protocol::wire::ALPN_SESSION;
use outpost_protocol::AgentId;
use outpost_transport::profile::TransportProfile;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::deploy::Deployer;
use crate::dial::{DialError, Dialer};
use crate::docker_host::DockerHost;
use crate::driver::{self, DriverSetup, Interruption, SessionEnd, SessionObserver};
use crate::enroll::{enroll, EnrollError};
use crate::identity::{Identity, IdentityError};
use crate::job::{JobRunner, Registry as JobRegistry};
use crate::loopback::HubLink;
use crate::{renew, transport_choice};

/// The agent's resolved runtime configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where the identity lives.
    pub data_dir: PathBuf,
    /// Join token (needed only until enrolled).
    pub edge_key: Option<JoinToken>,
    /// Pre-assigned agent id.
    pub edge_id: Option<AgentId>,
    /// QUIC transport profile (with `choose_transport`, the first guess).
    pub transport: TransportProfile,
    /// Pick the profile from the measured path (`--transport auto`, [`crate::transport_choice`]).
    pub choose_transport: bool,
    /// The local Docker engine.
    pub docker: DockerHost,
    /// Standby period until the hub sets one.
    pub standby_after: Duration,
    /// First reconnect ceiling.
    pub backoff_base: Duration,
    /// Largest reconnect ceiling.
    pub backoff_cap: Duration,
    /// A session that lasted this long resets the backoff.
    pub stable_after: Duration,
    /// Where the loopback registry listens ([`crate::loopback`]); `None` for none.
    pub registry_listen: Option<std::net::SocketAddr>,
    /// Where the agent's own metrics are served ([`crate::metrics`]); `None` for nowhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// When and how the agent reaches the hub over TCP ([`crate::tunnel`]).
    pub tcp: crate::tunnel::TcpRoute,
}

/// Why the agent stopped.
#[derive(Debug, Error)]
pub enum AgentError {
    /// Identity files are unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Not enrolled and no token given.
    #[error("this device is not enrolled yet: pass the join token with --edge-key or EDGE_KEY")]
    NoToken,
    /// Enrolment failed for good.
    #[error(transparent)]
    Enroll(EnrollError),
    /// The stored hub is not reachable as itself any more (wrong CA).
    #[error(transparent)]
    Dial(DialError),
    /// The hub revoked this device.
    #[error("{0}. Delete {1}/enrollment.json and enrol again with a new EDGE_KEY to rejoin")]
    Revoked(String, String),
    /// The certificate expired before it was renewed.
    #[error(transparent)]
    Expired(#[from] renew::Expired),
}

impl AgentError {
    /// Process exit code, so supervisors and scripts can tell the reasons apart.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Enroll(EnrollError::Refused(_)) => 2,
            Self::Enroll(EnrollError::Dial(DialError::WrongHub { .. })) | Self::Dial(_) => 3,
            Self::Revoked(..) => 4,
            Self::Expired(_) => 5,
            _ => 1,
        }
    }
}

/// What the caller injects into an agent's life.
#[derive(Debug)]
pub struct Hooks {
    /// How the hub is dialled (its own socket, or one shared with other agents).
    pub dialer: Dialer,
    /// Told about sessions, if anyone is watching.
    pub observer: Option<Arc<dyn SessionObserver>>,
    /// Watch the route to the hub and check in when the local address changes (a real device;
    /// not a load tool running thousands of agents on one host).
    pub watch_route: bool,
    /// Whether and how the stacks the hub sends are applied ([`crate::deploy`]).
    pub stacks: Stacks,
}

/// How an agent treats the stacks the hub sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stacks {
    /// Not at all: its check-ins name no applied state, so the hub sends none.
    Off,
    /// Applied on the device's engine, which also runs the hub's jobs ([`crate::job`]).
    Engine,
    /// A stand-in for the load tool only: every state is reported healthy at once and no engine
    /// is touched, so the hub's side of a rollout can be measured at fleet scale.
    StandIn,
}

/// Run the agent until a final error.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let remembered = config
        .choose_transport
        .then(|| transport_choice::remembered(&config.data_dir))
        .flatten();
    let profile = remembered.unwrap_or(config.transport);
    info!(
        transport = profile.name,
        measured = remembered.is_some(),
        "transport profile"
    );
    let metrics = config.metrics_listen.and_then(crate::metrics::start);
    let hooks = Hooks {
        dialer: Dialer::new(profile),
        observer: metrics.map(|m| m as Arc<dyn SessionObserver>),
        watch_route: true,
        stacks: Stacks::Engine,
    };
    run_with(config, hooks).await
}

/// Run the agent with injected [`Hooks`] until a final error.
pub async fn run_with(config: AgentConfig, hooks: Hooks) -> Result<(), AgentError> {
    let Hooks {
        mut dialer,
        observer,
        watch_route,
        stacks,
    } = hooks;
    dialer.set_tcp_route(config.tcp.clone());
    if crate::tunnel::remembered_on_tcp(&config.data_dir) {
        info!("the last connection went over TCP: trying TCP beside QUIC from the start");
        dialer.assume_on_tcp();
    }
    let mut identity = Identity::load_or_create(&config.data_dir, config.edge_id)?;
    info!(agent = %identity.agent_id, data_dir = %config.data_dir.display(), "agent identity loaded");
    let backoff = Backoff::new(config.backoff_base, config.backoff_cap);
    let mut reconnect = Reconnect::new(backoff, config.stable_after);
    if identity.enrollment.is_none() {
        let token = config.edge_key.as_ref().ok_or(AgentError::NoToken)?;
        enroll_until_done(&mut dialer, &mut identity, token, &mut reconnect).await?;
    } else if config.edge_key.is_some() {
        info!("already enrolled; the given EDGE_KEY is not needed and is ignored");
    }
    // The hub gets a snapshot on the first session this process establishes (after start or
    // enrolment); later ones come at each return to standby.
    let mut snapshot_due = true;
    let workers = Workers::start(&config, stacks);
    loop {
        let started = Instant::now();
        let session = connect_and_serve(
            &config,
            &mut dialer,
            &mut identity,
            &mut snapshot_due,
            observer.clone(),
            watch_route,
            workers.clone(),
        );
        let attempt = session.await;
        match &attempt {
            // The path may drop UDP now: the next dial tries TCP after the head start ...
            Err(SessionAttempt::Retry(Interruption::Session(SessionEnd::Silent))) => {
                dialer.forget_udp();
            }
            // ... or it does: TCP at once.
            Err(SessionAttempt::Retry(Interruption::Session(SessionEnd::UdpBlocked))) => {
                dialer.assume_on_tcp();
            }
            // Another hub of the fleet answered while this one was silent: dial it first.
            Err(SessionAttempt::Retry(Interruption::Session(SessionEnd::HubGone {
                answering,
            }))) => dialer.prefer(answering.clone()),
            // The hub stopped and handed its agents to the others: dial them first.
            Err(SessionAttempt::Retry(Interruption::Session(SessionEnd::HubStopping {
                elsewhere: true,
                ..
            }))) => dialer.hand_off(),
            _ => {}
        }
        let outcome = outcome(attempt, observer.as_deref());
        // The generator is drawn from before the sleep: it must not be held across an await.
        let next = reconnect.after(outcome, started.elapsed(), &mut rand::rng());
        match next {
            Next::Stop(e) => return Err(e),
            Next::Retry(delay) => {
                info!(
                    ?delay,
                    attempt = reconnect.attempts(),
                    "reconnecting after backoff"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The workers that outlive sessions: an apply, or a job, outlives the session that started it.
#[derive(Clone, Debug)]
struct Workers {
    deployer: Option<Arc<Deployer>>,
    jobs: Option<JobRunner>,
    registry: Option<HubLink>,
}

impl Workers {
    /// Stacks as `stacks` says; jobs only where stacks are applied on a real engine (the load
    /// tool's stand-in, and an agent without stacks, announce none); the loopback registry where
    /// configured.
    fn start(config: &AgentConfig, stacks: Stacks) -> Self {
        let registry = config
            .registry_listen
            .and_then(|addr| crate::loopback::start(addr, &config.data_dir));
        let deployer = match stacks {
            Stacks::Off => None,
            Stacks::Engine => Some(Arc::new(Deployer::start(
                config.docker.clone(),
                config.data_dir.join("stacks"),
                registry.clone(),
            ))),
            Stacks::StandIn => Some(Arc::new(Deployer::stand_in())),
        };
        let jobs = match stacks {
            Stacks::Engine => {
                let dir = config.data_dir.join("jobs");
                let loopback = config.registry_listen.zip(registry.clone());
                let registry = loopback.map(|(listen, link)| JobRegistry { listen, link });
                JobRunner::start_with_registry(config.docker.clone(), &dir, registry)
                    .inspect_err(|e| warn!("this device runs no jobs: {e}"))
                    .ok()
            }
            Stacks::Off | Stacks::StandIn => None,
        };
        Self {
            deployer,
            jobs,
            registry,
        }
    }
}

/// What the reconnect policy needs to know of a session attempt; an interruption is logged and
/// told to the observer.
fn outcome(
    attempt: Result<(), SessionAttempt>,
    observer: Option<&dyn SessionObserver>,
) -> Outcome<AgentError> {
    let why = match attempt {
        Ok(()) => return Outcome::Lost,
        Err(SessionAttempt::Final(e)) => return Outcome::Final(e),
        Err(SessionAttempt::Retry(why)) => why,
    };
    warn!("{why}");
    if let Some(observer) = observer {
        observer.interrupted(&why);
    }
    match why {
        Interruption::Session(SessionEnd::HubStopping { spread, .. }) => {
            Outcome::HubStopping { spread }
        }
        Interruption::Session(_) | Interruption::Dial(_) => Outcome::Lost,
    }
}

/// Measure the path (the connection's smoothed round trip) and, if another profile fits it, take
/// that profile's receive window now and dial with it from the next connection on.
fn fit_profile_to_path(dialer: &mut Dialer, conn: &quinn::Connection, data_dir: &Path) {
    let rtt = conn.rtt();
    let fitting = transport_choice::fitting(rtt);
    if fitting.name == dialer.profile().name {
        return;
    }
    info!(
        ?rtt,
        from = dialer.profile().name,
        to = fitting.name,
        "the path fits another transport profile"
    );
    conn.set_receive_window(quinn::VarInt::from_u32(fitting.connection_window));
    dialer.set_profile(fitting);
    if let Err(e) = transport_choice::remember(data_dir, &fitting) {
        warn!("cannot remember the transport profile: {e}");
    }
}

async fn enroll_until_done(
    dialer: &mut Dialer,
    identity: &mut Identity,
    token: &JoinToken,
    reconnect: &mut Reconnect,
) -> Result<(), AgentError> {
    loop {
        let e = match enroll(dialer, identity, token).await {
            Ok(enrolled) => {
                identity.save_enrollment(&enrolled)?;
                info!(endpoint = %enrolled.endpoint, pending = enrolled.pending_approval, "enrolled");
                reconnect.succeeded();
                return Ok(());
            }
            Err(e) => e,
        };
        let message = e.to_string();
        let failed = if e.is_final() {
            Outcome::Final(AgentError::Enroll(e))
        } else {
            Outcome::Lost
        };
        let next = reconnect.after(failed, Duration::ZERO, &mut rand::rng());
        match next {
            Next::Stop(e) => return Err(e),
            Next::Retry(delay) => {
                warn!(?delay, "enrolment failed, retrying: {message}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Stop for good on an expired certificate; otherwise what renewing it takes on this session.
fn session_renewal(
    config: &AgentConfig,
    identity: &Identity,
    chain: &[outpost_certs::CertificateDer<'static>],
) -> Result<Option<renew::Renewal>, SessionAttempt> {
    let Some(leaf) = chain.first() else {
        return Ok(None);
    };
    let now = std::time::SystemTime::now();
    let dir = config.data_dir.display().to_string();
    renew::check_expiry(leaf, now, &dir).map_err(|e| SessionAttempt::Final(e.into()))?;
    Ok(renew::Renewal::prepare(
        leaf,
        &identity.key.public_key_der(),
        identity.certificate_path(),
        now,
        || identity.key.csr_der(identity.agent_id.0).ok(),
    ))
}

enum SessionAttempt {
    Final(AgentError),
    Retry(Interruption),
}

async fn connect_and_serve(
    config: &AgentConfig,
    dialer: &mut Dialer,
    identity: &mut Identity,
    snapshot_due: &mut bool,
    observer: Option<Arc<dyn SessionObserver>>,
    watch_route: bool,
    workers: Workers,
) -> Result<(), SessionAttempt> {
    let enrollment = identity
        .enrollment
        .clone()
        .ok_or_else(|| SessionAttempt::Final(AgentError::NoToken))?;
    let pin: Fingerprint = enrollment.ca_fingerprint.parse().map_err(|_| {
        SessionAttempt::Final(AgentError::Identity(IdentityError::BadEnrollment {
            path: config.data_dir.join("enrollment.json"),
            reason: "bad CA fingerprint".into(),
        }))
    })?;
    let chain = identity
        .certificate()
        .map_err(|e| SessionAttempt::Final(e.into()))?;
    let renewal = session_renewal(config, identity, &chain)?;
    let client = (chain, identity.key.private_key_der());
    let conn = match dialer
        .connect(&enrollment.hub_addrs, pin, Some(client), ALPN_SESSION)
        .await
    {
        Ok(conn) => conn,
        Err(e) if e.is_final() => return Err(SessionAttempt::Final(AgentError::Dial(e))),
        Err(e) => return Err(SessionAttempt::Retry(Interruption::Dial(e))),
    };
    info!(remote = %conn.remote_address(), on_tcp = dialer.on_tcp(), "connected to the hub");
    if let Err(e) = crate::tunnel::remember_on_tcp(&config.data_dir, dialer.on_tcp()) {
        warn!("cannot remember the path to the hub: {e}");
    }
    // The handshake's round trip decides only the very first choice: a handshake that waited in
    // a busy hub's admission queue reads seconds long. Later choices wait for the session's end,
    // when the smoothed round trip has seen many check-ins.
    if config.choose_transport && transport_choice::remembered(&config.data_dir).is_none() {
        fit_profile_to_path(dialer, &conn, &config.data_dir);
    }
    let heard_hub_addrs = Arc::new(std::sync::Mutex::new(None));
    let defaults = DriverSetup {
        session: SessionTiming {
            checkin_interval: config.transport.checkin_interval,
            standby_after: config.standby_after,
            ack_timeout: config.transport.initial_rtt * 4 + Duration::from_secs(1),
            max_missed_acks: 3,
            stream_credit: outpost_protocol::stream::MAX_STREAMS_PER_DEVICE,
        },
        docker: config.docker.clone(),
        snapshot_on_connect: *snapshot_due,
        observer,
        watch_route,
        renewal,
        deployer: workers.deployer,
        jobs: workers.jobs,
        registry: workers.registry,
        tcp_reach: dialer.tcp_reach(),
        hub_reach: dialer.hub_reach(&enrollment.hub_addrs),
        heard_hub_addrs: heard_hub_addrs.clone(),
    };
    let mut new_addrs = None;
    let result = driver::run(&conn, defaults, |welcome| {
        new_addrs = Some(welcome.hub_addrs.clone())
    })
    .await;
    // Addresses the hub sent mid-session are newer than its welcome's.
    if let Some(heard) = heard_hub_addrs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        new_addrs = Some(heard);
    }
    dialer.session_ended(&conn);
    if config.choose_transport {
        fit_profile_to_path(dialer, &conn, &config.data_dir);
    }
    if let Some(addrs) = new_addrs {
        *snapshot_due = false;
        if let Err(e) = identity.update_hub_addrs(&addrs) {
            warn!("cannot remember the hub's new addresses: {e}");
        }
    }
    match result {
        Ok(()) => Ok(()),
        Err(SessionEnd::Revoked(reason)) => Err(SessionAttempt::Final(AgentError::Revoked(
            reason,
            config.data_dir.display().to_string(),
        ))),
        Err(
            lost @ (SessionEnd::Lost(_)
            | SessionEnd::Silent
            | SessionEnd::UdpBlocked
            | SessionEnd::HubGone { .. }
            | SessionEnd::HubStopping { .. }),
        ) => Err(SessionAttempt::Retry(Interruption::Session(lost))),
    }
}
