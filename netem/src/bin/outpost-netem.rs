//! `outpost-netem`: run a link emulator (UDP relay or L3 router), control it, list profiles, and
//! measure a link (echo / ping) from inside a rig namespace.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use outpost_netem::control::{self, Controllable};
use outpost_netem::profile::{self, Profile};
use outpost_netem::{probe, Relay, Router};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Userspace link emulator for Outpost (satellite, cellular, flaky links)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Relay UDP from devices (--listen) to a hub (--upstream) through a profile, NAT-like.
    Relay {
        /// Address devices send to.
        #[arg(long)]
        listen: SocketAddr,
        /// The hub's address.
        #[arg(long)]
        upstream: SocketAddr,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Move all IP traffic between two TUN devices through a profile (run in the rig's router namespace).
    Router {
        /// TUN device towards the hub.
        #[arg(long, default_value = "nhub0")]
        hub_tun: String,
        /// TUN device towards the agent.
        #[arg(long, default_value = "nagent0")]
        agent_tun: String,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// List the profiles and what they emulate.
    Profiles,
    /// Send a command to a running relay or router: `profile NAME`, `outage 5s`, `rebind`, `counters`.
    Ctl {
        /// The control socket given to the relay or router.
        #[arg(long, env = "OUTPOST_NETEM_CONTROL")]
        control: PathBuf,
        /// The command words.
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Print the `tc qdisc … netem` arguments for one direction of a profile (for rigs with sch_netem).
    TcArgs {
        /// Profile name or path.
        #[arg(long)]
        profile: String,
        /// Which direction.
        #[arg(long, value_enum)]
        direction: Direction,
    },
    /// Echo UDP datagrams and TCP streams back (a stand-in hub for measurements).
    Echo {
        /// UDP address to echo on.
        #[arg(long)]
        udp: Option<SocketAddr>,
        /// TCP address to echo on.
        #[arg(long)]
        tcp: Option<SocketAddr>,
    },
    /// Measure round-trip time and loss to an echo server.
    Ping {
        /// The echo server.
        #[arg(long)]
        target: SocketAddr,
        /// Use TCP (one connection, request/response) instead of UDP probes.
        #[arg(long)]
        tcp: bool,
        /// Number of probes.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Milliseconds between UDP probes.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        /// Probe size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Seconds to wait for late answers (UDP) or for the whole run (TCP).
        #[arg(long, default_value_t = 3)]
        wait_s: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Direction {
    Up,
    Down,
}

#[derive(Debug, clap::Args)]
struct LinkArgs {
    /// Profile name (from the profiles directory) or path to a .toml file.
    #[arg(long, default_value = "transparent")]
    profile: String,
    /// Seed for the link's randomness (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Unix socket path for run-time control (see `outpost-netem ctl`).
    #[arg(long)]
    control: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Relay {
            listen,
            upstream,
            link,
        } => {
            let profile = Profile::load(&link.profile)?;
            let relay = Relay::bind(listen, upstream, profile, link.seed).await?;
            println!(
                "relay {} -> {upstream} profile {}",
                relay.local_addr(),
                link.profile
            );
            let control = relay.control();
            serve(Arc::new(control), link.control.as_deref()).await?;
            println!("{}", relay.shutdown().await);
        }
        Command::Router {
            hub_tun,
            agent_tun,
            link,
        } => {
            let profile = Profile::load(&link.profile)?;
            let router = Router::start(&hub_tun, &agent_tun, profile, link.seed).await?;
            println!("router {hub_tun} <-> {agent_tun} profile {}", link.profile);
            serve(Arc::new(router.control()), link.control.as_deref()).await?;
            println!("{}", router.shutdown().await);
        }
        Command::Profiles => {
            let dir = profile::profiles_dir()?;
            println!("profiles in {}", dir.display());
            for name in profile::list(&dir)? {
                match Profile::load_from(&dir, &name) {
                    Ok(p) => println!("  {name:<16} {}", p.description),
                    Err(e) => println!("  {name:<16} (error: {e})"),
                }
            }
        }
        Command::Ctl { control, command } => {
            let reply = control::send(&control, &command.join(" ")).await?;
            println!("{reply}");
            if reply.starts_with("error") {
                bail!("command refused");
            }
        }
        Command::TcArgs { profile, direction } => {
            let p = Profile::load(&profile)?;
            let link = match direction {
                Direction::Up => &p.up,
                Direction::Down => &p.down,
            };
            println!("{}", Profile::tc_netem_args(link).join(" "));
        }
        Command::Echo { udp, tcp } => echo(udp, tcp).await?,
        Command::Ping {
            target,
            tcp,
            count,
            interval_ms,
            size,
            wait_s,
        } => {
            let wait = Duration::from_secs(wait_s);
            let report = if tcp {
                probe::tcp_ping(target, count, size, wait).await?
            } else {
                let bind: SocketAddr = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()?;
                let socket = tokio::net::UdpSocket::bind(bind).await?;
                probe::udp_ping(
                    &socket,
                    target,
                    count,
                    Duration::from_millis(interval_ms),
                    size,
                    wait,
                )
                .await?
            };
            println!("{report}");
            let p50 = report.quantile(0.5).map_or(-1.0, |d| d.as_secs_f64() * 1e3);
            println!(
                "result sent={} received={} p50_ms={p50:.2}",
                report.sent, report.received
            );
        }
    }
    Ok(())
}

/// Runs until SIGINT or SIGTERM, printing counters on SIGUSR1 and serving the control socket.
async fn serve(target: Arc<dyn Controllable>, control_path: Option<&Path>) -> Result<()> {
    let _control_task = match control_path {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("binding control socket {}", path.display()))?;
            Some(AbortOnDrop(tokio::spawn(control::serve(
                listener,
                target.clone(),
            ))))
        }
        None => None,
    };
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = usr1.recv() => println!("{}", target.counters()),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if let Some(path) = control_path {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn echo(udp: Option<SocketAddr>, tcp: Option<SocketAddr>) -> Result<()> {
    if udp.is_none() && tcp.is_none() {
        bail!("give --udp and/or --tcp");
    }
    let mut tasks = Vec::new();
    if let Some(addr) = udp {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        println!("echo udp {}", socket.local_addr()?);
        tasks.push(tokio::spawn(probe::udp_echo(socket)));
    }
    if let Some(addr) = tcp {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("echo tcp {}", listener.local_addr()?);
        tasks.push(tokio::spawn(probe::tcp_echo(listener)));
    }
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}
