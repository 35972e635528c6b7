//! A hub's runtime configuration, with every default a named constant and the reason for it.
//!
//! `outpost-hub serve` layers its flags over [`HubConfig::new`]; the demo and tests start from the
//! same defaults and change only what they must (a directory, loopback listeners).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use outpost_transport::profile::{self, TransportProfile};

use crate::agent_link::admission::AdmissionLimits;

/// Where a hub keeps its state unless told otherwise: beside where it was started.
pub const DEFAULT_DATA_DIR: &str = "./outpost-data";
/// The SQLite store's file in the data directory.
pub const DEFAULT_STORE_FILE: &str = "hub.db";
/// The UDP port agents dial: QUIC's customary 4433, on every interface (the hub sits in a DMZ).
pub const DEFAULT_AGENT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4433);
/// The admin API and Docker proxy: 9443, beside Docker's own TLS port 2376 habits.
pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9443);
/// Check-ins are the NAT keepalive (QUIC keep-alive is off): 25 s stays inside the 30 s UDP binding
/// timeout that carrier NATs commonly apply (the transport profiles' named link fact).
pub const DEFAULT_CHECKIN_INTERVAL: Duration = Duration::from_secs(25);
/// A summoned device returns to standby (no stream credit, small windows) after a minute without
/// requests: long enough for an admin's next command, short enough to give the memory back.
pub const DEFAULT_STANDBY_AFTER: Duration = Duration::from_secs(60);
/// An admin request waits this long for a summoned device: a summon takes about one round trip,
/// and a device that just lost its link needs a check-in interval or so to come back.
pub const DEFAULT_SUMMON_TIMEOUT: Duration = Duration::from_secs(15);
/// Proxied Docker requests in flight across all devices (each holds a QUIC stream and buffers).
pub const DEFAULT_MAX_PROXY_STREAMS: usize = 4096;
/// The hub's side of every connection assumes a cellular path unless told: the fleet we serve.
pub const DEFAULT_TRANSPORT: TransportProfile = profile::CELLULAR;
/// How often the registry's liveness changes are written: a list filtered on status is at most
/// this stale (the list runs a flush itself for status filters).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Enrolments handled at once (each signs a certificate and writes a transaction); more are told
/// the hub is busy and retry with backoff.
pub const MAX_CONCURRENT_ENROLLMENTS: usize = 64;
/// Devices one fleet token may have waiting for approval, so a leaked fleet token cannot fill the
/// store with pending rows.
pub const DEFAULT_MAX_PENDING_PER_FLEET: u32 = 100;
/// How long a finished job is kept: a month of a daily job on 10,000 devices printing a few KB is
/// a few GB at most, and a month covers a monthly audit of what ran where.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// How long audit records are kept: a year of a busy fleet (10,000 state-changing calls a day, ~150
/// bytes a row) is well under a GB, and a year is what an annual audit asks for.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86_400);
/// Agent certificates live a year; agents renew at two thirds of it over their session.
pub const DEFAULT_AGENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The mirror keeps this many bytes of blobs before evicting the least recently used: room for a
/// few dozen images of a typical fleet's few hundred MiB each on a DMZ machine's disk.
pub const DEFAULT_MIRROR_MAX_BYTES: u64 = 20 << 30;
/// A tag's digest is believed this long before the upstream is asked again: a moved tag is noticed
/// within a minute, and a fleet pulling one image asks the upstream once, not once per device.
pub const MIRROR_TAG_TTL: Duration = Duration::from_secs(60);

/// Where the hub takes agents' TLS-over-TCP tunnels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentTcp {
    /// TCP on the agents' UDP address and port (the default): an agent that finds UDP blocked
    /// dials the address it already knows, so neither tokens nor agents need a second one.
    SamePort,
    /// TCP on this address; agents must be told its port (`outpost-agent --tcp-port`).
    At(SocketAddr),
    /// No TCP for agents.
    Off,
}

/// The resolved runtime configuration of a hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Where the CA, keys, admin token and (unless `store` says otherwise) database live.
    pub data_dir: PathBuf,
    /// The store: `None` for the SQLite file `hub.db` in `data_dir`.
    pub store: Option<crate::store::StoreLocation>,
    /// UDP address for agents.
    pub agent_listen: SocketAddr,
    /// TCP address for agents whose network drops UDP (tunnels).
    pub agent_tcp: AgentTcp,
    /// TCP address for the admin API.
    pub api_listen: SocketAddr,
    /// `host:port` addresses written into join tokens; derived from the bound socket when empty.
    pub public_addrs: Vec<String>,
    /// This hub's name among the hubs sharing its store; `None`: generated on first start and
    /// kept in `data_dir` (`crate::hubs::name`).
    pub hub_name: Option<String>,
    /// The admin API's URL as the other hubs of the store reach it, to forward requests for the
    /// devices this hub holds (`crate::peers`); `None`: the bound API address (loopback when
    /// bound to any address, which serves hubs on one machine only).
    pub peer_url: Option<String>,
    /// Check-in interval handed to agents.
    pub checkin_interval: Duration,
    /// How long NAT bindings must hold at a check-in interval before it grows or is probed
    /// past (`session::interval::HOLD`, 30 min; shorter in a lab or a test).
    pub checkin_hold: Duration,
    /// Inactivity before a summoned agent returns to standby.
    pub standby_after: Duration,
    /// How long an admin request waits for a summoned device.
    pub summon_timeout: Duration,
    /// QUIC transport values for the hub side.
    pub transport: TransportProfile,
    /// How often liveness is written to the store.
    pub flush_interval: Duration,
    /// Enrolments handled at once; more are told the hub is busy.
    pub max_concurrent_enrollments: usize,
    /// New connections set up at once, and when to ask for address validation first.
    pub admission: AdmissionLimits,
    /// Bytes of flow-control windows granted to summoned agents beyond their standby windows.
    pub window_budget: u64,
    /// Proxied Docker requests in flight across all devices.
    pub max_proxy_streams: usize,
    /// Admin API connections held at once (fewer under a low open-file limit).
    pub max_api_connections: usize,
    /// Lifetime of issued agent certificates; agents renew at 2/3 of it.
    pub agent_cert_validity: Duration,
    /// Devices a fleet token may have waiting for approval; more are refused.
    pub max_pending_per_fleet: u32,
    /// How long a finished job's results and output are kept.
    pub job_retention: Duration,
    /// How long audit records are kept.
    pub audit_retention: Duration,
    /// A plain-HTTP listener serving only `GET /metrics`, for a scraper on a private interface;
    /// `None` (the default): the admin API's `/metrics`, behind the admin credential, only.
    pub metrics_listen: Option<SocketAddr>,
    /// The registry mirror: upstreams, credentials file, size limit.
    pub mirror: crate::mirror::config::MirrorConfig,
    /// The period byte budgets cover: calendar months by default.
    pub budget_period: crate::traffic::period::BudgetPeriod,
    /// Where the agents' TLS ticket keys come from: the store (shared, kept across restarts).
    pub ticket_keys: crate::tickets::TicketKeySource,
    /// Session set-ups a second a stopping hub's restart notice assumes for every agent; `None`:
    /// the measured rates, by whether each agent will resume (`server`).
    pub reconnect_rate: Option<f64>,
}

impl HubConfig {
    /// Where the store lives.
    pub fn store_location(&self) -> crate::store::StoreLocation {
        self.store.clone().unwrap_or_else(|| {
            crate::store::StoreLocation::Sqlite(self.data_dir.join(DEFAULT_STORE_FILE))
        })
    }

    /// A hub with every default, keeping its state in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            store: None,
            agent_listen: DEFAULT_AGENT_LISTEN,
            agent_tcp: AgentTcp::SamePort,
            api_listen: DEFAULT_API_LISTEN,
            public_addrs: Vec::new(),
            hub_name: None,
            peer_url: None,
            checkin_interval: DEFAULT_CHECKIN_INTERVAL,
            checkin_hold: crate::session::interval::HOLD,
            standby_after: DEFAULT_STANDBY_AFTER,
            summon_timeout: DEFAULT_SUMMON_TIMEOUT,
            transport: DEFAULT_TRANSPORT,
            flush_interval: FLUSH_INTERVAL,
            max_concurrent_enrollments: MAX_CONCURRENT_ENROLLMENTS,
            admission: AdmissionLimits::default(),
            window_budget: crate::agent_link::DEFAULT_WINDOW_BUDGET,
            max_proxy_streams: DEFAULT_MAX_PROXY_STREAMS,
            max_api_connections: crate::api::DEFAULT_MAX_API_CONNECTIONS,
            agent_cert_validity: DEFAULT_AGENT_CERT_VALIDITY,
            max_pending_per_fleet: DEFAULT_MAX_PENDING_PER_FLEET,
            job_retention: DEFAULT_JOB_RETENTION,
            audit_retention: DEFAULT_AUDIT_RETENTION,
            metrics_listen: None,
            mirror: crate::mirror::config::MirrorConfig::default(),
            budget_period: crate::traffic::period::BudgetPeriod::Month,
            ticket_keys: crate::tickets::TicketKeySource::Store,
            reconnect_rate: None,
        }
    }
}
