//! The swarm's side of the admin API ([`outpost_api::ApiClient`]): a client for the hub it loads,
//! and device endpoints created with their join tokens decoded.

use std::time::Duration;

use outpost_api::{ApiClient, ApiError, NewEndpoint};
use outpost_protocol::token::JoinToken;
use outpost_protocol::EndpointId;

use crate::config::HubAccess;

/// A client for `access`, with `timeout` per request.
pub fn connect(access: &HubAccess, timeout: Duration) -> Result<ApiClient, ApiError> {
    ApiClient::with_timeout(&access.api, &access.token, &access.ca_pem, timeout)
}

/// A new endpoint and its join token.
#[derive(Clone, Debug)]
pub struct Created {
    /// The endpoint.
    pub id: EndpointId,
    /// Its join token.
    pub token: JoinToken,
}

/// `POST /api/endpoints`: a new device endpoint named `name`.
pub async fn create_device(api: &ApiClient, name: &str) -> Result<Created, ApiError> {
    let created = api.create_endpoint(&NewEndpoint::device(name)).await?;
    let token = JoinToken::decode(&created.edge_key).map_err(|e| ApiError::BadReply {
        path: "/api/endpoints".into(),
        reason: format!("edge_key: {e}"),
    })?;
    Ok(Created {
        id: EndpointId(created.id),
        token,
    })
}
