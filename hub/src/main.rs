//! `outpost-hub`: run a hub, or administer one.

use anyhow::Result;
use clap::Parser;
use outpost_hub::cli::{run_admin, run_admin_cert, run_admin_token, Cli, Command};
use outpost_hub::{api, demo, server};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args.into_config()).await,
        Command::Demo {
            data_dir,
            agent_listen,
            api_listen,
            docker_host,
            link,
            link_listen,
        } => {
            let link = match link {
                Some(name) => Some(demo::DemoLink {
                    profile: outpost_netem::Profile::load(&name)?,
                    listen: link_listen,
                }),
                None => None,
            };
            demo(data_dir, agent_listen, api_listen, &docker_host, link).await
        }
        Command::Endpoint { api, command } => run_admin(&api, command).await,
        Command::AdminCert { api, command } => run_admin_cert(&api, command).await,
        Command::AdminToken { api, command } => run_admin_token(&api, command).await,
    }
}

async fn serve(config: server::HubConfig) -> Result<()> {
    raise_open_file_limit(config.max_api_connections);
    let data_dir = config.data_dir.clone();
    let hub = server::start(config).await?;
    let ca = data_dir.join("ca.pem");
    eprintln!(
        "outpost-hub: agents on udp {}, admin API on https://{}",
        hub.agent_addr, hub.api_addr
    );
    eprintln!("outpost-hub: hub CA certificate: {}", ca.display());
    match &hub.new_admin_token {
        Some(path) => eprintln!("outpost-hub: new admin token written to {}", path.display()),
        None => eprintln!(
            "outpost-hub: admin token: {} (from first start)",
            data_dir.join("admin.token").display()
        ),
    }
    eprintln!(
        "outpost-hub: attach a device: outpost-hub endpoint create --name NAME --data-dir {dir}, then on the device: EDGE_KEY=<edge_key> outpost-agent",
        dir = data_dir.display()
    );
    shutdown_signal().await;
    eprintln!("outpost-hub: shutting down");
    hub.shutdown().await;
    Ok(())
}

async fn demo(
    data_dir: std::path::PathBuf,
    agent_listen: std::net::SocketAddr,
    api_listen: std::net::SocketAddr,
    docker_host: &str,
    link: Option<demo::DemoLink>,
) -> Result<()> {
    let docker = outpost_agent::docker_host::DockerHost::parse(docker_host)?;
    // The demo hub is a `serve` with its defaults, on the demo's directory and loopback listeners.
    let Command::Serve(defaults) = Cli::parse_from(["outpost-hub", "serve"]).command else {
        anyhow::bail!("serve defaults unavailable");
    };
    let mut hub = defaults.into_config();
    hub.data_dir = data_dir;
    hub.agent_listen = agent_listen;
    hub.api_listen = api_listen;
    raise_open_file_limit(hub.max_api_connections);
    demo::run(demo::DemoConfig { hub, docker, link }, shutdown_signal()).await
}

/// Every admin API connection is a descriptor: take the whole hard limit, and say what it allows.
fn raise_open_file_limit(max_api_connections: usize) {
    match api::raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            before = limit.before,
            now = limit.now,
            api_connections = api::effective_cap(max_api_connections, limit.now),
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
