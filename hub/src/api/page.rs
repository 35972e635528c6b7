//! What the API's lists share: the page a `?page=&per_page=` query asks for, and an answer that
//! carries the list's total in `X-Total-Count`, so every list pages and counts the same way.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{HeaderName, StatusCode};
use axum::Json;
use outpost_api::StackListQuery;

use super::list::number;
use super::ApiError;

/// Stacks, rollouts, jobs, audit entries or a rollout's or job's devices per page unless asked.
const DEFAULT_PER_PAGE: u32 = 100;
/// Most of them per page.
const MAX_PER_PAGE: u32 = 1000;

/// The total count of a list, as the Docker-ecosystem APIs send it.
static X_TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

/// A list's answer: its body, and its total in `X-Total-Count`.
pub(super) type Counted<T> = ([(HeaderName, String); 1], Json<T>);

/// `body` with `total` in `X-Total-Count`.
pub(super) fn counted<T>(total: impl ToString, body: T) -> Counted<T> {
    ([(X_TOTAL_COUNT.clone(), total.to_string())], Json(body))
}

/// Offset and size of the page a query asks for; a 400 when the query does not parse.
pub(super) fn page_asked(
    query: Result<Query<StackListQuery>, QueryRejection>,
) -> Result<(u64, u32), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    page_of(&query)
}

/// Offset and size of the page `query` asks for (an empty parameter counts as absent).
pub(super) fn page_of(query: &StackListQuery) -> Result<(u64, u32), ApiError> {
    let given = |text: &Option<String>| text.clone().filter(|t| !t.is_empty());
    let page = number("page", given(&query.page).as_deref(), 1, u32::MAX)?;
    let per_page = number(
        "per_page",
        given(&query.per_page).as_deref(),
        DEFAULT_PER_PAGE,
        MAX_PER_PAGE,
    )?;
    Ok((u64::from(page - 1) * u64::from(per_page), per_page))
}
