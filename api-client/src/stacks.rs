//! Stack request and response bodies (`/api/stacks`).

use std::collections::BTreeMap;

use outpost_protocol::stack::StackSpec;
use serde::{Deserialize, Serialize};

/// `POST /api/stacks`: a Compose file to store as the stack's next version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStackVersion {
    /// The stack's name, which is the Compose project name on every device.
    pub name: String,
    /// The Compose file.
    pub compose: String,
    /// The stack's env file: variables for `${…}` in the Compose file (Compose's `--env-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    /// Every service `env_file` the Compose file names, by the path as written, with its content.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_files: BTreeMap<String, String>,
}

/// What `POST /api/stacks` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackVersionSaved {
    /// The stack.
    pub name: String,
    /// The version the file is (new, or the latest one when nothing changed).
    pub version: u32,
    /// False when the file compiles to exactly the latest version: nothing was stored.
    pub created: bool,
    /// SHA-256 (hex) of the version's content.
    pub digest: String,
    /// Its services, in start order.
    pub services: Vec<String>,
}

/// One stack in `GET /api/stacks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSummary {
    /// The stack's name.
    pub name: String,
    /// Its newest version.
    pub latest_version: u32,
    /// How many versions it has.
    pub versions: u32,
    /// When the stack was created (Unix seconds).
    pub created_at: i64,
    /// When its newest version was created (Unix seconds).
    pub updated_at: i64,
}

/// One page of `GET /api/stacks`, by name.
pub type StackPage = crate::Paged<StackSummary>;

/// One version in a stack's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackVersionInfo {
    /// The version.
    pub version: u32,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// SHA-256 (hex) of its content.
    pub digest: String,
}

/// `GET /api/stacks/{name}[?version=N]`: the stack's history and one version in full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackDetail {
    /// The stack's name.
    pub name: String,
    /// Every version, oldest first.
    pub versions: Vec<StackVersionInfo>,
    /// The version shown below (the newest unless one was asked for).
    pub version: u32,
    /// That version's Compose file as it was sent.
    pub compose: String,
    /// That version as devices receive it.
    pub spec: StackSpec,
}

/// `DELETE /api/stacks/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRemoved {
    /// The stack.
    pub name: String,
    /// How many versions went with it.
    pub versions: u32,
}

/// `GET /api/stacks` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackListQuery {
    /// 1-based page number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Rows per page, 1 to 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_page: Option<String>,
}

/// One stack a device should run, with its last reported phase (`endpoint show`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStack {
    /// The stack.
    pub stack: String,
    /// The version it should run.
    pub version: u32,
    /// Where it is with it: `queued` until it reports, then `pulling`, `starting`, `running`,
    /// `healthy`, `failed` or `drifted`.
    pub phase: String,
    /// Why, for `failed` and `drifted` (the engine's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes pulled and to pull, while `pulling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<[u64; 2]>,
    /// When it last reported (Unix seconds).
    pub reported_at: Option<i64>,
}

/// `POST /api/rollouts`: roll a stack version out to devices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The stack.
    pub stack: String,
    /// The version (the newest when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Devices in any of these groups…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// …or with any of these tags…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// …or these endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<u64>,
    /// Wave sizes, cumulative (`1%,10%,100%`, `1,100%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<String>,
    /// Failures that pause the rollout (`5%`, `0`, `3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<String>,
    /// How long a device must stay healthy to count as done (`2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    /// What a device does when the stack drifts: `reapply` (the default) or `report`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<String>,
}

/// A rollout's state and counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSummary {
    /// Its id.
    pub id: i64,
    /// The stack.
    pub stack: String,
    /// The version it rolls out.
    pub version: u32,
    /// `running`, `paused`, `completed` or `aborted`.
    pub state: String,
    /// Why it is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Waves started, of how many.
    pub wave: u32,
    /// Waves in its plan.
    pub waves: u32,
    /// The plan as given (`waves`, `max_failures`, `soak`, `on_drift`).
    pub plan: String,
    /// Targets by state (`waiting`, `queued`, `pulling`, `starting`, `running`, `soaking`,
    /// `healthy`, `failed`, `drifted`, `lost`), plus `offline` across them and `total`.
    pub counts: BTreeMap<String, u32>,
    /// When it started (Unix seconds).
    pub created_at: i64,
}

/// One page of `GET /api/rollouts`, newest first.
pub type RolloutPage = crate::Paged<RolloutSummary>;

/// One target in `GET /api/rollouts/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutTarget {
    /// The device.
    pub endpoint: u64,
    /// The wave it was assigned in.
    pub wave: Option<u32>,
    /// Its state (as in the counts).
    pub state: String,
    /// Bytes pulled and to pull, while pulling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<[u64; 2]>,
    /// Online now.
    pub online: bool,
    /// When its state began (Unix seconds).
    pub since: i64,
    /// The last reason it gave (a failure's engine message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/rollouts/{id}?page=&per_page=`: the summary and one page of targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutDetail {
    /// State and counts.
    #[serde(flatten)]
    pub summary: RolloutSummary,
    /// The page's targets, in rollout order.
    pub targets: Vec<RolloutTarget>,
}

/// `POST /api/rollouts/{id}/pause`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRollout {
    /// Why, for whoever looks next.
    #[serde(default)]
    pub note: String,
}
