//! A stack as a device receives it: the hub reads and checks the Compose file once, at `stack
//! create`, and every device gets this normalised form — no YAML, no interpolation, no relative
//! paths left for the agent to resolve, so an agent cannot read a file differently from the hub
//! that accepted it, and the bundle it receives is small and bounded.
//!
//! What each field means is what Compose means by it; the agent turns a [`ServiceSpec`] into an
//! engine `ContainerCreate` with Compose's own labels, so `docker-compose ps` on the device (or
//! through the hub) sees the stack as the Compose project [`StackSpec::project`].
//!
//! - [`ServiceSpec::config_hash`] is what Compose calls `com.docker.compose.config-hash`: a
//!   service whose hash is unchanged from the running container keeps its container.
//! - [`StackSpec::digest`] names one version's content; [`DesiredState::digest`] names everything a
//!   device should run in 8 bytes, small enough for every check-in to carry the one applied.
//! - [`DesiredOrder`] (version 5) adds how each stack's drift is handled: re-applied (the
//!   default, and all a version-3 agent knows) or only reported (`--on-drift report`, for a
//!   device a technician works on by hand). Its digest covers the policy, so changing it alone
//!   reaches the device like a new version; with nothing report-only it is the state's digest,
//!   so agents of either version name the same digest for the same assignment.
//!
//! Limits: a bundle travels in one control frame ([`MAX_CONTROL_FRAME`]), so the hub refuses a
//! stack whose encoding passes [`MAX_STACK_BYTES`], and [`StackSpec::check`] holds the structural
//! rules (names the engine accepts, start order) that both sides rely on.
//!
//! [`MAX_CONTROL_FRAME`]: crate::wire::MAX_CONTROL_FRAME

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::wire;

/// Most encoded bytes of one stack version: an eighth of a control frame, so a device's whole
/// desired state ([`MAX_STACKS_PER_DEVICE`] stacks) fits one frame. A Compose file of a dozen
/// services is ~2–5 KB encoded.
pub const MAX_STACK_BYTES: usize = wire::MAX_CONTROL_FRAME / 8;

/// Most services in one stack.
pub const MAX_SERVICES: usize = 64;

/// Most stacks one device runs at once: six at [`MAX_STACK_BYTES`] leave a quarter of the frame.
pub const MAX_STACKS_PER_DEVICE: usize = 6;

/// Longest reason in a status report (an engine's error message, cut by the agent).
pub const MAX_REASON: usize = 512;

/// Longest project or service name (Compose and the engine accept more; container names built
/// from them must stay readable in `docker ps`).
pub const MAX_NAME: usize = 63;

/// One version of a stack, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSpec {
    /// Compose project name: the stack's name (`[a-z0-9][a-z0-9_-]*`).
    pub project: String,
    /// The stack's version (1, 2, …), immutable once created.
    pub version: u32,
    /// Services in start order: each after every service it depends on.
    pub services: Vec<ServiceSpec>,
    /// Named volumes the services mount, by their Compose name (the engine's name is
    /// `{project}_{name}`, as Compose names them).
    pub volumes: Vec<String>,
}

/// One service, with everything Compose would pass to the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Service name (`[a-zA-Z0-9][a-zA-Z0-9._-]*`).
    pub name: String,
    /// Image reference as written (`nginx:1.27`, `registry.example/pos@sha256:…`).
    pub image: String,
    /// Replaces the image's command (`Cmd`); `None` keeps the image's.
    pub command: Option<Vec<String>>,
    /// Replaces the image's entrypoint; `None` keeps the image's, `Some([])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// Environment, `env_file` entries first and `environment` over them, sorted by name.
    pub environment: Vec<(String, String)>,
    /// Published ports, one entry per port (ranges expanded).
    pub ports: Vec<PortBinding>,
    /// Volumes and bind mounts.
    pub mounts: Vec<Mount>,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// The service's healthcheck; `None` keeps the image's.
    pub healthcheck: Option<Healthcheck>,
    /// The service's own labels, sorted by key (Compose's labels are the agent's to add).
    pub labels: Vec<(String, String)>,
    /// Services that start before this one.
    pub depends_on: Vec<String>,
    /// `user`, as written (`1000`, `1000:1000`, `app`).
    pub user: Option<String>,
    /// `working_dir`.
    pub working_dir: Option<String>,
    /// Device mappings.
    pub devices: Vec<DeviceMapping>,
    /// `privileged`.
    pub privileged: bool,
    /// Log driver and its options; `None` keeps the engine's default.
    pub logging: Option<Logging>,
}

/// A published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host address to bind (`None`: every address).
    pub host_ip: Option<String>,
    /// Host port (`None`: the engine picks one).
    pub host_port: Option<u16>,
    /// Port inside the container.
    pub container_port: u16,
    /// Transport protocol.
    pub protocol: PortProtocol,
}

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortProtocol {
    /// TCP (Compose's default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl PortProtocol {
    /// The engine's spelling (`80/tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// A volume or bind mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// Absolute path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The source of a [`Mount`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A named volume of the stack, by its Compose name (in [`StackSpec::volumes`]).
    Volume(String),
    /// An anonymous volume (a target only).
    Anonymous,
    /// An absolute host path.
    Bind(String),
}

/// Compose's `restart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// `no` (Compose's default).
    No,
    /// `always`.
    Always,
    /// `on-failure[:N]`; 0 retries means no limit.
    OnFailure {
        /// Most restarts (`N`).
        max_retries: u32,
    },
    /// `unless-stopped`.
    UnlessStopped,
}

/// Compose's `healthcheck`, in the engine's units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// The engine's form: `["CMD", …]`, `["CMD-SHELL", "…"]`, or `["NONE"]` (disabled).
    pub test: Vec<String>,
    /// Time between checks, in milliseconds (`None`: the engine's default).
    pub interval_ms: Option<u64>,
    /// Time a check may take, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Grace period after start, in milliseconds.
    pub start_period_ms: Option<u64>,
    /// Consecutive failures before unhealthy.
    pub retries: Option<u32>,
}

/// A device mapping (`/dev/ttyUSB0:/dev/ttyUSB0:rwm`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    /// Path on the host.
    pub host: String,
    /// Path in the container.
    pub container: String,
    /// cgroup permissions (`rwm`).
    pub permissions: String,
}

/// Compose's `logging`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    /// Log driver (`json-file`, `local`, `syslog`, …).
    pub driver: String,
    /// Driver options, sorted by key.
    pub options: Vec<(String, String)>,
}

/// Everything one device should run: the stack versions assigned to it, by project name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Stacks sorted by project name, at most [`MAX_STACKS_PER_DEVICE`].
    pub stacks: Vec<StackSpec>,
}

/// The short name of a [`DesiredState`]: the first 8 bytes of its SHA-256 (8 bytes on the wire,
/// where a varint of a random u64 would take 10). A device's check-in carries the one it has
/// applied; 2⁻⁶⁴ is no risk for one device's successive states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateDigest(pub [u8; 8]);

/// Where a device is with one stack of its desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Received, not started (another stack is being applied).
    Queued,
    /// Pulling images, bytes so far of those with a known size.
    Pulling {
        /// Bytes pulled.
        done: u64,
        /// Bytes to pull, as far as the engine has said.
        total: u64,
    },
    /// Images present; containers being replaced.
    Starting,
    /// Every container running; some healthcheck not yet passing (or the soak not over).
    Running,
    /// Every container running, and healthy where it has a healthcheck.
    Healthy,
    /// It could not be applied and nothing was changed (an image could not be pulled, the engine
    /// refused a first deploy), or a service of the applied version is unhealthy: whatever ran
    /// before runs on. The engine's reason.
    Failed {
        /// Why, at most [`MAX_REASON`] bytes.
        reason: String,
    },
    /// A container of the applied version died or was removed; the agent re-applies it.
    Drifted {
        /// What changed, at most [`MAX_REASON`] bytes.
        reason: String,
    },
    /// The new version's containers were being started and the engine refused a step, or the
    /// new version turned unhealthy before it was ever healthy: the previous version runs again
    /// (last in the enum: added after the first version-3 agents).
    RolledBack {
        /// The engine's reason, at most [`MAX_REASON`] bytes.
        reason: String,
    },
    /// Pulling is held back by the hub (the device's byte budget is spent, or it is outside its
    /// transfer window): not a failure; the agent tries again when the hub said to, and the
    /// pull goes on from the byte where it stopped (last in the enum: added with
    /// [`Features::DEFERRAL`](crate::job::Features::DEFERRAL); only a hub that defers sends
    /// the agent into it).
    Deferred {
        /// Why, as the hub put it, at most [`MAX_REASON`] bytes.
        reason: String,
        /// Bytes pulled so far.
        done: u64,
        /// Bytes to pull, as far as the engine has said.
        total: u64,
    },
}

/// A device's report on its desired state, sent when a phase changes (pull progress at most once
/// a second).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackReport {
    /// The desired state reported on.
    pub state: StateDigest,
    /// One entry per stack of that state.
    pub stacks: Vec<StackStatus>,
}

/// One stack in a [`StackReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackStatus {
    /// The stack's project name.
    pub project: String,
    /// The version.
    pub version: u32,
    /// Where the device is with it.
    pub phase: Phase,
}

/// Why a stack breaks the rules both sides rely on.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StackError {
    /// A project or service name the engine or Compose would not accept.
    #[error("{what} name {name:?} is not allowed (letters, digits, '-', '_', '.'; at most {MAX_NAME} bytes)")]
    BadName {
        /// `project` or `service`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// No service at all, or more than [`MAX_SERVICES`].
    #[error("a stack has 1 to {MAX_SERVICES} services, this one {0}")]
    ServiceCount(usize),
    /// Two services with one name.
    #[error("service {0:?} appears twice")]
    DuplicateService(String),
    /// `depends_on` names a service that is not earlier in the start order.
    #[error("service {service:?} depends on {dependency:?}, which is not defined before it")]
    StartOrder {
        /// The dependent service.
        service: String,
        /// What it depends on.
        dependency: String,
    },
    /// A mount names a volume the stack does not declare.
    #[error("service {service:?} mounts volume {volume:?}, which the stack does not declare")]
    UndeclaredVolume {
        /// The service.
        service: String,
        /// The volume.
        volume: String,
    },
    /// The encoding passes [`MAX_STACK_BYTES`].
    #[error("the stack encodes to {0} bytes, more than the {MAX_STACK_BYTES} allowed")]
    TooLarge(usize),
    /// More than [`MAX_STACKS_PER_DEVICE`] stacks for one device, or one project twice.
    #[error("a device runs at most {MAX_STACKS_PER_DEVICE} stacks, each once")]
    TooManyStacks,
    /// A [`DesiredOrder`]'s report-only list names a project its state does not run, names one
    /// twice, or is out of order.
    #[error("drift policy for {0:?}, which is not a stack of the state (or is named twice)")]
    DriftPolicy(String),
}

impl StackSpec {
    /// Check the structural rules: names, service count, start order, declared volumes, size.
    pub fn check(&self) -> Result<(), StackError> {
        check_name("project", &self.project, is_project_char)?;
        if self.services.is_empty() || self.services.len() > MAX_SERVICES {
            return Err(StackError::ServiceCount(self.services.len()));
        }
        for volume in &self.volumes {
            check_name("volume", volume, is_service_char)?;
        }
        for (index, service) in self.services.iter().enumerate() {
            check_name("service", &service.name, is_service_char)?;
            let earlier = &self.services[..index];
            if earlier.iter().any(|s| s.name == service.name) {
                return Err(StackError::DuplicateService(service.name.clone()));
            }
            self.check_service_refs(service, earlier)?;
        }
        let size = wire::encode(self).len();
        if size > MAX_STACK_BYTES {
            return Err(StackError::TooLarge(size));
        }
        Ok(())
    }

    fn check_service_refs(
        &self,
        service: &ServiceSpec,
        earlier: &[ServiceSpec],
    ) -> Result<(), StackError> {
        if let Some(dependency) = service
            .depends_on
            .iter()
            .find(|d| !earlier.iter().any(|s| &s.name == *d))
        {
            return Err(StackError::StartOrder {
                service: service.name.clone(),
                dependency: dependency.clone(),
            });
        }
        let undeclared = service.mounts.iter().find_map(|m| match &m.source {
            MountSource::Volume(v) if !self.volumes.contains(v) => Some(v),
            _ => None,
        });
        match undeclared {
            Some(volume) => Err(StackError::UndeclaredVolume {
                service: service.name.clone(),
                volume: volume.clone(),
            }),
            None => Ok(()),
        }
    }

    /// SHA-256 of the version's encoding: equal specs, equal digests.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(wire::encode(self)).into()
    }

    /// The engine's name of one of the stack's named volumes, as Compose names it.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}_{volume}", self.project)
    }
}

impl ServiceSpec {
    /// A service that runs `image` as the image says: no command, environment, ports, mounts or
    /// healthcheck of its own, restart `no` (Compose's defaults for a service with only `image`).
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            command: None,
            entrypoint: None,
            environment: vec![],
            ports: vec![],
            mounts: vec![],
            restart: RestartPolicy::No,
            healthcheck: None,
            labels: vec![],
            depends_on: vec![],
            user: None,
            working_dir: None,
            devices: vec![],
            privileged: false,
            logging: None,
        }
    }

    /// Compose's `com.docker.compose.config-hash` for this service: SHA-256 (hex) of its encoding.
    /// Any change to the service changes it; nothing outside the service does.
    pub fn config_hash(&self) -> String {
        hex(&Sha256::digest(wire::encode(self)))
    }
}

impl DesiredState {
    /// The state's short digest; the empty state (nothing assigned) has one too.
    pub fn digest(&self) -> StateDigest {
        let full = Sha256::digest(wire::encode(self));
        let mut first = [0u8; 8];
        first.copy_from_slice(&full[..8]);
        StateDigest(first)
    }

    /// Every stack's rules, at most [`MAX_STACKS_PER_DEVICE`] stacks, each project once: what
    /// makes the state fit one control frame.
    pub fn check(&self) -> Result<(), StackError> {
        let projects_unique = self
            .stacks
            .iter()
            .enumerate()
            .all(|(i, s)| self.stacks[..i].iter().all(|e| e.project != s.project));
        if self.stacks.len() > MAX_STACKS_PER_DEVICE || !projects_unique {
            return Err(StackError::TooManyStacks);
        }
        self.stacks.iter().try_for_each(StackSpec::check)
    }
}

/// What the device should run, and which of its stacks' drift it only reports (version 5: sent
/// as [`HubMessage::DesiredOrder`](crate::wire::HubMessage::DesiredOrder) to an agent that
/// announced [`Features::DRIFT_REPORT`](crate::job::Features::DRIFT_REPORT)).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredOrder {
    /// The stacks.
    pub state: DesiredState,
    /// Projects of `state` whose drift is reported and left alone, sorted; every other stack
    /// is re-applied when it drifts.
    pub report_drift: Vec<String>,
}

impl DesiredOrder {
    /// The order's short digest: the state's own when every stack is re-applied on drift (what a
    /// version-3 agent, which only knows re-applying, names for the same assignment).
    pub fn digest(&self) -> StateDigest {
        if self.report_drift.is_empty() {
            return self.state.digest();
        }
        let full = Sha256::digest(wire::encode(self));
        let mut first = [0u8; 8];
        first.copy_from_slice(&full[..8]);
        StateDigest(first)
    }

    /// The state's rules, and a report-only list of its own projects, sorted, each once.
    pub fn check(&self) -> Result<(), StackError> {
        self.state.check()?;
        for (i, project) in self.report_drift.iter().enumerate() {
            let known = self.state.stacks.iter().any(|s| &s.project == project);
            let in_order = i == 0 || self.report_drift[i - 1] < *project;
            if !known || !in_order {
                return Err(StackError::DriftPolicy(project.clone()));
            }
        }
        Ok(())
    }

    /// Whether `project`'s drift is only reported.
    pub fn reports_drift(&self, project: &str) -> bool {
        self.report_drift.iter().any(|p| p == project)
    }
}

impl From<DesiredState> for DesiredOrder {
    /// A version-3 order: every stack re-applied on drift.
    fn from(state: DesiredState) -> Self {
        Self {
            state,
            report_drift: vec![],
        }
    }
}

fn check_name(what: &'static str, name: &str, allowed: fn(char) -> bool) -> Result<(), StackError> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && name.len() <= MAX_NAME && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(StackError::BadName {
            what,
            name: name.to_owned(),
        })
    }
}

/// Compose project names: lowercase letters, digits, `-` and `_`.
fn is_project_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// Service and volume names: what the engine accepts in a container or volume name.
fn is_service_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
