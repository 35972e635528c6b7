//! The delivery task: sends the deliveries that are due, signed, and records each attempt.
//!
//! One task, a batch at a time (the attempts of a batch run concurrently, each bounded by
//! [`ATTEMPT_TIMEOUT`]), so a receiver that hangs costs one slot for ten seconds, and the store's
//! queue is the only place a delivery waits.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::sign::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::unix_ms;
use crate::context::HubContext;
use crate::store::unix_now;
use crate::store::webhooks::{self, Attempt, DueDelivery};

/// Deliveries sent at once.
const BATCH: usize = 32;
/// How long a receiver has to answer one POST.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// With nothing due, look at the queue again after this (a wake-up comes sooner when an alert
/// is queued).
const IDLE_WAIT: Duration = Duration::from_secs(60);
/// Done deliveries are kept this long for `webhook deliveries`.
const KEEP_DONE: Duration = Duration::from_secs(7 * 24 * 3_600);
/// How often done deliveries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Send due deliveries until the hub stops.
pub(crate) async fn run_deliveries(ctx: Arc<HubContext>) {
    let client = match client() {
        Ok(client) => client,
        Err(e) => return warn!("webhooks disabled: no HTTP client: {e}"),
    };
    let wake = ctx.alerts.deliver.clone();
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            prune(&ctx).await;
            next_prune += PRUNE_EVERY;
        }
        let now_ms = unix_ms();
        let due = ctx
            .store
            .read(move |c| webhooks::due(c, now_ms, BATCH))
            .await
            .unwrap_or_else(|e| {
                warn!("webhook deliveries not read: {e}");
                Vec::new()
            });
        let full = due.len() == BATCH;
        if !due.is_empty() {
            let attempts = send_all(&client, due).await;
            let recorded = ctx
                .store
                .call(move |c| webhooks::record(c, &attempts, unix_now()))
                .await;
            if let Err(e) = recorded {
                warn!("webhook attempts not recorded (they will be sent again): {e}");
            }
        }
        if full {
            continue;
        }
        let next = ctx.store.read(webhooks::next_due).await.ok().flatten();
        let wait = next.map_or(IDLE_WAIT, |ms| {
            Duration::from_millis((ms - unix_ms()).max(0) as u64).min(IDLE_WAIT)
        });
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The client for receivers: `https://` ones checked against the system's CA store, like the
/// mirror's upstreams.
fn client() -> Result<reqwest::Client, String> {
    let tls = crate::mirror::upstream::tls_config().map_err(|e| format!("TLS: {e}"))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(ATTEMPT_TIMEOUT)
        // A redirect is an answer the operator should fix, not follow with a signed body.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "outpost-hub/",
            env!("CARGO_PKG_VERSION"),
            " (webhooks)"
        ))
        .build()
        .map_err(|e| e.to_string())
}

async fn send_all(client: &reqwest::Client, due: Vec<DueDelivery>) -> Vec<(i64, Attempt)> {
    let mut set = JoinSet::new();
    for delivery in due {
        set.spawn(attempt(client.clone(), delivery));
    }
    let mut attempts = Vec::new();
    while let Some(done) = set.join_next().await {
        match done {
            Ok(attempt) => attempts.push(attempt),
            Err(e) => warn!("webhook attempt task failed: {e}"),
        }
    }
    attempts
}

/// POST one delivery and say how it went.
async fn attempt(client: reqwest::Client, delivery: DueDelivery) -> (i64, Attempt) {
    let timestamp = unix_now();
    let signature = sign::signature(
        delivery.secret.as_bytes(),
        timestamp,
        delivery.body.as_bytes(),
    );
    let sent = client
        .post(&delivery.url)
        .header(CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .body(delivery.body)
        .send()
        .await;
    let (status, error) = match sent {
        Ok(answer) if answer.status().is_success() => {
            let status = answer.status().as_u16();
            debug!(delivery = delivery.id, status, "webhook delivered");
            return (delivery.id, Attempt::Delivered { status });
        }
        Ok(answer) => {
            let status = answer.status();
            (
                Some(status.as_u16()),
                format!("the receiver answered {status}"),
            )
        }
        Err(e) => (None, describe(e)),
    };
    let failures = delivery.attempts.saturating_add(1);
    let age = Duration::from_secs((timestamp - delivery.created_at).max(0) as u64);
    if sign::give_up(age) {
        warn!(delivery = delivery.id, failures, %error, "webhook delivery given up");
        return (delivery.id, Attempt::GaveUp { status, error });
    }
    let delay = sign::retry_delay(failures);
    debug!(delivery = delivery.id, failures, ?delay, %error, "webhook delivery failed; will retry");
    let next_attempt_ms = unix_ms() + delay.as_millis() as i64;
    (
        delivery.id,
        Attempt::Retry {
            status,
            error,
            next_attempt_ms,
        },
    )
}

/// A transport error with its causes (reqwest's own message is often just "error sending
/// request"); the URL is left out, as it may carry credentials.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn prune(ctx: &HubContext) {
    let before = unix_now() - KEEP_DONE.as_secs() as i64;
    if let Err(e) = ctx.store.call(move |c| webhooks::prune(c, before)).await {
        warn!("old webhook deliveries not pruned: {e}");
    }
}
