//! The few admin API calls the swarm makes: create an endpoint, summon one, count by status.

use std::time::Duration;

use outpost_protocol::token::JoinToken;
use outpost_protocol::EndpointId;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use thiserror::Error;

use crate::config::HubAccess;

/// Why an API call failed.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The request did not complete (connection refused, timeout, TLS).
    #[error("{path}: {source}")]
    Transport {
        /// The API path.
        path: String,
        /// The failure.
        source: reqwest::Error,
    },
    /// The hub answered with an error status.
    #[error("{path}: {status}: {body}")]
    Status {
        /// The API path.
        path: String,
        /// The status.
        status: StatusCode,
        /// The hub's explanation.
        body: String,
    },
    /// The answer is not what this API returns.
    #[error("{path}: unexpected answer: {what}")]
    BadReply {
        /// The API path.
        path: String,
        /// What was wrong.
        what: String,
    },
    /// The local client could not be built (bad CA file).
    #[error("API client: {0}")]
    Client(String),
}

impl ApiError {
    /// Whether the same request can never succeed (a client error other than "too many").
    pub fn is_final(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                status.is_client_error() && *status != StatusCode::TOO_MANY_REQUESTS
            }
            Self::Client(_) => true,
            Self::Transport { .. } | Self::BadReply { .. } => false,
        }
    }

    /// A short label for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            Self::Transport { source, .. } if source.is_timeout() => "timeout".into(),
            Self::Transport { .. } => "transport".into(),
            Self::Status { status, .. } => status.as_u16().to_string(),
            Self::BadReply { .. } => "bad reply".into(),
            Self::Client(_) => "client".into(),
        }
    }
}

/// A client of the hub's admin API.
#[derive(Clone, Debug)]
pub struct HubApi {
    base: String,
    token: String,
    client: reqwest::Client,
}

/// A new endpoint and its join token.
#[derive(Clone, Debug)]
pub struct Created {
    /// The endpoint.
    pub id: EndpointId,
    /// Its join token.
    pub token: JoinToken,
}

impl HubApi {
    /// A client for `access`, with `timeout` per request.
    pub fn new(access: &HubAccess, timeout: Duration) -> Result<Self, ApiError> {
        let ca = reqwest::Certificate::from_pem(&access.ca_pem)
            .map_err(|e| ApiError::Client(e.to_string()))?;
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(timeout)
            .build()
            .map_err(|e| ApiError::Client(e.to_string()))?;
        Ok(Self {
            base: access.api.trim_end_matches('/').to_owned(),
            token: access.token.clone(),
            client,
        })
    }

    /// Call `path` and return its JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let transport = |source| ApiError::Transport {
            path: path.to_owned(),
            source,
        };
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ApiError::Status {
                path: path.to_owned(),
                status,
                body: response.text().await.unwrap_or_default(),
            });
        }
        response.json().await.map_err(transport)
    }

    /// `POST /api/endpoints`: a new device endpoint named `name`.
    pub async fn create_endpoint(&self, name: &str) -> Result<Created, ApiError> {
        let path = "/api/endpoints";
        let reply = self
            .call(
                Method::POST,
                path,
                Some(serde_json::json!({ "name": name })),
            )
            .await?;
        let bad = |what: &str| ApiError::BadReply {
            path: path.into(),
            what: what.into(),
        };
        let id = reply["id"].as_u64().ok_or_else(|| bad("no id"))?;
        let key = reply["edge_key"]
            .as_str()
            .ok_or_else(|| bad("no edge_key"))?;
        let token = JoinToken::decode(key).map_err(|e| bad(&e.to_string()))?;
        Ok(Created {
            id: EndpointId(id),
            token,
        })
    }

    /// `POST /api/endpoints/{id}/summon`: returns once the device is ready.
    pub async fn summon(&self, id: EndpointId) -> Result<(), ApiError> {
        self.call(
            Method::POST,
            &format!("/api/endpoints/{}/summon", id.0),
            None,
        )
        .await
        .map(drop)
    }

    /// How many endpoints have `status` (`standby`, `active`, `offline`, `pending`).
    pub async fn count(&self, status: &str) -> Result<u64, ApiError> {
        let path = format!("/api/endpoints?status={status}&per_page=1");
        let reply = self.call(Method::GET, &path, None).await?;
        reply["total"].as_u64().ok_or(ApiError::BadReply {
            path,
            what: "no total".into(),
        })
    }
}
