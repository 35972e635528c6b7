//! The engine summary an agent sends before it returns to standby (and once after enrolment), so
//! the hub can show what runs on a device without summoning it.

use serde::{Deserialize, Serialize};

/// Most containers listed in one snapshot; counts stay exact beyond it.
pub const MAX_LISTED_CONTAINERS: usize = 500;

/// A point-in-time summary of a device's Docker engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// Seconds since the Unix epoch when it was taken.
    pub taken_at: i64,
    /// Engine version (`docker version`'s server version), or the error that prevented reading it.
    pub engine_version: String,
    /// Running containers.
    pub containers_running: u32,
    /// Containers not running.
    pub containers_stopped: u32,
    /// Images.
    pub images: u32,
    /// Volumes.
    pub volumes: u32,
    /// Networks.
    pub networks: u32,
    /// Up to [`MAX_LISTED_CONTAINERS`] containers.
    pub containers: Vec<ContainerSummary>,
    /// Set when the engine could not be read (the device is up, its Docker is not).
    pub error: Option<String>,
}

/// One container in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSummary {
    /// Short id.
    pub id: String,
    /// Names without the leading slash.
    pub names: Vec<String>,
    /// Image reference.
    pub image: String,
    /// `running`, `exited`, …
    pub state: String,
    /// Human status (`Up 3 hours`).
    pub status: String,
}
