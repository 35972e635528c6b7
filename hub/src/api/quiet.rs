//! The `quiet` check-in policy through the API (see `crate::session::quiet`): `GET /api/quiet`
//! lists the quiet groups, `PUT /api/quiet` puts a group on the policy (with an interval, 50
//! minutes unless named) or back on the default one. Connected devices take it at once; a
//! withdrawn policy ends at each device's next check-in.
//! Bad input is a 400 that names the problem.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{QuietGroup, SetQuiet};
use tracing::info;

use super::ApiError;
use crate::context::HubContext;
use crate::session::quiet::parse_interval;
use crate::store::{quiet, Label};

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
) -> Result<Json<Vec<QuietGroup>>, ApiError> {
    let rows = ctx.store.read(quiet::quiet_groups).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(group, interval)| view(group, Some(interval)))
            .collect(),
    ))
}

pub(super) async fn set(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<SetQuiet>,
) -> Result<Json<QuietGroup>, ApiError> {
    let group = request
        .group
        .parse::<Label>()
        .map_err(|e| bad(format!("group {:?}: {e}", request.group)))?
        .to_string();
    let interval = match (request.quiet, request.interval.as_deref()) {
        (true, text) => Some(parse_interval(text).map_err(|e| bad(e.to_string()))?),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(bad(
                "an interval is for a quiet group: leave it out with \"quiet\": false".into(),
            ))
        }
    };
    let stored = group.clone();
    let members = ctx
        .store
        .call(move |c| {
            quiet::set_quiet(c, &stored, interval)?;
            quiet::group_members(c, &stored)
        })
        .await?;
    // Connected devices take it at once (a withdrawn policy at their next check-in).
    let live: Vec<_> = members
        .into_iter()
        .filter_map(|id| ctx.registry.get(id))
        .collect();
    for session in &live {
        session.set_quiet(interval);
    }
    info!(group = %group, ?interval, connected = live.len(), "quiet check-in policy set");
    Ok(Json(view(group, interval)))
}

fn view(group: String, interval: Option<Duration>) -> QuietGroup {
    QuietGroup {
        group,
        interval_secs: interval.map(|i| i.as_secs()),
    }
}
