//! `GET /api/hubs`: the hubs sharing this hub's store, with their health and the devices each
//! holds (`crate::hubs`).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use outpost_api::HubView;

use super::ApiError;
use crate::context::HubContext;
use crate::hubs::SILENT_AFTER;
use crate::store::unix_now;

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
) -> Result<Json<Vec<HubView>>, ApiError> {
    let hubs = crate::hubs::list(&ctx.store).await?;
    let now = unix_now();
    let silent_after = SILENT_AFTER.as_secs() as i64;
    Ok(Json(
        hubs.into_iter()
            .map(|hub| HubView {
                health: hub.health(now, silent_after).as_str().to_owned(),
                this_hub: hub.id == ctx.hubs.id,
                name: hub.name,
                agent_addrs: hub.agent_addrs,
                api_url: hub.api_url,
                devices: hub.devices,
                started_at: hub.started_at,
                heartbeat_at: hub.heartbeat_at,
                stopped_at: hub.stopped_at,
            })
            .collect(),
    ))
}
