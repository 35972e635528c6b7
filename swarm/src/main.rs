//! `outpost-swarm`: run N simulated agents against a hub and report what they measured.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use outpost_swarm::{HubAccess, Phase, SwarmConfig};
use outpost_transport::profile::TransportProfile;

/// The load tool shares the hub's two cores in the benches, so its own cost is the hub's
/// headroom: glibc's allocator was ~40 % of the swarm's CPU in a 20,000-agent reconnect storm
/// (`perf record -a`, BENCHMARKS.md "Fast reconnects").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Outpost swarm: many real agents in one process, over a few UDP sockets.
///
/// The check-in interval is the hub's to set (`outpost-hub serve --checkin-interval`).
#[derive(Debug, Parser)]
#[command(name = "outpost-swarm", version, about)]
struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// UDP sockets the agents share.
    #[arg(long, default_value_t = 8)]
    sockets: usize,
    /// Seconds to hold the agents checked in once all are online (then report and exit).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Agents to summon (an evenly spread sample), one at a time.
    #[arg(long, default_value_t = 100)]
    summons: usize,
    /// Where the agents' identities are kept.
    #[arg(long, default_value = "./outpost-swarm-data")]
    data_dir: PathBuf,
    /// Run the identities already enrolled in the data directory again (enrol only the missing).
    #[arg(long)]
    reuse: bool,
    /// Endpoint creations and enrolments in flight at once.
    #[arg(long, default_value_t = 32)]
    enrol_concurrency: usize,
    /// Agents started and not yet online, at most, while starting.
    #[arg(long, default_value_t = 256)]
    start_concurrency: usize,
    /// Seconds to wait for every agent to be online before holding anyway.
    #[arg(long, default_value_t = 600)]
    online_timeout: u64,
    /// The agents' QUIC transport profile: lan, cellular or satellite.
    #[arg(long, default_value = "cellular")]
    transport: String,
    /// Endpoint names: this prefix and the agent's index.
    #[arg(long, default_value = "swarm-")]
    name_prefix: String,
    /// Take stacks with a stand-in that reports every desired state healthy at once and touches
    /// no engine (for measuring the hub's rollouts at fleet scale): `off` or `stand-in`.
    #[arg(long, default_value = "off", value_parser = ["off", "stand-in"])]
    stacks: String,
    /// The hub's data directory, for api.url, admin.token and ca.pem (on the hub's machine).
    #[arg(long, env = "OUTPOST_DATA_DIR")]
    hub_data_dir: Option<PathBuf>,
    /// Admin API base URL (default: from the hub's data directory).
    #[arg(long, env = "OUTPOST_API")]
    api: Option<String>,
    /// Admin bearer token (default: from the hub's data directory).
    #[arg(long, env = "OUTPOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The hub CA certificate (default: from the hub's data directory).
    #[arg(long, env = "OUTPOST_CA")]
    ca: Option<PathBuf>,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,outpost_agent=error,quinn=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-swarm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let json = args.json;
    let config = resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = runtime.block_on(outpost_swarm::run(config, stop, print_phase))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn print_phase(phase: Phase) {
    match phase {
        Phase::Enrolled {
            reused,
            enrolled,
            seconds,
        } => println!("phase enrolled: {enrolled} new, {reused} reused in {seconds:.1} s"),
        Phase::Online { online, seconds } => {
            println!("phase online: {online} agents after {seconds:.1} s")
        }
        Phase::SummonsDone { ok, failed } => {
            println!("phase summons-done: {ok} ok, {failed} failed; holding")
        }
    }
}

fn resolve(args: Args) -> anyhow::Result<SwarmConfig> {
    let from_dir = match &args.hub_data_dir {
        Some(dir) => Some(
            HubAccess::from_hub_dir(dir)
                .with_context(|| format!("reading the hub's access files in {}", dir.display()))?,
        ),
        None => None,
    };
    let pick = |flag: Option<String>, from: Option<String>, what: &str| {
        flag.or(from)
            .with_context(|| format!("no {what}: pass --{what} or --hub-data-dir"))
    };
    let ca_pem = match (&args.ca, &from_dir) {
        (Some(path), _) => std::fs::read(path).with_context(|| format!("{}", path.display()))?,
        (None, Some(hub)) => hub.ca_pem.clone(),
        (None, None) => anyhow::bail!("no ca: pass --ca or --hub-data-dir"),
    };
    let hub = HubAccess {
        api: pick(args.api, from_dir.as_ref().map(|h| h.api.clone()), "api")?,
        token: pick(
            args.token,
            from_dir.as_ref().map(|h| h.token.clone()),
            "token",
        )?,
        ca_pem,
    };
    let transport = TransportProfile::by_name(&args.transport).with_context(|| {
        format!(
            "unknown transport profile {:?}: use lan, cellular or satellite",
            args.transport
        )
    })?;
    Ok(SwarmConfig {
        agents: args.agents,
        sockets: args.sockets,
        hold: Duration::from_secs(args.seconds),
        data_dir: args.data_dir,
        reuse: args.reuse,
        summons: args.summons,
        enrol_concurrency: args.enrol_concurrency,
        start_concurrency: args.start_concurrency,
        online_timeout: Duration::from_secs(args.online_timeout),
        transport,
        stacks: if args.stacks == "stand-in" {
            outpost_agent::Stacks::StandIn
        } else {
            outpost_agent::Stacks::Off
        },
        name_prefix: args.name_prefix,
        hub,
    })
}
