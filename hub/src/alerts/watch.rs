//! The watch task: drains [`super::Alerts`]' inbox, runs the offline state machine, checks
//! certificate expiry hourly, and turns each alert into queued deliveries in one store call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use outpost_protocol::EndpointId;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::{info, warn};

use super::outages::{Change, Outages};
use super::{unix_ms, Event, CERT_WARNING, DEFAULT_OFFLINE_AFTER, MAX_PENDING_DELIVERIES};
use crate::context::HubContext;
use crate::store::webhooks;

/// How often certificate expiry is checked: expiry is weeks away when it matters.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(3_600);

/// The alert being queued: its name, the device it is about and its own fields (an object).
struct Alert {
    event: &'static str,
    endpoint: Option<EndpointId>,
    fields: Value,
}

/// Run the watch until the hub stops.
pub(crate) async fn run_watch(ctx: Arc<HubContext>) {
    let mut outages = Outages::default();
    restore(&ctx, &mut outages).await;
    let mut cert_check = tokio::time::interval(CERT_CHECK_EVERY);
    cert_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = outages
            .poll_timeout()
            .map(|ms| Instant::now() + Duration::from_millis((ms - unix_ms()).max(0) as u64));
        tokio::select! {
            () = ctx.alerts.watch.notified() => {}
            () = sleep_until(deadline) => {}
            _ = cert_check.tick() => check_certs(&ctx).await,
        }
        let (liveness, events) = ctx.alerts.take();
        feed_liveness(&ctx, &mut outages, liveness).await;
        outages.handle_timeout(unix_ms());
        while let Some(change) = outages.poll_change() {
            raise_change(&ctx, change).await;
        }
        for event in events {
            queue(&ctx, alert_of(event), None).await;
        }
    }
}

/// What a starting hub knows: the outages that raised `offline` (their `online` is owed), and
/// every other enrolled device as down from now until its session is seen. This runs before the
/// inbox is first read, so a session that came up meanwhile clears its device right after.
async fn restore(ctx: &HubContext, outages: &mut Outages) {
    match ctx.store.read(webhooks::alerted_outages).await {
        Ok(alerted) => {
            for (endpoint, since_ms) in alerted {
                outages.restore_alerted(endpoint, since_ms);
            }
        }
        Err(e) => warn!("alerts: outages that raised offline not read: {e}"),
    }
    let devices = ctx
        .store
        .read(|c| webhooks::enrolled_devices(c, DEFAULT_OFFLINE_AFTER))
        .await;
    match devices {
        Ok(devices) => {
            let now = unix_ms();
            for (endpoint, threshold) in devices {
                outages.handle_down(now, endpoint, threshold);
            }
        }
        Err(e) => warn!("alerts: devices not read; those that stay dark are not reported: {e}"),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Feed the flush's transitions: downs with their device's threshold (one store read for all).
async fn feed_liveness(
    ctx: &HubContext,
    outages: &mut Outages,
    liveness: HashMap<EndpointId, bool>,
) {
    if liveness.is_empty() {
        return;
    }
    let now = unix_ms();
    let down: Vec<EndpointId> = liveness
        .iter()
        .filter(|(_, connected)| !**connected)
        .map(|(id, _)| *id)
        .collect();
    let thresholds: HashMap<EndpointId, Duration> = if down.is_empty() {
        HashMap::new()
    } else {
        let read = ctx
            .store
            .read(move |c| webhooks::offline_thresholds(c, &down, DEFAULT_OFFLINE_AFTER))
            .await;
        read.unwrap_or_else(|e| {
            warn!("alerts: offline thresholds not read, using the default: {e}");
            Vec::new()
        })
        .into_iter()
        .collect()
    };
    for (id, connected) in liveness {
        if connected {
            outages.handle_up(now, id);
        } else {
            let threshold = thresholds
                .get(&id)
                .copied()
                .unwrap_or(DEFAULT_OFFLINE_AFTER);
            outages.handle_down(now, id, threshold);
        }
    }
}

async fn raise_change(ctx: &HubContext, change: Change) {
    let (endpoint, alert, outage) = match change {
        Change::Offline { endpoint, since_ms } => (
            endpoint,
            Alert {
                event: "offline",
                endpoint: Some(endpoint),
                fields: json!({ "offline_since": rfc3339_ms(since_ms) }),
            },
            Some(since_ms),
        ),
        Change::Online {
            endpoint,
            since_ms,
            back_ms,
        } => (
            endpoint,
            Alert {
                event: "online",
                endpoint: Some(endpoint),
                fields: json!({
                    "offline_since": rfc3339_ms(since_ms),
                    "offline_for_secs": (back_ms - since_ms) / 1000,
                }),
            },
            None,
        ),
    };
    queue(ctx, alert, Some((endpoint, outage))).await;
}

fn alert_of(event: Event) -> Alert {
    let (event, fields) = match event {
        Event::Rollout {
            rollout,
            stack,
            version,
            failed,
            reason,
        } => (
            "rollout",
            json!({
                "rollout": rollout,
                "stack": stack,
                "version": version,
                "state": if failed { "failed" } else { "paused" },
                "reason": reason,
            }),
        ),
        Event::Job { job } => ("job", json!({ "job": job, "state": "finished" })),
    };
    Alert {
        event,
        endpoint: None,
        fields,
    }
}

/// Check for device certificates expiring within [`CERT_WARNING`] that were not yet warned of.
async fn check_certs(ctx: &HubContext) {
    let before = crate::store::unix_now() + CERT_WARNING.as_secs() as i64;
    let expiring = match ctx
        .store
        .read(move |c| webhooks::expiring_certs(c, before))
        .await
    {
        Ok(expiring) => expiring,
        Err(e) => return warn!("alerts: certificate expiry not read: {e}"),
    };
    for (endpoint, not_after) in expiring {
        let alert = Alert {
            event: "cert-expiring",
            endpoint: Some(endpoint),
            fields: json!({ "not_after": rfc3339_ms(not_after * 1000) }),
        };
        if queue(ctx, alert, None).await > 0 {
            let warned = ctx
                .store
                .call(move |c| webhooks::cert_warned(c, endpoint, not_after))
                .await;
            if let Err(e) = warned {
                warn!("alerts: certificate warning not recorded: {e}");
            }
        }
    }
}

/// Queue `alert` for its webhooks (and record the outage change with it, in one transaction);
/// returns how many deliveries were queued. An alert about a device that no longer exists is
/// dropped.
async fn queue(ctx: &HubContext, alert: Alert, outage: Option<(EndpointId, Option<i64>)>) -> usize {
    let event = alert.event;
    let queued = ctx
        .store
        .call(move |c| {
            let mut body = Map::new();
            body.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
            body.insert("event".into(), event.into());
            body.insert("at".into(), rfc3339_ms(unix_ms()).into());
            if let Some(id) = alert.endpoint {
                let Some(name) = webhooks::endpoint_name(c, id)? else {
                    return Ok((0, 0));
                };
                body.insert("endpoint".into(), json!({ "id": id.0, "name": name }));
            }
            if let Value::Object(fields) = alert.fields {
                body.extend(fields);
            }
            if let Some((id, since_ms)) = outage {
                webhooks::set_outage(c, id, since_ms)?;
            }
            let body = Value::Object(body).to_string();
            webhooks::enqueue(c, event, &body, unix_ms(), MAX_PENDING_DELIVERIES)
        })
        .await;
    match queued {
        Ok((queued, refused)) => {
            if queued > 0 {
                info!(event, deliveries = queued, "alert raised");
                ctx.alerts.deliver.notify_one();
            }
            if refused > 0 {
                warn!(
                    event,
                    refused,
                    max = MAX_PENDING_DELIVERIES,
                    "alert deliveries refused: too many pending (a receiver down?)"
                );
            }
            queued
        }
        Err(e) => {
            warn!(event, "alert not queued: {e}");
            0
        }
    }
}

/// `ms` since the epoch as RFC 3339 (UTC).
fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
