//! `outpost-agent`: enrol this device with a hub and keep it manageable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use outpost_agent::docker_host::DockerHost;
use outpost_agent::tunnel::{Proxy, TcpFallback, TcpRoute};
use outpost_agent::{run, AgentConfig};
use outpost_protocol::token::JoinToken;
use outpost_protocol::AgentId;
use outpost_transport::profile::TransportProfile;

/// Outpost agent: dials the hub, keeps one QUIC connection, serves the local Docker engine.
#[derive(Debug, Parser)]
#[command(name = "outpost-agent", version, about)]
struct Args {
    /// Join token printed by `outpost-hub endpoint create` (only needed until enrolled).
    #[arg(long, env = "EDGE_KEY", hide_env_values = true)]
    edge_key: Option<String>,
    /// Pre-assigned agent UUID (default: generated on first start).
    #[arg(long, env = "EDGE_ID")]
    edge_id: Option<String>,
    /// Where the agent keeps its identity.
    #[arg(
        long,
        env = "OUTPOST_AGENT_DATA_DIR",
        default_value = "./outpost-agent-data"
    )]
    data_dir: PathBuf,
    /// Docker Engine API address of this device.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_host: String,
    /// QUIC transport profile: auto (measured from the path to the hub), lan, cellular or
    /// satellite.
    #[arg(long, default_value = "auto")]
    transport: String,
    /// Log format on stderr: text, or json (one object a line, for a log shipper).
    #[arg(long, env = "OUTPOST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Where the device's loopback registry listens (`docker pull 127.0.0.1:5380/<image>` pulls
    /// through the hub's mirror), or `off`.
    #[arg(long, env = "OUTPOST_REGISTRY_LISTEN", default_value = outpost_agent::loopback::DEFAULT_LISTEN)]
    registry_listen: String,
    /// Serve the agent's own Prometheus series at `http://ADDR/metrics` (a loopback address,
    /// e.g. 127.0.0.1:9465); off by default.
    #[arg(long, env = "OUTPOST_AGENT_METRICS")]
    metrics: Option<String>,
    /// When to reach the hub over TCP (QUIC in a TLS tunnel) instead of UDP: auto (when no QUIC
    /// handshake completes within a few seconds; back to UDP when it answers again), always, or
    /// never.
    #[arg(long, env = "OUTPOST_TCP_FALLBACK", value_enum, default_value_t = TcpFallback::Auto)]
    tcp_fallback: TcpFallback,
    /// HTTP proxy for the TCP path, `http://[user:password@]host:port` (default: HTTPS_PROXY or
    /// https_proxy from the environment).
    #[arg(long, env = "OUTPOST_PROXY", hide_env_values = true)]
    proxy: Option<String>,
    /// The hub's TCP port, when the hub takes tunnels on another port than its QUIC one
    /// (`outpost-hub serve --agent-tcp-listen`).
    #[arg(long, env = "OUTPOST_TCP_PORT")]
    tcp_port: Option<u16>,
    /// How soon a device on TCP first asks whether UDP answers again (then doubling to 10 min).
    #[arg(long, env = "OUTPOST_UDP_RETRY_S", hide = true, default_value = "30")]
    udp_retry_s: u64,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event (colours only on a terminal).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`).
    Json,
}

/// Log to stderr: `RUST_LOG` if set, else info with quinn's chatter at warn.
fn init_logging(format: LogFormat) {
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

fn main() -> ExitCode {
    let args = Args::parse();
    let format = args.log_format;
    init_logging(format);
    let config = match resolve(args) {
        Ok(config) => config,
        Err(message) => {
            fatal(format, &message);
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            fatal(format, &format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(format, &e.to_string());
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Why the agent stops, as its last stderr line: plain text, or a JSON log line so that every
/// line a log shipper reads parses.
fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("outpost-agent: {message}"),
        LogFormat::Json => tracing::error!("{message}"),
    }
}

fn resolve(args: Args) -> Result<AgentConfig, String> {
    let edge_key = args
        .edge_key
        .filter(|k| !k.trim().is_empty())
        .map(|k| JoinToken::decode(&k).map_err(|e| format!("EDGE_KEY: {e}")))
        .transpose()?;
    let edge_id = args
        .edge_id
        .filter(|k| !k.trim().is_empty())
        .map(|id| {
            id.parse::<AgentId>()
                .map_err(|e| format!("EDGE_ID {id:?} is not a UUID: {e}"))
        })
        .transpose()?;
    let choose_transport = args.transport == "auto";
    // `auto` starts from the middle profile until the first connection has measured the path.
    let first_guess = if choose_transport {
        "cellular"
    } else {
        &args.transport
    };
    let transport = TransportProfile::by_name(first_guess).ok_or_else(|| {
        format!(
            "unknown transport profile {:?}: use auto, lan, cellular or satellite",
            args.transport
        )
    })?;
    let docker = DockerHost::parse(&args.docker_host).map_err(|e| e.to_string())?;
    let registry_listen = match args.registry_listen.as_str() {
        "off" => None,
        // The engine trusts plain HTTP only on loopback, and the images are no one else's.
        addr => Some(loopback_addr("--registry-listen", addr)?),
    };
    let metrics_listen = args
        .metrics
        .as_deref()
        .map(|addr| loopback_addr("--metrics", addr))
        .transpose()?;
    let proxy = args
        .proxy
        .or_else(|| std::env::var("HTTPS_PROXY").ok())
        .or_else(|| std::env::var("https_proxy").ok())
        .filter(|p| !p.trim().is_empty())
        .map(|p| Proxy::parse(&p).map_err(|e| e.to_string()))
        .transpose()?;
    let tcp = TcpRoute {
        mode: args.tcp_fallback,
        proxy,
        port: args.tcp_port,
        first_udp_retry: Duration::from_secs(args.udp_retry_s.max(1)),
    };
    Ok(AgentConfig {
        data_dir: args.data_dir,
        edge_key,
        edge_id,
        transport,
        choose_transport,
        docker,
        standby_after: Duration::from_secs(60),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
        stable_after: Duration::from_secs(60),
        registry_listen,
        metrics_listen,
        tcp,
    })
}

/// `addr` as a loopback socket address, or why not.
fn loopback_addr(flag: &str, addr: &str) -> Result<std::net::SocketAddr, String> {
    let parsed: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("{flag} {addr:?}: {e} (IP:PORT)"))?;
    if !parsed.ip().is_loopback() {
        return Err(format!("{flag} {addr}: only a loopback address"));
    }
    Ok(parsed)
}
