//! `GET /api/audit`: the audit trail, newest first, a page at a time, filtered by credential
//! (`who`), device (`endpoint`) and time (`since`, `until`: Unix milliseconds, `until` exclusive).
//! An unscoped admin's route: it names every credential and device.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use outpost_api::{AuditPage, AuditQuery, StackListQuery};

use super::id::parse_canonical;
use super::page::{counted, page_of, Counted};
use super::ApiError;
use crate::context::HubContext;
use crate::store::audit::{self, Filter};

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn given(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

fn millis(name: &str, text: Option<String>) -> Result<Option<i64>, ApiError> {
    given(text)
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| bad(format!("{name} is a time in Unix milliseconds, got {t:?}")))
        })
        .transpose()
}

/// The filter a query asks for; a 400 naming a bad parameter.
fn filter(query: AuditQuery) -> Result<Filter, ApiError> {
    let endpoint = given(query.endpoint)
        .map(|t| {
            parse_canonical(&t).ok_or_else(|| bad(format!("endpoint is an endpoint id, got {t:?}")))
        })
        .transpose()?;
    Ok(Filter {
        who: given(query.who),
        endpoint,
        since_ms: millis("since", query.since)?,
        until_ms: millis("until", query.until)?,
    })
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Counted<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| bad(e.body_text()))?;
    let (offset, per_page) = page_of(&StackListQuery {
        page: query.page.clone(),
        per_page: query.per_page.clone(),
    })?;
    let filter = filter(query)?;
    let (items, total) = ctx
        .store
        .read(move |c| audit::list(c, &filter, offset, per_page))
        .await?;
    Ok(counted(total, AuditPage { items, total }))
}
