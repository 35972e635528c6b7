//! `GET /api/endpoints`: one page of the endpoint list, filtered and sorted in SQL.
//!
//! Query parameters (all optional, unknown ones refused): `page` (1-based, default 1), `per_page`
//! (1 to 1000, default 100), `search` (name substring, ASCII case ignored), `status` (`pending`,
//! `offline`, `online`, `standby`, `active`), `group`, `tag`, `kind` (`device` or `fleet`), `sort`
//! (`name`, `created`, `last_checkin`; default `created`) and `order` (`asc` or `desc`). The body
//! is `{"items": [...], "total": N}` and the `X-Total-Count` header carries the total too. A bad
//! value is a 400 whose message names the parameter and what it accepts.
//!
//! A scoped credential lists only the endpoints in its scope, and the total counts only those.
//!
//! Status is answered from the store's `connected` flag (approved and connected = online), which
//! the liveness flush keeps equal to the registry's view: set when a session goes live, cleared
//! when it departs or falls silent past the liveness bound (`stale_after`). Before an `online`,
//! `offline` or `standby` query the handler runs that flush (a few rows: only changes are written),
//! so the filter agrees with the rows' own status as of the request. Active (summoned) devices are
//! few and come from the session registry.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Extension;
use outpost_api::{ListQuery as ListParams, Page};
use tokio::time::Instant;

use super::page::{counted, Counted};
use super::view;
use super::ApiError;
use crate::access::{Principal, Scope};
use crate::context::HubContext;
use crate::liveness;
use crate::registry::Status;
use crate::store::list::{self, MAX_PER_PAGE};
use crate::store::{Label, ListQuery, Sort, SortKey, StatusFilter};

/// Rows per page when the client does not say.
const DEFAULT_PER_PAGE: u32 = 100;

/// Longest search text accepted.
const MAX_SEARCH: usize = 128;

/// An empty value (`?status=`, as an HTML form sends) counts as absent.
fn without_empty(params: ListParams) -> ListParams {
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    ListParams {
        page: given(params.page),
        per_page: given(params.per_page),
        search: given(params.search),
        status: given(params.status),
        group: given(params.group),
        tag: given(params.tag),
        kind: given(params.kind),
        sort: given(params.sort),
        order: given(params.order),
    }
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// A whole number parameter from 1 to `max`, `default` when absent; a 400 naming it otherwise.
pub(super) fn number(
    name: &str,
    text: Option<&str>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "{name} must be a whole number from 1 to {max}, got {text:?}"
        ))),
    }
}

fn choice<T: Copy>(name: &str, text: &str, options: &[(&str, T)]) -> Result<T, ApiError> {
    options
        .iter()
        .find(|(word, _)| *word == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
            bad(format!("unknown {name} {text:?}: use {}", words.join(", ")))
        })
}

/// The value of an optional parameter, `default` when it is absent.
fn pick<T: Copy>(
    name: &str,
    text: Option<&str>,
    default: T,
    options: &[(&str, T)],
) -> Result<T, ApiError> {
    text.map_or(Ok(default), |t| choice(name, t, options))
}

fn label(name: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    text.map(|t| {
        Label::from_str(&t)
            .map(|l| l.as_str().to_owned())
            .map_err(|e| bad(format!("{name}: {e}")))
    })
    .transpose()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusWord {
    Pending,
    Offline,
    Online,
    Standby,
    Active,
}

const STATUS_WORDS: &[(&str, StatusWord)] = &[
    ("pending", StatusWord::Pending),
    ("offline", StatusWord::Offline),
    ("online", StatusWord::Online),
    ("standby", StatusWord::Standby),
    ("active", StatusWord::Active),
];

fn status_filter(ctx: &HubContext, word: StatusWord) -> StatusFilter {
    let active = || {
        ctx.registry
            .ids_with_status(Instant::now(), ctx.stale_after(), &[Status::Active])
    };
    match word {
        StatusWord::Pending => StatusFilter::Pending,
        StatusWord::Offline => StatusFilter::Offline,
        StatusWord::Online => StatusFilter::Online { except: Vec::new() },
        StatusWord::Standby => StatusFilter::Online { except: active() },
        StatusWord::Active => StatusFilter::Among(active()),
    }
}

fn query(
    ctx: &HubContext,
    params: ListParams,
    scope: Option<Scope>,
) -> Result<ListQuery, ApiError> {
    let params = without_empty(params);
    let status = params
        .status
        .as_deref()
        .map(|s| choice("status", s, STATUS_WORDS))
        .transpose()?
        .map(|word| status_filter(ctx, word));
    let search = params.search;
    if search.as_ref().is_some_and(|s| s.len() > MAX_SEARCH) {
        return Err(bad(format!("search is at most {MAX_SEARCH} bytes")));
    }
    let key = pick(
        "sort",
        params.sort.as_deref(),
        SortKey::Created,
        &[
            ("name", SortKey::Name),
            ("created", SortKey::Created),
            ("last_checkin", SortKey::LastCheckin),
        ],
    )?;
    let descending = pick(
        "order",
        params.order.as_deref(),
        false,
        &[("asc", false), ("desc", true)],
    )?;
    Ok(ListQuery {
        page: number("page", params.page.as_deref(), 1, u32::MAX)?,
        per_page: number(
            "per_page",
            params.per_page.as_deref(),
            DEFAULT_PER_PAGE,
            MAX_PER_PAGE,
        )?,
        search,
        status,
        group: label("group", params.group)?,
        tag: label("tag", params.tag)?,
        fleets: pick(
            "kind",
            params.kind.as_deref(),
            false,
            &[("device", false), ("fleet", true)],
        )?,
        scope,
        sort: Sort { key, descending },
    })
}

/// Whether `status` reads the stored `connected` flags.
fn reads_connected(status: Option<&StatusFilter>) -> bool {
    matches!(
        status,
        Some(StatusFilter::Offline | StatusFilter::Online { .. })
    )
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Counted<Page>, ApiError> {
    let Query(params) = params.map_err(|e| bad(e.body_text()))?;
    let query = query(&ctx, params, principal.scope)?;
    if reads_connected(query.status.as_ref()) {
        liveness::flush_liveness(&ctx).await?;
    }
    let (records, total) = ctx.store.read(move |c| list::list(c, &query)).await?;
    let now = Instant::now();
    let stale = ctx.stale_after();
    let items = records
        .iter()
        .map(|r| {
            let live = ctx.registry.get(r.id).map(|s| s.view(now, stale));
            view::endpoint(r, live, &ctx.hubs)
        })
        .collect();
    Ok(counted(total, Page { items, total }))
}
