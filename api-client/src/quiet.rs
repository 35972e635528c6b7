//! The `quiet` check-in policy by group (`/api/quiet`), and the client's calls for it.
//!
//! A device in a quiet group checks in minutes apart instead of every 25 s: its NAT binding may
//! expire in between, so a summon waits for its next check-in. The endpoint view says so
//! ([`crate::Endpoint::reachability`]).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{ApiClient, ApiError};

/// `PUT /api/quiet`: put a group on the quiet policy, or back on the default one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuiet {
    /// The group.
    pub group: String,
    /// Quiet (`true`) or the hub's adaptive interval (`false`).
    pub quiet: bool,
    /// The interval between check-ins, such as `5m` (quiet only; the hub's default, 50 minutes,
    /// if absent).
    #[serde(default)]
    pub interval: Option<String>,
}

/// A group on the quiet policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietGroup {
    /// The group.
    pub group: String,
    /// Seconds between check-ins; `None` in the answer to a `PUT` that ended the policy.
    pub interval_secs: Option<u64>,
}

impl ApiClient {
    /// `PUT /api/quiet`: set a group's policy. Connected devices take it at their next
    /// check-in.
    pub async fn set_quiet(&self, set: &SetQuiet) -> Result<QuietGroup, ApiError> {
        let path = "/api/quiet";
        self.send(path, self.request(Method::PUT, path).json(set))
            .await
    }

    /// `GET /api/quiet`: every group on the quiet policy.
    pub async fn quiet_groups(&self) -> Result<Vec<QuietGroup>, ApiError> {
        self.call(Method::GET, "/api/quiet").await
    }
}
