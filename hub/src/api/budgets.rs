//! Byte budgets through the API (see `crate::traffic`): `GET /api/budgets` lists them,
//! `PUT /api/budgets` sets one on the fleet, a group or a device, `DELETE /api/budgets` removes
//! one; transfer windows the same way under `/api/windows` (each change is sent to the live
//! agents at once); and a device's bytes this period, by class, for `GET /api/endpoints/{id}`. Fleet-wide
//! settings, so an unscoped admin's (`crate::access::need`). Bad input is a 400 naming it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{AppliedBudget, Budget, BudgetTarget, ClassBytes, PeriodBytes, Traffic, Window};
use outpost_protocol::window::TransferWindow;
use outpost_protocol::EndpointId;
use tracing::info;

use super::endpoints::not_found;
use super::{rfc3339_secs, ApiError};
use crate::context::HubContext;
use crate::registry::Control;
use crate::store::db::Db;
use crate::store::traffic::{self as stored, BudgetScope};
use crate::store::{endpoints, unix_now, Label, StoreError};

/// Past periods an endpoint's view shows: a year of months.
const HISTORY_PERIODS: u32 = 12;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// `scope` and `name` as a budget's scope: a group's name must be a valid group name, an
/// endpoint's an existing endpoint.
async fn scope_of(
    ctx: &HubContext,
    scope: &str,
    name: Option<&str>,
) -> Result<BudgetScope, ApiError> {
    match (scope, name) {
        ("fleet", None) => Ok(BudgetScope::Fleet),
        ("fleet", Some(_)) => Err(bad("a fleet budget takes no name")),
        ("group", Some(name)) => {
            let label: Label = name
                .parse()
                .map_err(|e| bad(format!("group {name:?}: {e}")))?;
            Ok(BudgetScope::Group(label.to_string()))
        }
        ("endpoint", Some(name)) => {
            let id = name
                .parse::<u64>()
                .map(EndpointId)
                .map_err(|_| bad(format!("endpoint {name:?}: not an endpoint id")))?;
            let found = ctx.store.call(move |c| endpoints::find(c, id)).await?;
            found
                .map(|_| BudgetScope::Endpoint(id))
                .ok_or_else(|| not_found(id))
        }
        ("group" | "endpoint", None) => Err(bad(format!("a {scope} budget needs a name"))),
        (other, _) => Err(bad(format!(
            "budget scope {other:?}: say fleet, group or endpoint"
        ))),
    }
}

fn budget(scope: BudgetScope, bytes: u64) -> Budget {
    let (scope, name) = match scope {
        BudgetScope::Fleet => ("fleet", None),
        BudgetScope::Group(name) => ("group", Some(name)),
        BudgetScope::Endpoint(id) => ("endpoint", Some(id.to_string())),
    };
    Budget {
        scope: scope.to_owned(),
        name,
        bytes,
    }
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
) -> Result<Json<Vec<Budget>>, ApiError> {
    let rows = ctx.store.read(stored::budgets).await?;
    Ok(Json(rows.into_iter().map(|(s, b)| budget(s, b)).collect()))
}

pub(super) async fn set(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<Budget>,
) -> Result<Json<Budget>, ApiError> {
    let scope = scope_of(&ctx, &request.scope, request.name.as_deref()).await?;
    let (stored_scope, bytes) = (scope.clone(), request.bytes);
    ctx.store
        .call(move |c| stored::set_budget(c, &stored_scope, bytes))
        .await?;
    info!(%scope, bytes, "byte budget set");
    Ok(Json(budget(scope, bytes)))
}

pub(super) async fn remove(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<BudgetTarget>,
) -> Result<Json<BudgetTarget>, ApiError> {
    let scope = remove_from(&ctx, &request, "budget", stored::remove_budget).await?;
    info!(%scope, "byte budget removed");
    Ok(Json(request))
}

pub(super) async fn list_windows(
    State(ctx): State<Arc<HubContext>>,
) -> Result<Json<Vec<Window>>, ApiError> {
    let rows = ctx.store.read(stored::windows).await?;
    Ok(Json(rows.into_iter().map(|(s, w)| window(s, w)).collect()))
}

pub(super) async fn set_window(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<Window>,
) -> Result<Json<Window>, ApiError> {
    let scope = scope_of(&ctx, &request.scope, request.name.as_deref()).await?;
    let transfer: TransferWindow = request.window.parse().map_err(|e| bad(format!("{e}")))?;
    let stored_scope = scope.clone();
    ctx.store
        .call(move |c| stored::set_window(c, &stored_scope, transfer))
        .await?;
    info!(%scope, window = %transfer, "transfer window set");
    tell_sessions(&ctx);
    Ok(Json(window(scope, transfer)))
}

pub(super) async fn remove_window(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<BudgetTarget>,
) -> Result<Json<BudgetTarget>, ApiError> {
    let scope = remove_from(&ctx, &request, "transfer window", stored::remove_window).await?;
    info!(%scope, "transfer window removed");
    tell_sessions(&ctx);
    Ok(Json(request))
}

/// Remove the budget or transfer window (`what`) `remove` keeps from the scope `request` names;
/// the scope, or a 404 when it had none.
async fn remove_from(
    ctx: &HubContext,
    request: &BudgetTarget,
    what: &str,
    remove: fn(&Db, &BudgetScope) -> Result<bool, StoreError>,
) -> Result<BudgetScope, ApiError> {
    let scope = scope_of(ctx, &request.scope, request.name.as_deref()).await?;
    let stored_scope = scope.clone();
    let removed = ctx.store.call(move |c| remove(c, &stored_scope)).await?;
    if !removed {
        let message = format!("{scope} has no {what}");
        return Err(ApiError::new(StatusCode::NOT_FOUND, message));
    }
    Ok(scope)
}

/// Every live agent that takes deferrals is sent its window again (an admin's rare change; its
/// driver reads the device's window from the store).
fn tell_sessions(ctx: &HubContext) {
    for session in ctx.registry.all() {
        if session.takes_deferrals() {
            let _ = session.control().push(Control::WindowChanged);
        }
    }
}

fn window(scope: BudgetScope, transfer: TransferWindow) -> Window {
    let Budget { scope, name, .. } = budget(scope, 0);
    Window {
        scope,
        name,
        window: transfer.to_string(),
    }
}

/// Endpoint `id`'s bytes this period by class, with its live session's since the last flush,
/// and the budget that applies.
pub(super) async fn traffic_of(ctx: &HubContext, id: EndpointId) -> Result<Traffic, ApiError> {
    let period = ctx.traffic.period();
    let classes = crate::traffic::this_period(ctx, id, ctx.registry.get(id)).await?;
    let start = period.start_of(unix_now());
    let (applied, history, transfer) = ctx
        .store
        .read(move |c| {
            let history = stored::history(c, id, start, HISTORY_PERIODS)?;
            Ok((
                stored::budget_for(c, id)?,
                history,
                stored::window_for(c, id)?,
            ))
        })
        .await?;
    let used = classes.iter().map(|(_, bytes)| bytes.total()).sum::<u64>();
    let deferred = applied
        .as_ref()
        .filter(|(_, bytes)| used.saturating_add(crate::traffic::BUDGET_CHUNK) > *bytes)
        .map(|_| "budget".to_owned());
    Ok(Traffic {
        period: period.to_string(),
        period_start: rfc3339_secs(start),
        used,
        budget: applied.map(|(scope, bytes)| AppliedBudget {
            bytes,
            set_on: scope.to_string(),
        }),
        deferred,
        window: transfer.map(|w| w.to_string()),
        classes: classes
            .into_iter()
            .map(|(class, bytes)| ClassBytes {
                class: class.as_str().to_owned(),
                up: bytes.up,
                down: bytes.down,
            })
            .collect(),
        history: history
            .into_iter()
            .map(|(start, used)| PeriodBytes {
                period_start: rfc3339_secs(start),
                used,
            })
            .collect(),
    })
}
