//! Webhook request and response bodies (`/api/webhooks`), and the client's calls for them.
//!
//! A webhook receives the events it subscribes to (`offline`, `online`, `rollout`, `job`,
//! `cert-expiring`) as signed JSON POSTs; the hub keeps every delivery's attempts, and an offline
//! threshold per group decides when a device counts as offline.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::{ApiClient, ApiError};

/// `POST /api/webhooks`: subscribe a URL to events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWebhook {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// Event names: `offline`, `online`, `rollout`, `job`, `cert-expiring`.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A webhook (its secret is shown only when it is created).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id.
    pub id: i64,
    /// Where events are POSTed.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// When it was added (Unix seconds).
    pub created_at: i64,
}

/// The answer to `POST /api/webhooks`: the webhook and its signing secret, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookCreated {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The HMAC-SHA256 key of its `X-Outpost-Signature` header.
    pub secret: String,
}

/// The answer to `DELETE /api/webhooks/{id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRemoved {
    /// The webhook removed (its pending deliveries with it).
    pub removed: i64,
}

/// `GET /api/webhooks/deliveries` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryQuery {
    /// Only this webhook's deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<i64>,
}

/// One event sent (or being sent) to one webhook, newest first in a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The delivery's id.
    pub id: i64,
    /// The webhook.
    pub webhook: i64,
    /// The event's name.
    pub event: String,
    /// The body POSTed (its `id` names the event).
    pub body: serde_json::Value,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix milliseconds), while pending.
    pub next_attempt_ms: Option<i64>,
    /// The receiver's last HTTP status.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued (Unix seconds).
    pub created_at: i64,
    /// When it was delivered or given up (Unix seconds).
    pub done_at: Option<i64>,
}

/// `PUT /api/webhooks/thresholds`: how long a device is offline before `offline` is raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewThreshold {
    /// The group it applies to; none: the default for devices whose group has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A duration such as `30s`, `10m` or `2h` (1 s to 7 days).
    pub after: String,
}

/// A threshold as set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    /// Its group; none: the default.
    pub group: Option<String>,
    /// Seconds offline before `offline` is raised.
    pub after_secs: u64,
}

impl ApiClient {
    /// `POST /api/webhooks`: a new webhook and its secret.
    pub async fn add_webhook(&self, new: &NewWebhook) -> Result<WebhookCreated, ApiError> {
        let path = "/api/webhooks";
        self.send(path, self.request(Method::POST, path).json(new))
            .await
    }

    /// `GET /api/webhooks`: every webhook.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, ApiError> {
        self.call(Method::GET, "/api/webhooks").await
    }

    /// `DELETE /api/webhooks/{id}`.
    pub async fn remove_webhook(&self, id: i64) -> Result<WebhookRemoved, ApiError> {
        self.call(Method::DELETE, &format!("/api/webhooks/{id}"))
            .await
    }

    /// `GET /api/webhooks/deliveries`: the newest deliveries, of one webhook or all.
    pub async fn webhook_deliveries(
        &self,
        query: &DeliveryQuery,
    ) -> Result<Vec<WebhookDelivery>, ApiError> {
        let path = "/api/webhooks/deliveries";
        self.send(path, self.request(Method::GET, path).query(query))
            .await
    }

    /// `PUT /api/webhooks/thresholds`: set a group's (or the default) offline threshold.
    pub async fn set_threshold(&self, new: &NewThreshold) -> Result<Threshold, ApiError> {
        let path = "/api/webhooks/thresholds";
        self.send(path, self.request(Method::PUT, path).json(new))
            .await
    }

    /// `GET /api/webhooks/thresholds`: every threshold set.
    pub async fn thresholds(&self) -> Result<Vec<Threshold>, ApiError> {
        self.call(Method::GET, "/api/webhooks/thresholds").await
    }
}
