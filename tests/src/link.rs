//! A device behind an emulated link: a hub, the netem relay in front of it acting as the device's
//! path (and NAT), and an agent that knows the hub only by the relay's address. Tests change the
//! link while Docker traffic flows (profile, outage, NAT rebinding) through [`RelayedDevice::link`].
//!
//! The relay runs on the test's tokio runtime, so these helpers are async and need the
//! multi-threaded runtime: the blocking harness calls run under `block_in_place`.

use std::time::Duration;

use outpost_netem::{Profile, Relay, RelayControl, RelayHandle};

use crate::docker::{DockerCli, DOCKER_SOCKET};
use crate::{Agent, AgentOptions, Hub};

/// How the device behind the relay is set up.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// The link between the device and the hub.
    pub profile: Profile,
    /// Seed of the link's randomness (loss, jitter).
    pub seed: u64,
    /// The agent's QUIC transport profile.
    pub transport: &'static str,
    /// Extra `serve` flags for the hub (after the test timing).
    pub hub_flags: Vec<String>,
    /// How long enrolment and the first session may take on this link.
    pub ready_within: Duration,
    /// Extra `endpoint create` arguments for the device (`--group G`).
    pub endpoint_args: Vec<String>,
    /// Run against the hub before the device is created (a group's policy, say).
    pub prepare: Option<fn(&Hub)>,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        Self {
            profile: Profile::transparent(),
            seed: 1,
            transport: "lan",
            hub_flags: Vec::new(),
            ready_within: Duration::from_secs(20),
            endpoint_args: Vec::new(),
            prepare: None,
        }
    }
}

/// A hub, a relay in front of it, and one enrolled agent behind the relay, in standby.
#[derive(Debug)]
pub struct RelayedDevice {
    /// The hub (its token and welcomes name the relay).
    pub hub: Hub,
    /// The relay; dropping it cuts the path.
    pub relay: RelayHandle,
    /// Run-time control of the link: profile, outage, rebind, counters.
    pub link: RelayControl,
    /// The device's endpoint id.
    pub id: u64,
    /// The docker CLI pointed at the device through the hub.
    pub docker: DockerCli,
    /// The agent process.
    pub agent: Agent,
}

impl RelayedDevice {
    /// Start it all; returns once the hub shows the device in standby.
    pub async fn start(name: &str, options: DeviceOptions) -> Self {
        let mut hub = tokio::task::spawn_blocking(Hub::start)
            .await
            .expect("hub start");
        let relay = Relay::bind(
            "127.0.0.1:0".parse().expect("loopback"),
            hub.agent_addr.parse().expect("hub agent address"),
            options.profile.clone(),
            options.seed,
        )
        .await
        .expect("bind the relay");
        let link = relay.control();
        let relay_addr = relay.local_addr().to_string();
        tokio::task::block_in_place(|| {
            // Devices reach this hub only through the relay: that is the address its tokens and
            // welcomes must give.
            let mut flags = vec!["--public-addr", relay_addr.as_str()];
            flags.extend(options.hub_flags.iter().map(String::as_str));
            hub.restart_with(&flags);
            if let Some(prepare) = options.prepare {
                prepare(&hub);
            }
            let endpoint_args: Vec<&str> =
                options.endpoint_args.iter().map(String::as_str).collect();
            let (id, key) = hub.create_endpoint(name, &endpoint_args);
            let dir = hub.data_dir.parent().expect("tmp").join(name);
            let agent_options = AgentOptions {
                netns: None,
                transport: options.transport,
            };
            let socket = format!("unix://{DOCKER_SOCKET}");
            let agent = Agent::start_with(
                &dir,
                &agent_options,
                &[("EDGE_KEY", &key), ("DOCKER_HOST", &socket)],
            );
            hub.wait_status(id, "standby", options.ready_within);
            let docker = DockerCli::for_endpoint(&hub, id);
            Self {
                hub,
                relay,
                link,
                id,
                docker,
                agent,
            }
        })
    }
}
