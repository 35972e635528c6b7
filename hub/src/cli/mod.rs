//! The `outpost-hub` command line: `serve`, and the admin subcommands that talk to a hub's API.
//!
//! Flags fall back to environment variables (`OUTPOST_API`, `OUTPOST_TOKEN`, `OUTPOST_CA`), then to
//! what a hub wrote into its data directory, so on the hub's own machine `outpost-hub endpoint list`
//! needs no flags at all.

mod admin;
mod audit;
mod budget;
mod credentials;
mod docker_context;
mod duration;
mod escape;
mod image;
mod job;
mod quiet;
mod registry_flag;
mod rollout;
mod stack;
mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use outpost_transport::profile::{self, TransportProfile};

use crate::agent_link::admission::AdmissionLimits;
use crate::config::{self, HubConfig};

pub use admin::run as run_admin;
pub use audit::{run as run_audit, AuditCommand};
pub use budget::{run as run_budget, run_window, BudgetCommand, WindowCommand};
pub use credentials::{
    run_admin_cert, run_admin_token, run_token, AdminCertCommand, AdminTokenCommand, GrantArgs,
    TokenCommand,
};
pub use duration::{parse_duration, HumanDuration};
pub use image::{run as run_image, ImageCommand};
pub use job::{run as run_job, JobCommand};
pub use quiet::{run as run_quiet, QuietCommand};
pub use rollout::{run as run_rollout, RolloutCommand};
pub use stack::{run as run_stack, StackCommand};
pub use webhook::{run as run_webhook, WebhookCommand};

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, the event's other
    /// fields, `target`), for a log shipper.
    Json,
}

/// Log to stderr for an operator: `RUST_LOG` if set, else info with quinn's chatter at warn;
/// as text (colours only on a terminal) or one JSON object a line.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,quinn=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Outpost hub: manage Docker on remote devices over QUIC.
#[derive(Debug, Parser)]
#[command(name = "outpost-hub", version, about, args_override_self = true)]
pub struct Cli {
    /// Log format on stderr: text, or json (one object a line).
    #[arg(
        long,
        global = true,
        env = "OUTPOST_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Manage endpoints (devices) through the hub's API.
    Endpoint {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The endpoint command.
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Compose stacks: versions stored on the hub for devices to run.
    Stack {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The stack command.
        #[command(subcommand)]
        command: StackCommand,
    },
    /// Rollouts of stacks to devices (`stack deploy` starts one).
    Rollout {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The rollout command.
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Jobs: a command, a one-shot container or an Engine API call run once on each device of a
    /// selection.
    Job {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The job command.
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Images in the hub's mirror: push a `docker save` archive (air-gapped sites).
    Image {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The image command.
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// The audit trail: every state-changing call, who made it, on which device.
    Audit {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Admin client certificates (for the docker CLI's TLS convention).
    AdminCert {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The certificate command.
        #[command(subcommand)]
        command: AdminCertCommand,
    },
    /// Named API tokens, each with a role (viewer, operator, admin) and an optional scope.
    Token {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The token command.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Webhooks: signed JSON alerts (device offline and back, rollout paused, job finished,
    /// certificate expiring) POSTed to URLs, with every delivery recorded.
    Webhook {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The webhook command.
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Byte budgets a period per device (the fleet, a group or one device): past one, image
    /// transfers wait for the next period.
    Budget {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The budget command.
        #[command(subcommand)]
        command: BudgetCommand,
    },
    /// Transfer windows (`01:00-05:00`, device time): outside one, image transfers wait.
    Window {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The window command.
        #[command(subcommand)]
        command: WindowCommand,
    },
    /// The quiet check-in policy by group: check-ins minutes apart, a summon waits for the next.
    Quiet {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The quiet command.
        #[command(subcommand)]
        command: QuietCommand,
    },
    /// The admin bearer token.
    AdminToken {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// The token command.
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
}

/// One page of a list, and how to print it (`stack list`, `rollout list`, `rollout show`, `job list`,
/// `job show`).
#[derive(Clone, Copy, Debug, Args)]
pub struct PageArgs {
    /// Page (from 1).
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Rows per page (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub per_page: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl PageArgs {
    /// The page as the API's list query.
    pub fn query(self) -> outpost_api::StackListQuery {
        outpost_api::StackListQuery {
            page: Some(self.page.to_string()),
            per_page: Some(self.per_page.to_string()),
        }
    }
}

/// `outpost-hub serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the CA, keys, admin token and database.
    #[arg(long, env = "OUTPOST_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// UDP address agents connect to.
    #[arg(long, default_value_t = config::DEFAULT_AGENT_LISTEN)]
    pub agent_listen: SocketAddr,
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
}

impl ServeArgs {
    /// Resolve into the runtime configuration.
    pub fn into_config(self) -> HubConfig {
        HubConfig {
            agent_listen: self.agent_listen,
            api_listen: self.api_listen,
            public_addrs: self.public_addrs,
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
            ..HubConfig::new(self.data_dir)
        }
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

/// How admin commands reach the API.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// API base URL, e.g. `https://hub.example:9443` (default: from DATA_DIR/api.url).
    #[arg(long, env = "OUTPOST_API", global = true)]
    pub api: Option<String>,
    /// Admin bearer token (default: DATA_DIR/admin.token).
    #[arg(long, env = "OUTPOST_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The hub CA certificate to trust (default: DATA_DIR/ca.pem).
    #[arg(long, env = "OUTPOST_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// The hub's data directory, when running on the hub's machine.
    #[arg(
        long,
        env = "OUTPOST_DATA_DIR",
        default_value = "./outpost-data",
        global = true
    )]
    pub data_dir: PathBuf,
}

/// `outpost-hub endpoint …`.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Create an endpoint and print its join token (EDGE_KEY) as JSON.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Only the agent with this UUID may enrol.
        #[arg(long)]
        agent_id: Option<String>,
        /// A fleet token: many devices may enrol, each waits for approval.
        #[arg(long)]
        fleet: bool,
        /// Put it in this group (devices enrolling with a fleet token inherit it).
        #[arg(long)]
        group: Option<String>,
        /// Tag it (repeat for several; fleet devices inherit them).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List endpoints, one page at a time.
    List(ListArgs),
    /// Add a tag to an endpoint.
    Tag {
        /// Endpoint id.
        id: u64,
        /// The tag.
        tag: String,
    },
    /// Remove a tag from an endpoint.
    Untag {
        /// Endpoint id.
        id: u64,
        /// The tag.
        tag: String,
    },
    /// Put an endpoint in a group (replacing its group).
    Group {
        /// Endpoint id.
        id: u64,
        /// The group.
        group: String,
    },
    /// Take an endpoint out of its group.
    Ungroup {
        /// Endpoint id.
        id: u64,
    },
    /// Show one endpoint.
    Show {
        /// Endpoint id.
        id: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending device.
    Approve {
        /// Endpoint id.
        id: u64,
    },
    /// Summon a device and print how long it took to be ready.
    Summon {
        /// Endpoint id.
        id: u64,
    },
    /// Reset an endpoint for a new device: unbinds its agent, revokes its certificates, closes
    /// its connection and prints a new join token (the old one stops working).
    Reset {
        /// Endpoint id.
        id: u64,
    },
    /// Remove an endpoint: disconnects it and revokes its certificate.
    Rm {
        /// Endpoint id.
        id: u64,
    },
    /// Create (or update) a docker context for a device, so `docker context use NAME` switches to it.
    Context {
        /// Endpoint id.
        id: u64,
        /// Context name (default: the endpoint's name).
        #[arg(long)]
        name: Option<String>,
        /// Admin certificate directory (ca.pem, cert.pem, key.pem); one is issued into it if empty.
        #[arg(long, default_value = "./outpost-admin-cert")]
        cert_dir: PathBuf,
        /// Only print the docker command instead of running it.
        #[arg(long)]
        print: bool,
    },
}

/// `outpost-hub endpoint list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only this status: pending, offline, online (standby or active), standby, active.
    #[arg(long)]
    pub status: Option<String>,
    /// Only names containing this text (ASCII case ignored).
    #[arg(long)]
    pub search: Option<String>,
    /// Only endpoints in this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only endpoints with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Sort by name, created or last_checkin.
    #[arg(long, default_value = "created")]
    pub sort: String,
    /// Largest first.
    #[arg(long)]
    pub desc: bool,
    /// List fleet tokens instead of devices.
    #[arg(long)]
    pub fleets: bool,
    /// Page number (1-based).
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Rows per page.
    #[arg(long, default_value_t = 100)]
    pub per_page: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_without_flags_is_the_config_defaults() {
        let Command::Serve(args) = Cli::parse_from(["outpost-hub", "serve"]).command else {
            panic!("not serve");
        };
        let from_flags = args.into_config();
        let defaults = HubConfig::new(PathBuf::from(config::DEFAULT_DATA_DIR));
        assert_eq!(format!("{from_flags:?}"), format!("{defaults:?}"));
    }
}
