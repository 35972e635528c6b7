//! The demo's run: hub, optional emulated link, in-process agent, admin certificate, instructions.
//!
//! `--link PROFILE` puts the device behind the userspace link emulator (an `outpost-netem` relay
//! in the same process), so a newcomer feels a satellite or 2G link in one command. The relay's
//! address is the first one the hub advertises, so the device keeps dialling through it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use outpost_agent::docker_host::DockerHost;
use outpost_agent::{run as run_agent, AgentConfig};
use outpost_certs::ClientRole;
use outpost_netem::{Profile, Relay, RelayHandle};
use outpost_protocol::token::JoinToken;
use outpost_protocol::{EndpointId, Secret};
use outpost_transport::profile::{self, TransportProfile};
use tracing::warn;

use outpost_hub::access::Principal;
use outpost_hub::config::HubConfig;
use outpost_hub::context::HubContext;
use outpost_hub::server;
use outpost_hub::store::{admin_creds, endpoints, unix_now, EndpointKind, NewEndpoint};

/// What `demo` needs.
#[derive(Debug, Clone)]
pub(crate) struct DemoConfig {
    /// Hub settings (data dir, listeners).
    pub hub: HubConfig,
    /// The engine the demo device serves.
    pub docker: DockerHost,
    /// Put the device behind an emulated link.
    pub link: Option<DemoLink>,
}

/// An emulated link between the demo device and its hub.
#[derive(Debug, Clone)]
pub(crate) struct DemoLink {
    /// The link's profile (`outpost-netem profiles` lists them).
    pub profile: Profile,
    /// Where the relay listens; the device dials this.
    pub listen: SocketAddr,
}

impl DemoLink {
    fn round_trip(&self) -> Duration {
        self.profile.up.delay.base + self.profile.down.delay.base
    }

    /// The transport profile a device on this link measures its way to (`--transport auto`),
    /// from the start: the demo shows the link, not the first connection's guess.
    fn transport(&self) -> TransportProfile {
        outpost_agent::transport_choice::fitting(self.round_trip())
    }
}

/// Run the demo until ctrl-c.
pub(crate) async fn run(
    config: DemoConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    check_engine(&config.docker).await?;
    let dir = config.hub.data_dir.clone();
    let mut hub_config = config.hub.clone();
    if let Some(link) = &config.link {
        // The relay first, then the hub's own address as a fallback for a later run without a
        // link (unless that is an ephemeral port, which a later run would not reuse).
        hub_config.public_addrs = vec![link.listen.to_string()];
        if hub_config.agent_listen.port() != 0 {
            hub_config
                .public_addrs
                .push(hub_config.agent_listen.to_string());
        }
    }
    let hub = server::start(hub_config).await?;
    let relay = match &config.link {
        Some(link) => Some(start_relay(link, hub.agent_addr).await?),
        None => None,
    };
    let ctx = hub.ctx.clone();
    let agent_dir = dir.join("device");
    let edge_key = if agent_dir.join("enrollment.json").exists() {
        None
    } else {
        Some(demo_endpoint(&ctx).await?)
    };
    let agent = AgentConfig {
        data_dir: agent_dir.clone(),
        edge_key,
        edge_id: None,
        transport: config
            .link
            .as_ref()
            .map_or(profile::LAN, DemoLink::transport),
        choose_transport: false,
        docker: config.docker.clone(),
        standby_after: Duration::from_secs(60),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(5),
        stable_after: Duration::from_secs(60),
        registry_listen: None,
        metrics_listen: None,
        tcp: outpost_agent::tunnel::TcpRoute::default(),
    };
    let mut agent_task = tokio::spawn(async move {
        if let Err(e) = run_agent(agent).await {
            warn!("demo agent stopped: {e}");
        }
    });
    let deadline = enrol_deadline(config.link.as_ref());
    let id = tokio::select! {
        id = wait_for_device(&agent_dir, deadline) => id?,
        _ = &mut agent_task => anyhow::bail!("the demo agent stopped before it enrolled; see the log above"),
    };
    // Enrolment is done; print nothing until the device's session is up, so the first paste works.
    for _ in 0..200 {
        if ctx.registry.get(id).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let certs = dir.join("admin-cert");
    write_admin_cert(&ctx, &certs).await?;
    let certs = std::fs::canonicalize(&certs)?;
    let host = format!(
        "tcp://127.0.0.1:{}/api/endpoints/{id}/docker",
        hub.api_addr.port()
    );
    println!(
        "Outpost demo: a hub on udp {} / https {}, and one device (this machine's Docker at {}).",
        hub.agent_addr, hub.api_addr, config.docker
    );
    println!("Paste into another shell to drive the device through hub → QUIC → agent:\n");
    println!(
        "  export DOCKER_HOST={host} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}",
        certs.display()
    );
    println!("  docker ps\n");
    if let Some(link) = &config.link {
        println!(
            "The device is behind an emulated {} link ({}), relayed at {}.",
            link.profile.name, link.profile.description, link.listen
        );
    }
    println!("Or as a docker context:  docker context create outpost-demo --docker 'host={host},ca={c}/ca.pem,cert={c}/cert.pem,key={c}/key.pem'", c = certs.display());
    println!(
        "Endpoints:               outpost-hub endpoint list --data-dir {}",
        dir.display()
    );
    println!("\nCtrl-C stops the demo.");
    shutdown.await;
    agent_task.abort();
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    hub.shutdown().await;
    Ok(())
}

async fn start_relay(link: &DemoLink, hub: SocketAddr) -> Result<RelayHandle> {
    let seed = rand::random();
    Relay::bind(link.listen, hub, link.profile.clone(), seed)
        .await
        .with_context(|| format!("cannot start the emulated link on {}", link.listen))
}

/// Create the demo endpoint and return its join token.
async fn demo_endpoint(ctx: &HubContext) -> Result<JoinToken> {
    let secret = Secret::generate();
    let new = NewEndpoint {
        name: "demo-device".into(),
        kind: EndpointKind::Device,
        preassigned: None,
        secret_hash: secret.hash(),
    };
    let record = ctx
        .store
        .call(move |c| endpoints::create(c, &new, unix_now()))
        .await?;
    Ok(JoinToken {
        hub_addrs: ctx.hubs.addrs(),
        ca_fingerprint: ctx.pki.ca_fingerprint().0,
        endpoint: record.id,
        secret,
    })
}

/// How long the demo waits for its device to enrol: 10 s on a clean link covers key generation and
/// the exchange; each of the ~20 round trips of the QUIC handshake, enrolment and the first session
/// adds the link's round trip; and every one of the four flights that must all arrive (client and
/// server Initial, the request, the answer) is lost with the link's probability, so the expected
/// attempts grow as 1/(1 − loss)^4 — ×4.2 at 30 % loss, where enrolment was measured at ~24 s.
fn enrol_deadline(link: Option<&DemoLink>) -> Duration {
    const CLEAN_LINK: Duration = Duration::from_secs(10);
    const ROUND_TRIPS: u32 = 20;
    const FLIGHTS: i32 = 4;
    let Some(link) = link else {
        return CLEAN_LINK;
    };
    let loss = link
        .profile
        .up
        .loss
        .expected_loss()
        .max(link.profile.down.loss.expected_loss())
        .clamp(0.0, 0.9);
    (CLEAN_LINK + link.round_trip() * ROUND_TRIPS).div_f64((1.0 - loss).powi(FLIGHTS))
}

/// Wait until the in-process agent has enrolled; returns its endpoint.
async fn wait_for_device(agent_dir: &Path, deadline: Duration) -> Result<EndpointId> {
    let path = agent_dir.join("enrollment.json");
    let started = tokio::time::Instant::now();
    while started.elapsed() < deadline {
        if let Ok(bytes) = std::fs::read(&path) {
            let enrollment: serde_json::Value = serde_json::from_slice(&bytes)?;
            return Ok(EndpointId(
                enrollment["endpoint"]
                    .as_u64()
                    .context("enrollment.json without endpoint")?,
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "the demo agent did not enrol within {} s; see the log above",
        deadline.as_secs()
    )
}

/// Without an engine the demo would start and the pasted `docker ps` would fail: say so first.
async fn check_engine(docker: &DockerHost) -> Result<()> {
    docker.connect().await.map(drop).with_context(|| {
        format!(
            "no Docker engine answers at {docker}: start one (as root, scripts/docker-setup.sh \
             installs and starts it) or point the demo at yours with --docker-host \
             (or DOCKER_HOST)"
        )
    })
}

async fn write_admin_cert(ctx: &HubContext, dir: &PathBuf) -> Result<()> {
    if dir.join("key.pem").exists() {
        return Ok(());
    }
    let (cert, key) = ctx.pki.issue_client_cert_with_key(
        &ClientRole::Admin("demo".into()),
        Duration::from_secs(365 * 24 * 3600),
    )?;
    let serial = cert.serial.to_string();
    let who = Principal {
        name: "demo".into(),
        ..Principal::bootstrap()
    };
    ctx.store
        .call(move |c| admin_creds::record_admin_cert(c, &serial, &who, unix_now()))
        .await?;
    std::fs::create_dir_all(dir)?;
    outpost_certs::write_public_file(&dir.join("ca.pem"), ctx.pki.ca_cert_pem().as_bytes())?;
    outpost_certs::write_public_file(&dir.join("cert.pem"), cert.pem().as_bytes())?;
    outpost_certs::write_private_file(&dir.join("key.pem"), key.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_with(loss: f64, one_way: Duration) -> DemoLink {
        let mut profile = Profile::transparent();
        for dir in [&mut profile.up, &mut profile.down] {
            dir.loss.random = loss;
            dir.delay.base = one_way;
        }
        DemoLink {
            profile,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    #[test]
    fn the_enrol_wait_grows_with_the_links_round_trip_and_loss() {
        assert_eq!(enrol_deadline(None), Duration::from_secs(10));
        let clean = enrol_deadline(Some(&link_with(0.0, Duration::ZERO)));
        assert_eq!(clean, Duration::from_secs(10));
        let geo = enrol_deadline(Some(&link_with(0.01, Duration::from_millis(300))));
        assert!(
            geo > Duration::from_secs(22) && geo < Duration::from_secs(25),
            "{geo:?}"
        );
        // Enrolment over a 30 %-loss link was measured at ~24 s; the old fixed 10 s gave up.
        let lossy = enrol_deadline(Some(&link_with(0.3, Duration::from_millis(20))));
        assert!(lossy > Duration::from_secs(40), "{lossy:?}");
    }
}
