//! The swarm's resolved configuration and how it reaches the hub's admin API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_transport::profile::TransportProfile;

/// What a swarm run does.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Simulated agents.
    pub agents: usize,
    /// UDP sockets (client endpoints) shared by the agents.
    pub sockets: usize,
    /// How long to hold the agents checked in once all are online.
    pub hold: Duration,
    /// Where identities live (`agents/NNNNNN/`), so a later run can reuse them.
    pub data_dir: PathBuf,
    /// Reuse the identities already enrolled in `data_dir` (else it must hold none).
    pub reuse: bool,
    /// Agents summoned (an evenly spread sample), one at a time.
    pub summons: usize,
    /// Endpoint creations and enrolments in flight at once.
    pub enrol_concurrency: usize,
    /// Agents started and still waiting for their first session, at most.
    pub start_concurrency: usize,
    /// Longest wait for every agent to be online before holding anyway.
    pub online_timeout: Duration,
    /// The agents' QUIC transport profile.
    pub transport: TransportProfile,
    /// Whether the agents take stacks (a stand-in that reports every state healthy, no engine).
    pub stacks: outpost_agent::Stacks,
    /// Endpoint names are this prefix and the agent's index.
    pub name_prefix: String,
    /// The hub's admin API.
    pub hub: HubAccess,
}

/// The hub's admin API: base URL, bearer token and the CA its certificate chains to.
#[derive(Clone)]
pub struct HubAccess {
    /// `https://host:port`.
    pub api: String,
    /// Admin bearer token.
    pub token: String,
    /// The hub CA, PEM.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for HubAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubAccess")
            .field("api", &self.api)
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

impl HubAccess {
    /// Read `api.url`, `admin.token` and `ca.pem` from a hub's data directory (on the hub's machine).
    pub fn from_hub_dir(dir: &Path) -> std::io::Result<Self> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        Ok(Self {
            api: read("api.url")?.trim().to_owned(),
            token: read("admin.token")?.trim().to_owned(),
            ca_pem: std::fs::read(dir.join("ca.pem"))?,
        })
    }
}
