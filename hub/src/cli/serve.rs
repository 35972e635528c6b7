//! `outpost-hub serve`: its flags, and how they become the hub's configuration (every default a
//! named constant in [`crate::config`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use outpost_transport::profile::{self, TransportProfile};

use super::{registry_flag, HumanDuration};
use crate::agent_link::admission::AdmissionLimits;
use crate::config::{self, HubConfig};
use crate::store::StoreLocation;

/// `outpost-hub serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the CA, keys, admin token and database.
    #[arg(long, env = "OUTPOST_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The store: a PostgreSQL URL (`postgres://user:password@host:port/database`) or an SQLite
    /// file. Default: `hub.db` in the data directory. Give a URL with a password through the
    /// environment, not the command line, where `ps` shows it.
    #[arg(long, env = "OUTPOST_STORE", value_parser = parse_store)]
    pub store: Option<StoreLocation>,
    /// UDP address agents connect to.
    #[arg(long, default_value_t = config::DEFAULT_AGENT_LISTEN)]
    pub agent_listen: SocketAddr,
    /// TCP address for agents whose network drops UDP (QUIC in a TLS tunnel): `same` (the UDP
    /// address and port, so agents need nothing more), another address (agents then need
    /// `--tcp-port`), or `off`.
    #[arg(long, default_value = "same", value_parser = parse_agent_tcp)]
    pub agent_tcp_listen: config::AgentTcp,
    /// TCP address of the admin HTTPS API.
    #[arg(long, default_value_t = config::DEFAULT_API_LISTEN)]
    pub api_listen: SocketAddr,
    /// Address agents should dial (`host:port`), written into join tokens; repeat for several.
    /// Default: this host's name and 127.0.0.1 on the agent port.
    #[arg(
        long = "public-addr",
        env = "OUTPOST_PUBLIC_ADDR",
        value_delimiter = ','
    )]
    pub public_addrs: Vec<String>,
    /// This hub's name among the hubs sharing a store (`outpost-hub hubs` lists them). Default:
    /// `hub-` and 8 random hex digits, generated on first start and kept in the data directory.
    #[arg(long, env = "OUTPOST_HUB_NAME")]
    pub hub_name: Option<String>,
    /// This hub's admin API as the other hubs of the store reach it, e.g.
    /// `https://10.0.0.3:8443`: a request arriving at another hub for a device this hub holds is
    /// forwarded here. Default: the API's bound address (loopback when bound to any address,
    /// which only serves hubs on one machine).
    #[arg(long, env = "OUTPOST_PEER_URL")]
    pub peer_url: Option<String>,
    /// Check-in interval handed to agents (the NAT keepalive), e.g. `25s`.
    #[arg(long, default_value_t = HumanDuration(config::DEFAULT_CHECKIN_INTERVAL))]
    pub checkin_interval: HumanDuration,
    /// How long NAT bindings must hold at a device's check-in interval before the hub lets it
    /// grow, or probes whether the binding holds for longer than the interval (30m: a probe that
    /// finds the binding gone costs a migration). Shorten it only in a lab or a test.
    #[arg(long, default_value_t = HumanDuration(crate::session::interval::HOLD))]
    pub checkin_hold: HumanDuration,
    /// Inactivity after which a summoned agent returns to standby, e.g. `60s`.
    #[arg(long, default_value_t = HumanDuration(config::DEFAULT_STANDBY_AFTER))]
    pub standby_after: HumanDuration,
    /// How long an admin request waits for a summoned device.
    #[arg(long, default_value_t = HumanDuration(config::DEFAULT_SUMMON_TIMEOUT))]
    pub summon_timeout: HumanDuration,
    /// Proxied Docker requests in flight across all devices; more are refused with a clear error.
    #[arg(long, default_value_t = config::DEFAULT_MAX_PROXY_STREAMS)]
    pub max_proxy_streams: usize,
    /// MiB of flow-control windows for summoned agents beyond their standby windows: bounds the
    /// hub's buffer memory (see docs/architecture.md); agents beyond it transfer at standby windows.
    #[arg(long, default_value_t = crate::agent_link::DEFAULT_WINDOW_BUDGET >> 20)]
    pub window_budget_mib: u64,
    /// Agent connections set up at once; more wait for a slot (see docs/architecture.md). Raise
    /// it for fleets on long round trips (a set-up on a GEO path takes ~2.5 s of round trips).
    #[arg(long, default_value_t = AdmissionLimits::default().max_in_flight)]
    pub max_handshakes: usize,
    /// Admin API connections held at once; past it the oldest unauthenticated one is shed. The hub
    /// holds fewer when its open-file limit leaves less (see docs/architecture.md).
    #[arg(long, default_value_t = crate::api::DEFAULT_MAX_API_CONNECTIONS)]
    pub max_api_connections: usize,
    /// QUIC transport profile for the hub side: lan, cellular or satellite.
    #[arg(long, default_value = config::DEFAULT_TRANSPORT.name, value_parser = parse_profile)]
    pub transport: TransportProfile,
    /// Devices one fleet token may have waiting for approval; more are refused until an admin
    /// approves or removes some.
    #[arg(long, default_value_t = config::DEFAULT_MAX_PENDING_PER_FLEET)]
    pub max_pending_per_fleet: u32,
    /// How long a finished job's results and output are kept (a job's output is up to 128 KiB
    /// per device).
    #[arg(long, default_value_t = HumanDuration(config::DEFAULT_JOB_RETENTION))]
    pub job_retention: HumanDuration,
    /// How long audit records (every state-changing call) are kept.
    #[arg(long, default_value_t = HumanDuration(config::DEFAULT_AUDIT_RETENTION))]
    pub audit_retention: HumanDuration,
    /// Also serve `GET /metrics` (Prometheus) in plain HTTP on this TCP address, e.g. a private
    /// interface's `10.0.0.2:9464`; without it the admin API's `/metrics` (admin credential) only.
    #[arg(long, env = "OUTPOST_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// An upstream registry for the hub's pull-through mirror (`/v2/` on the admin API), e.g.
    /// `https://registry.example:5000`; repeat for several. The first serves names without a
    /// registry host (`library/busybox`), another the names that start with its host.
    #[arg(long = "registry", value_parser = registry_flag::RegistryUrlParser)]
    pub registries: Vec<reqwest::Url>,
    /// Credentials for the upstream registries: lines `HOST USER PASSWORD` (HOST as in the
    /// `--registry` URL, `host[:port]`); never put them in the URL.
    #[arg(long)]
    pub registry_credentials: Option<PathBuf>,
    /// GiB of blobs the mirror keeps; past it the least recently used are evicted.
    #[arg(long, default_value_t = config::DEFAULT_MIRROR_MAX_BYTES >> 30)]
    pub mirror_max_gib: u64,
    /// The period byte budgets cover (`budget set`): `month` (calendar months, UTC), or a span
    /// such as `1d` or `90s` counted from the Unix epoch, for labs and tests.
    #[arg(long, default_value = "month")]
    pub budget_period: crate::traffic::period::BudgetPeriod,
    /// Lifetime of issued agent certificates (tests shorten it to watch renewal).
    #[arg(long, hide = true, default_value_t = HumanDuration(config::DEFAULT_AGENT_CERT_VALIDITY))]
    pub agent_cert_validity: HumanDuration,
    /// Where the agents' TLS ticket keys come from: `store` (shared by the hubs of the store,
    /// kept across restarts) or `process` (lost with the process; benches measure the difference).
    #[arg(long, hide = true, default_value = "store", value_parser = parse_ticket_keys)]
    pub ticket_keys: crate::tickets::TicketKeySource,
    /// Session set-ups a second the restart notice assumes for every agent, instead of the
    /// measured rates (benches set it high to measure the hub's rate).
    #[arg(long, hide = true)]
    pub reconnect_rate: Option<f64>,
}

impl ServeArgs {
    /// Resolve into the runtime configuration.
    pub fn into_config(self) -> HubConfig {
        HubConfig {
            agent_listen: self.agent_listen,
            agent_tcp: self.agent_tcp_listen,
            api_listen: self.api_listen,
            public_addrs: self.public_addrs,
            hub_name: self.hub_name,
            peer_url: self.peer_url,
            checkin_interval: self.checkin_interval.0,
            checkin_hold: self.checkin_hold.0,
            standby_after: self.standby_after.0,
            summon_timeout: self.summon_timeout.0,
            transport: self.transport,
            admission: AdmissionLimits::with_slots(self.max_handshakes),
            window_budget: self.window_budget_mib << 20,
            max_proxy_streams: self.max_proxy_streams,
            max_api_connections: self.max_api_connections,
            agent_cert_validity: self.agent_cert_validity.0,
            max_pending_per_fleet: self.max_pending_per_fleet,
            job_retention: self.job_retention.0,
            audit_retention: self.audit_retention.0,
            metrics_listen: self.metrics_listen,
            mirror: crate::mirror::config::MirrorConfig {
                upstreams: self.registries,
                credentials_file: self.registry_credentials,
                max_bytes: self.mirror_max_gib.saturating_mul(1 << 30),
                ..Default::default()
            },
            budget_period: self.budget_period,
            store: self.store,
            ticket_keys: self.ticket_keys,
            reconnect_rate: self.reconnect_rate.filter(|r| *r > 0.0),
            ..HubConfig::new(self.data_dir)
        }
    }
}

fn parse_store(value: &str) -> Result<StoreLocation, String> {
    Ok(StoreLocation::parse(value))
}

fn parse_agent_tcp(value: &str) -> Result<config::AgentTcp, String> {
    match value {
        "same" => Ok(config::AgentTcp::SamePort),
        "off" => Ok(config::AgentTcp::Off),
        addr => addr.parse().map(config::AgentTcp::At).map_err(|_| {
            format!("{addr:?} is neither `same`, `off` nor an address such as 0.0.0.0:443")
        }),
    }
}

fn parse_ticket_keys(value: &str) -> Result<crate::tickets::TicketKeySource, String> {
    match value {
        "store" => Ok(crate::tickets::TicketKeySource::Store),
        "process" => Ok(crate::tickets::TicketKeySource::Process),
        other => Err(format!("{other:?} is neither `store` nor `process`")),
    }
}

fn parse_profile(name: &str) -> Result<TransportProfile, String> {
    TransportProfile::by_name(name).ok_or_else(|| {
        let names: Vec<_> = profile::PROFILES.iter().map(|p| p.name).collect();
        format!(
            "unknown transport profile {name:?}; choose one of {}",
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn serve_without_flags_is_the_config_defaults() {
        let Command::Serve(args) = Cli::parse_from(["outpost-hub", "serve"]).command else {
            panic!("not serve");
        };
        let from_flags = (*args).into_config();
        let defaults = HubConfig::new(PathBuf::from(config::DEFAULT_DATA_DIR));
        assert_eq!(format!("{from_flags:?}"), format!("{defaults:?}"));
    }
}
