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
mod hubs;
mod image;
mod job;
mod quiet;
mod registry_flag;
mod rollout;
mod serve;
mod stack;
mod webhook;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use admin::run as run_admin;
pub use audit::{run as run_audit, AuditCommand};
pub use budget::{run as run_budget, run_window, BudgetCommand, WindowCommand};
pub use credentials::{
    run_admin_cert, run_admin_token, run_token, AdminCertCommand, AdminTokenCommand, GrantArgs,
    TokenCommand,
};
pub use duration::{parse_duration, HumanDuration};
pub use hubs::run as run_hubs;
pub use image::{run as run_image, ImageCommand};
pub use job::{run as run_job, JobCommand};
pub use quiet::{run as run_quiet, QuietCommand};
pub use rollout::{run as run_rollout, RolloutCommand};
pub use serve::ServeArgs;
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
    Serve(Box<ServeArgs>),
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
    /// The hubs sharing this hub's store: health, devices held, agent addresses.
    Hubs {
        /// How to reach the API.
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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

/// The devices a job, an image pull or a rollout is for (`job run`, `image pull`, `stack deploy`).
#[derive(Debug, Args)]
pub struct Selection {
    /// Devices in this group (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Devices with this tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// This endpoint (repeatable).
    #[arg(long = "endpoint")]
    pub endpoints: Vec<u64>,
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
