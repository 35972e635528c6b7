//! The hubs that share one store (`/api/hubs`), and the client's call for it.
//!
//! Several hubs on one PostgreSQL database serve one fleet; each registers when it starts and
//! writes a heartbeat while it runs. A hub that stops, or is silent for longer than the bound,
//! loses its devices: they show offline until they check in to another hub.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{ApiClient, ApiError};

/// One hub, as `GET /api/hubs` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubView {
    /// Its name (`serve --hub-name`, or generated on its first start).
    pub name: String,
    /// `alive`, `silent` (no heartbeat within the bound) or `stopped` (stopped cleanly).
    pub health: String,
    /// Whether this is the hub that answered.
    pub this_hub: bool,
    /// The addresses agents dial to reach it.
    pub agent_addrs: Vec<String>,
    /// Its admin API.
    pub api_url: String,
    /// Devices whose live session it holds.
    pub devices: u64,
    /// When it last started (Unix seconds).
    pub started_at: i64,
    /// Its last heartbeat (Unix seconds).
    pub heartbeat_at: i64,
    /// When it stopped cleanly, if it is not running.
    pub stopped_at: Option<i64>,
}

impl ApiClient {
    /// `GET /api/hubs`: every hub sharing the store, by name.
    pub async fn hubs(&self) -> Result<Vec<HubView>, ApiError> {
        self.call(Method::GET, "/api/hubs").await
    }
}
