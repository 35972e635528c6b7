//! `outpost-demo`: one command for a newcomer. A hub on loopback, this machine's Docker engine
//! enrolled as a device through the real enrolment exchange (the agent runs in this process), an
//! admin certificate, and the lines to paste so the stock docker CLI reaches the engine through
//! hub → QUIC → agent. State lives in one directory, so running it again reuses it.
//!
//! Its own crate so that the hub does not depend on the agent or the link emulator.

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use outpost_agent::docker_host::DockerHost;
use outpost_hub::config::HubConfig;

/// Try Outpost: a hub on loopback plus this machine's Docker engine enrolled as a device.
#[derive(Debug, Parser)]
#[command(name = "outpost-demo", version, about)]
struct DemoArgs {
    /// Where the demo keeps its state (reused when run again).
    #[arg(long, default_value = "./outpost-demo")]
    data_dir: PathBuf,
    /// UDP address for the agent.
    #[arg(long, default_value = "127.0.0.1:4433")]
    agent_listen: SocketAddr,
    /// TCP address of the API and the Docker proxy.
    #[arg(long, default_value = "127.0.0.1:9443")]
    api_listen: SocketAddr,
    /// The local Docker engine the demo device serves.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    docker_host: String,
    /// Put the device behind an emulated link: a profile name (geo-satellite, leo-satellite,
    /// lte, 3g, edge-2g, flaky-cellular; `outpost-netem profiles`) or a profile .toml file.
    #[arg(long, value_name = "PROFILE")]
    link: Option<String>,
    /// UDP address of the emulated link's relay (with --link).
    #[arg(long, default_value = "127.0.0.1:4434")]
    link_listen: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    outpost_hub::cli::init_logging(outpost_hub::cli::LogFormat::Text);
    let args = DemoArgs::parse();
    let docker = DockerHost::parse(&args.docker_host)?;
    let link = match args.link {
        Some(name) => Some(demo::DemoLink {
            profile: outpost_netem::Profile::load(&name)?,
            listen: args.link_listen,
        }),
        None => None,
    };
    // The demo hub is a `serve` with its defaults, on the demo's directory and loopback listeners.
    let hub = HubConfig {
        agent_listen: args.agent_listen,
        api_listen: args.api_listen,
        ..HubConfig::new(args.data_dir)
    };
    outpost_hub::api::raise_open_file_limit_and_log(hub.max_api_connections);
    demo::run(
        demo::DemoConfig { hub, docker, link },
        outpost_hub::server::shutdown_signal(),
    )
    .await
}
