//! Webhooks through the API (see `crate::alerts`): `POST /api/webhooks` subscribes a URL to
//! events and answers with its signing secret (shown once; the hub keeps it to sign with),
//! `GET /api/webhooks` lists them, `DELETE /api/webhooks/{id}` removes one with its pending
//! deliveries, `GET /api/webhooks/deliveries[?webhook=ID]` shows the newest attempts, and
//! `GET`/`PUT /api/webhooks/thresholds` read and set how long a group's devices are offline
//! before `offline` is raised. Bad input is a 400 that names the problem.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{
    DeliveryQuery, NewThreshold, NewWebhook, Threshold, Webhook, WebhookCreated, WebhookDelivery,
    WebhookRemoved,
};
use tracing::info;

use super::ApiError;
use crate::alerts::{EVENT_NAMES, THRESHOLD_RANGE};
use crate::context::HubContext;
use crate::store::webhooks::{self, DeliveryRecord, WebhookRecord};
use crate::store::{unix_now, Label};

/// Deliveries one `GET /api/webhooks/deliveries` shows.
const DELIVERIES_SHOWN: usize = 200;

/// Longest webhook URL accepted.
const MAX_URL: usize = 2_048;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

pub(super) async fn add(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<NewWebhook>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    let url = parse_url(&request.url)?;
    let events = parse_events(&request.events)?;
    let secret: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stored_secret = secret.clone();
    let record = ctx
        .store
        .call(move |c| webhooks::add(c, &url, &events, &stored_secret, unix_now()))
        .await?;
    info!(webhook = record.id, url = %record.url, events = ?record.events, "webhook added");
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            webhook: view(record),
            secret,
        }),
    ))
}

pub(super) async fn list(
    State(ctx): State<Arc<HubContext>>,
) -> Result<Json<Vec<Webhook>>, ApiError> {
    let records = ctx.store.read(webhooks::list).await?;
    Ok(Json(records.into_iter().map(view).collect()))
}

pub(super) async fn remove(
    State(ctx): State<Arc<HubContext>>,
    Path(id): Path<String>,
) -> Result<Json<WebhookRemoved>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| bad(format!("webhook id {id:?} is not a number")))?;
    if !ctx.store.call(move |c| webhooks::remove(c, id)).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no webhook {id}"),
        ));
    }
    info!(webhook = id, "webhook removed");
    Ok(Json(WebhookRemoved { removed: id }))
}

pub(super) async fn deliveries(
    State(ctx): State<Arc<HubContext>>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Vec<WebhookDelivery>>, ApiError> {
    let records = ctx
        .store
        .read(move |c| webhooks::deliveries(c, query.webhook, DELIVERIES_SHOWN))
        .await?;
    Ok(Json(records.into_iter().map(delivery).collect()))
}

pub(super) async fn thresholds(
    State(ctx): State<Arc<HubContext>>,
) -> Result<Json<Vec<Threshold>>, ApiError> {
    let rows = ctx.store.read(webhooks::thresholds).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(group, after)| threshold(group, after))
            .collect(),
    ))
}

pub(super) async fn set_threshold(
    State(ctx): State<Arc<HubContext>>,
    Json(request): Json<NewThreshold>,
) -> Result<Json<Threshold>, ApiError> {
    let group = match request.group.as_deref() {
        Some(name) => name
            .parse::<Label>()
            .map_err(|e| bad(format!("group {name:?}: {e}")))?
            .to_string(),
        None => String::new(),
    };
    let after = parse_threshold(&request.after)?;
    let stored = group.clone();
    ctx.store
        .call(move |c| webhooks::set_threshold(c, &stored, after))
        .await?;
    info!(group = %group, ?after, "offline alert threshold set");
    Ok(Json(threshold(group, after)))
}

/// A webhook URL: absolute `http://` or `https://` with a host and no credentials.
fn parse_url(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.len() > MAX_URL {
        return Err(bad(format!(
            "the webhook URL is longer than {MAX_URL} bytes"
        )));
    }
    let url = reqwest::Url::parse(text)
        .map_err(|e| bad(format!("the webhook URL {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the webhook URL {text:?} is not http(s): its scheme is {:?}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("the webhook URL {text:?} has no host")));
    }
    // The URL is listed and logged; the signature, not a password in it, authenticates the hub.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "the webhook URL carries credentials (user:password@): leave them out, the \
             receiver checks X-Outpost-Signature instead",
        ));
    }
    Ok(url.to_string())
}

/// Event names: at least one, each known, duplicates folded.
fn parse_events(names: &[String]) -> Result<Vec<String>, ApiError> {
    if names.is_empty() {
        return Err(bad(format!(
            "no events given: choose from {}",
            EVENT_NAMES.join(", ")
        )));
    }
    let mut events: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim();
        if !EVENT_NAMES.contains(&name) {
            return Err(bad(format!(
                "unknown event {name:?}: choose from {}",
                EVENT_NAMES.join(", ")
            )));
        }
        if !events.iter().any(|e| e == name) {
            events.push(name.to_owned());
        }
    }
    Ok(events)
}

/// A threshold such as `30s` or `10m`, within [`THRESHOLD_RANGE`].
fn parse_threshold(text: &str) -> Result<Duration, ApiError> {
    let after = humantime::parse_duration(text.trim()).map_err(|e| {
        bad(format!(
            "threshold {text:?} is not a duration such as 30s or 10m: {e}"
        ))
    })?;
    let (min, max) = THRESHOLD_RANGE;
    if after < min || after > max {
        return Err(bad(format!(
            "threshold {text:?} is out of range: from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(after)
}

fn view(record: WebhookRecord) -> Webhook {
    Webhook {
        id: record.id,
        url: record.url,
        events: record.events,
        created_at: record.created_at,
    }
}

fn threshold(group: String, after: Duration) -> Threshold {
    Threshold {
        group: (!group.is_empty()).then_some(group),
        after_secs: after.as_secs(),
    }
}

fn delivery(record: DeliveryRecord) -> WebhookDelivery {
    let (state, done_at) = match (record.delivered_at, record.gave_up_at) {
        (Some(at), _) => ("delivered", Some(at)),
        (None, Some(at)) => ("failed", Some(at)),
        (None, None) => ("pending", None),
    };
    WebhookDelivery {
        id: record.id,
        webhook: record.webhook_id,
        event: record.event,
        body: serde_json::from_str(&record.body).unwrap_or(serde_json::Value::Null),
        state: state.to_owned(),
        attempts: record.attempts,
        next_attempt_ms: record.next_attempt_ms,
        last_status: record.last_status,
        last_error: record.last_error,
        created_at: record.created_at,
        done_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        let e = result.unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        e.message
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert_eq!(
            parse_url(" https://alerts.example/hook ").unwrap(),
            "https://alerts.example/hook"
        );
        assert!(parse_url("http://127.0.0.1:9/x").is_ok());
        assert!(message(parse_url("ftp://x/y")).contains("not http(s)"));
        assert!(message(parse_url("alerts.example/hook")).contains("not a URL"));
        assert!(message(parse_url("https://u:p@alerts.example/")).contains("credentials"));
        assert!(
            message(parse_url(&format!("https://x/{}", "a".repeat(MAX_URL)))).contains("longer")
        );
    }

    #[test]
    fn events_must_be_known_and_at_least_one() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_events(&names(&["offline", "online", "offline"])).unwrap(),
            names(&["offline", "online"])
        );
        assert!(message(parse_events(&[])).contains("no events"));
        assert!(message(parse_events(&names(&["offline", "reboot"]))).contains("\"reboot\""));
    }

    #[test]
    fn thresholds_are_durations_from_a_second_to_a_week() {
        assert_eq!(parse_threshold("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_threshold("10m").unwrap(), Duration::from_secs(600));
        assert!(message(parse_threshold("soon")).contains("not a duration"));
        assert!(message(parse_threshold("8days")).contains("out of range"));
        assert!(message(parse_threshold("0s")).contains("out of range"));
    }
}
