//! `outpost-hub hubs`: the hubs sharing this hub's store, with their health and the devices each
//! holds.

use anyhow::Result;

use super::admin::{asked, connect, text};
use super::ApiArgs;

/// List the hubs; `json` prints the API's answer.
pub async fn run(args: &ApiArgs, json: bool) -> Result<()> {
    let api = connect(args)?;
    let Some(hubs) = asked(&api, api.hubs(), json).await? else {
        return Ok(());
    };
    println!(
        "{:<20} {:<8} {:>8} {:>9}  AGENT ADDRESSES",
        "HUB", "HEALTH", "DEVICES", "HEARTBEAT"
    );
    let now = crate::store::unix_now();
    for hub in &hubs {
        let marker = if hub.this_hub { " (this hub)" } else { "" };
        println!(
            "{:<20} {:<8} {:>8} {:>8}s  {}{marker}",
            text(Some(&hub.name)),
            hub.health,
            hub.devices,
            (now - hub.heartbeat_at).max(0),
            text(Some(&hub.agent_addrs.join(", ")))
        );
    }
    Ok(())
}
