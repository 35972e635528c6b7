//! The `quiet` check-in policy through the API (see `crate::session::quiet`): `GET /api/quiet`
//! lists the quiet groups, `PUT /api/quiet` puts a group on the policy (with an interval, 50
//! minutes unless named) or back on the default one. Devices take it at their next session.
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
    ctx.store
        .call(move |c| quiet::set_quiet(c, &stored, interval))
        .await?;
    info!(group = %group, ?interval, "quiet check-in policy set (devices take it at their next session)");
    Ok(Json(view(group, interval)))
}

fn view(group: String, interval: Option<Duration>) -> QuietGroup {
    QuietGroup {
        group,
        interval_secs: interval.map(|i| i.as_secs()),
    }
}
