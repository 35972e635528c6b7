//! One swarm run: sockets, fleet, start, summons, hold, report.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_agent::dial::Dialer;
use outpost_agent::docker_host::DockerHost;
use outpost_agent::{run_with, AgentConfig, AgentError, Hooks};
use outpost_api::{ApiClient, ApiError};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::info;

use crate::api;
use crate::config::SwarmConfig;
use crate::fleet::{self, Enroller, FleetError, Member, Plan};
use crate::stats::{AgentWatch, Report, Stats};

/// How long an admin API request may take (a summon waits for the device, up to the hub's
/// summon timeout).
const API_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the swarm looks whether every agent is online.
const ONLINE_POLL: Duration = Duration::from_millis(100);

/// Why the swarm could not run.
#[derive(Debug, Error)]
pub enum SwarmError {
    /// The admin API client could not be built.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A shared UDP socket could not be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// The identities could not be prepared.
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// Progress, for whoever runs the swarm (the binary prints it; a benchmark waits on it).
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    /// Identities are ready.
    Enrolled {
        /// Reused from an earlier run.
        reused: usize,
        /// Enrolled now.
        enrolled: usize,
        /// Time taken.
        seconds: f64,
    },
    /// Every agent is online, or the wait for it timed out.
    Online {
        /// Agents online.
        online: usize,
        /// Since the agents were started.
        seconds: f64,
    },
    /// The summon sample is done; the swarm now holds the agents.
    SummonsDone {
        /// Summons answered.
        ok: usize,
        /// Summons that failed.
        failed: usize,
    },
}

/// Run the swarm described by `config`; it ends after holding the agents for `config.hold`, or
/// when `stop` completes, whichever comes first. `on_phase` hears the progress.
pub async fn run(
    config: SwarmConfig,
    stop: impl std::future::Future<Output = ()>,
    mut on_phase: impl FnMut(Phase),
) -> Result<Report, SwarmError> {
    let api = api::connect(&config.hub, API_TIMEOUT)?;
    let sockets = (0..config.sockets.max(1))
        .map(|_| shared_socket())
        .collect::<Result<Vec<_>, _>>()
        .map_err(SwarmError::Socket)?;
    let stats = Arc::new(Stats::new(config.agents));
    let enroller = Enroller {
        api: api.clone(),
        transport: config.transport,
        sockets: sockets.clone(),
        name_prefix: config.name_prefix.clone(),
    };
    let plan = Plan {
        data_dir: config.data_dir.clone(),
        count: config.agents,
        concurrency: config.enrol_concurrency,
        reuse: config.reuse,
    };
    let fleet = fleet::prepare(enroller, &plan, stats.clone()).await?;
    let enrol_seconds = fleet.elapsed.as_secs_f64();
    on_phase(Phase::Enrolled {
        reused: fleet.reused,
        enrolled: fleet.enrolled,
        seconds: enrol_seconds,
    });

    let started = Instant::now();
    let mut agents = start(&config, &fleet.members, &sockets, &stats).await;
    let all_online = wait_online(&stats, fleet.members.len(), config.online_timeout).await;
    let online_seconds = started.elapsed().as_secs_f64();
    on_phase(Phase::Online {
        online: stats.online(),
        seconds: online_seconds,
    });
    let failed = summon_sample(&api, &fleet.members, config.summons, &stats).await;
    on_phase(Phase::SummonsDone {
        ok: config.summons.min(fleet.members.len()) - failed,
        failed,
    });
    tokio::select! {
        _ = tokio::time::sleep(config.hold) => {}
        _ = stop => info!("stopping early"),
    }
    let measured = stats.snapshot();
    agents.abort_all();
    for socket in &sockets {
        socket.close(0u32.into(), b"swarm done");
    }
    Ok(Report {
        agents: fleet.members.len(),
        sockets: sockets.len(),
        reused: fleet.reused,
        enrolled: fleet.enrolled,
        enrol_seconds,
        enrol_per_second: fleet.enrolled as f64 / enrol_seconds.max(1e-3),
        all_online_seconds: all_online.then_some(online_seconds),
        summons_failed: failed as u64,
        measured,
    })
}

/// Start every member on its shared socket, at most `start_concurrency` still waiting for their
/// first session at a time (so the start is a steady ramp, not one burst of handshakes).
async fn start(
    config: &SwarmConfig,
    members: &[Member],
    sockets: &[quinn::Endpoint],
    stats: &Arc<Stats>,
) -> JoinSet<()> {
    let slots = Arc::new(Semaphore::new(config.start_concurrency.max(1)));
    let docker = DockerHost::Unix(config.data_dir.join("no-engine.sock"));
    let mut agents = JoinSet::new();
    for member in members {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let socket = sockets[member.index % sockets.len()].clone();
        let dialer = match Dialer::on_endpoint(config.transport, socket) {
            Ok(dialer) => dialer,
            Err(e) => {
                stats.error(format!("dial: {e}"));
                continue;
            }
        };
        let watch = AgentWatch::new(member.index, stats.clone(), slot);
        let hooks = Hooks {
            dialer,
            observer: Some(Arc::new(watch)),
            watch_route: false,
            stacks: config.stacks,
        };
        let agent = agent_config(config, &member.dir, docker.clone());
        let stats = stats.clone();
        agents.spawn(async move {
            if let Err(e) = run_with(agent, hooks).await {
                stats.error(stopped_kind(&e));
            }
        });
    }
    agents
}

/// The agent binary's defaults, with no engine behind it (summons need none; snapshots report the
/// engine unreadable).
fn agent_config(config: &SwarmConfig, dir: &Path, docker: DockerHost) -> AgentConfig {
    AgentConfig {
        data_dir: dir.to_owned(),
        edge_key: None,
        edge_id: None,
        transport: config.transport,
        choose_transport: false,
        docker,
        standby_after: Duration::from_secs(60),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        stable_after: Duration::from_secs(60),
        registry_listen: None,
        metrics_listen: None,
        tcp: outpost_agent::tunnel::TcpRoute::quic_only(),
    }
}

fn stopped_kind(e: &AgentError) -> String {
    let what = match e {
        AgentError::Identity(_) => "identity",
        AgentError::NoToken => "not enrolled",
        AgentError::Enroll(_) => "enrolment refused",
        AgentError::Dial(_) => "wrong hub",
        AgentError::Revoked(..) => "revoked",
        AgentError::Expired(_) => "certificate expired",
    };
    format!("agent stopped: {what}")
}

async fn wait_online(stats: &Stats, count: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while stats.online() < count {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(ONLINE_POLL).await;
    }
    true
}

/// Summon `count` members spread evenly over the fleet, one at a time; returns the failures.
async fn summon_sample(api: &ApiClient, members: &[Member], count: usize, stats: &Stats) -> usize {
    if count == 0 || members.is_empty() {
        return 0;
    }
    let step = (members.len() / count).max(1);
    let mut failed = 0;
    for member in members.iter().step_by(step).take(count) {
        let started = Instant::now();
        match api.summon(member.endpoint.0).await {
            Ok(_) => stats.summoned(started.elapsed()),
            Err(e) => {
                failed += 1;
                stats.error(format!("summon: {}", e.kind()));
            }
        }
    }
    failed
}

/// Receive buffer of each shared socket: a few thousand agents share one, where each real device
/// has its own, so a burst to all of them (a hub's close frames, a reconnect storm) must not
/// overflow the kernel's default 208 KiB and lose packets no real device would lose.
const SHARED_SOCKET_BUFFER: usize = 8 << 20;

/// A client endpoint on a new UDP socket with a large receive buffer (capped by the kernel's
/// `net.core.rmem_max`).
fn shared_socket() -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))?;
    socket2::SockRef::from(&socket).set_recv_buffer_size(SHARED_SOCKET_BUFFER)?;
    outpost_transport::connection_id::agent_endpoint_on(socket)
}
