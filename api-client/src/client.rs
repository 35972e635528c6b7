//! The typed admin client: one method per API call, over reqwest with the hub's CA as the only
//! trust root and the admin token as bearer.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;

use crate::access::{NewToken, TokenInfo, TokenIssued};
use crate::audit::{AuditPage, AuditQuery};
use crate::jobs::{JobDetail, JobOutput, JobPage, JobShowQuery, JobSummary, NewJob};
use crate::stacks::{
    NewRollout, NewStackVersion, PauseRollout, RolloutDetail, RolloutPage, RolloutSummary,
    StackDetail, StackListQuery, StackPage, StackRemoved, StackVersionSaved,
};
use crate::types::{
    AdminCert, AdminCertIssued, AdminCertsRevoked, AdminTokenRotated, EndpointCreated,
    EndpointDetail, EndpointPatch, EndpointReset, ErrorBody, ListQuery, NewAdminCert, NewEndpoint,
    NewTag, Page, Removed, Summoned,
};
use crate::{ApiError, Endpoint};

/// A client of one hub's admin API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the API at `base_url` (`https://host:9443`), authenticating with the admin
    /// bearer `token` and trusting only the hub CA in `ca_pem`.
    pub fn new(base_url: &str, token: &str, ca_pem: &[u8]) -> Result<Self, ApiError> {
        Self::build(base_url, token, ca_pem, None)
    }

    /// Like [`ApiClient::new`], giving up on any request after `timeout`.
    pub fn with_timeout(
        base_url: &str,
        token: &str,
        ca_pem: &[u8],
        timeout: Duration,
    ) -> Result<Self, ApiError> {
        Self::build(base_url, token, ca_pem, Some(timeout))
    }

    fn build(
        base_url: &str,
        token: &str,
        ca_pem: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Self, ApiError> {
        let ca = reqwest::Certificate::from_pem(ca_pem).map_err(ApiError::Client)?;
        let mut builder = reqwest::Client::builder().add_root_certificate(ca);
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: builder.build().map_err(ApiError::Client)?,
        })
    }

    /// The API's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /api/endpoints`: a new endpoint and its join token.
    pub async fn create_endpoint(&self, new: &NewEndpoint) -> Result<EndpointCreated, ApiError> {
        let path = "/api/endpoints";
        self.send(path, self.request(Method::POST, path).json(new))
            .await
    }

    /// `GET /api/endpoints`: one page of the list.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, ApiError> {
        let path = "/api/endpoints";
        self.send(path, self.request(Method::GET, path).query(query))
            .await
    }

    /// How many endpoints have `status` (`pending`, `offline`, `online`, `standby`, `active`):
    /// the total of a one-row page.
    pub async fn count(&self, status: &str) -> Result<u64, ApiError> {
        let query = ListQuery {
            status: Some(status.into()),
            per_page: Some("1".into()),
            ..ListQuery::default()
        };
        Ok(self.list(&query).await?.total)
    }

    /// `GET /api/endpoints/{id}`: one endpoint with its engine's last snapshot.
    pub async fn show(&self, id: u64) -> Result<EndpointDetail, ApiError> {
        self.call(Method::GET, &format!("/api/endpoints/{id}"))
            .await
    }

    /// `POST /api/endpoints/{id}/summon`: returns once the device is ready.
    pub async fn summon(&self, id: u64) -> Result<Summoned, ApiError> {
        self.call(Method::POST, &format!("/api/endpoints/{id}/summon"))
            .await
    }

    /// `POST /api/endpoints/{id}/approve`: let a pending device in.
    pub async fn approve(&self, id: u64) -> Result<Endpoint, ApiError> {
        self.call(Method::POST, &format!("/api/endpoints/{id}/approve"))
            .await
    }

    /// `DELETE /api/endpoints/{id}`: remove it, revoke its certificates, close its session.
    pub async fn remove(&self, id: u64) -> Result<Removed, ApiError> {
        self.call(Method::DELETE, &format!("/api/endpoints/{id}"))
            .await
    }

    /// `POST /api/endpoints/{id}/reset`: unbind its agent and issue a new join token.
    pub async fn reset(&self, id: u64) -> Result<EndpointReset, ApiError> {
        self.call(Method::POST, &format!("/api/endpoints/{id}/reset"))
            .await
    }

    /// `POST /api/endpoints/{id}/tags`: add one tag.
    pub async fn tag(&self, id: u64, tag: &str) -> Result<Endpoint, ApiError> {
        let path = format!("/api/endpoints/{id}/tags");
        let body = NewTag { tag: tag.into() };
        self.send(&path, self.request(Method::POST, &path).json(&body))
            .await
    }

    /// `DELETE /api/endpoints/{id}/tags/{tag}`: remove one tag.
    pub async fn untag(&self, id: u64, tag: &str) -> Result<Endpoint, ApiError> {
        let path = format!("/api/endpoints/{id}/tags/{}", path_segment(tag));
        self.call(Method::DELETE, &path).await
    }

    /// `PATCH /api/endpoints/{id}`: set the group, replace the tags, or both.
    pub async fn patch(&self, id: u64, patch: &EndpointPatch) -> Result<Endpoint, ApiError> {
        let path = format!("/api/endpoints/{id}");
        self.send(&path, self.request(Method::PATCH, &path).json(patch))
            .await
    }

    /// Put the endpoint in `group`, replacing its group.
    pub async fn group(&self, id: u64, group: &str) -> Result<Endpoint, ApiError> {
        let patch = EndpointPatch {
            group: Some(Some(group.into())),
            tags: None,
        };
        self.patch(id, &patch).await
    }

    /// Take the endpoint out of its group.
    pub async fn ungroup(&self, id: u64) -> Result<Endpoint, ApiError> {
        let patch = EndpointPatch {
            group: Some(None),
            tags: None,
        };
        self.patch(id, &patch).await
    }

    /// `POST /api/admin-certs`: a new admin client certificate with its key.
    pub async fn create_admin_cert(&self, new: &NewAdminCert) -> Result<AdminCertIssued, ApiError> {
        let path = "/api/admin-certs";
        self.send(path, self.request(Method::POST, path).json(new))
            .await
    }

    /// `GET /api/admin-certs`: every admin certificate issued, oldest first.
    pub async fn admin_certs(&self) -> Result<Vec<AdminCert>, ApiError> {
        self.call(Method::GET, "/api/admin-certs").await
    }

    /// `DELETE /api/admin-certs/{serial or name}`: revoke by serial, or every valid one by name.
    pub async fn revoke_admin_certs(
        &self,
        serial_or_name: &str,
    ) -> Result<AdminCertsRevoked, ApiError> {
        let path = format!("/api/admin-certs/{}", path_segment(serial_or_name));
        self.call(Method::DELETE, &path).await
    }

    /// `POST /api/admin-token/rotate`: a new admin token; this client's own stops working.
    pub async fn rotate_admin_token(&self) -> Result<AdminTokenRotated, ApiError> {
        self.call(Method::POST, "/api/admin-token/rotate").await
    }

    /// `POST /api/tokens`: a named API token with a role and scope, shown this once.
    pub async fn create_token(&self, new: &NewToken) -> Result<TokenIssued, ApiError> {
        let path = "/api/tokens";
        self.send(path, self.request(Method::POST, path).json(new))
            .await
    }

    /// `GET /api/tokens`: every named token, oldest first (hashes only, never a token).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        self.call(Method::GET, "/api/tokens").await
    }

    /// `DELETE /api/tokens/{name}`: revoke the live token with this name.
    pub async fn revoke_token(&self, name: &str) -> Result<TokenInfo, ApiError> {
        let path = format!("/api/tokens/{}", path_segment(name));
        self.call(Method::DELETE, &path).await
    }

    /// `GET /api/audit`: one page of audit records, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, ApiError> {
        let path = "/api/audit";
        self.send(path, self.request(Method::GET, path).query(query))
            .await
    }

    /// `POST /api/stacks`: store a Compose file as the stack's next version (or find it unchanged).
    pub async fn save_stack(&self, new: &NewStackVersion) -> Result<StackVersionSaved, ApiError> {
        let path = "/api/stacks";
        self.send(path, self.request(Method::POST, path).json(new))
            .await
    }

    /// `GET /api/stacks`: one page of stacks, by name.
    pub async fn stacks(&self, query: &StackListQuery) -> Result<StackPage, ApiError> {
        let path = "/api/stacks";
        self.send(path, self.request(Method::GET, path).query(query))
            .await
    }

    /// `GET /api/stacks/{name}`: the history and one version (the newest when `version` is None).
    pub async fn stack(&self, name: &str, version: Option<u32>) -> Result<StackDetail, ApiError> {
        let path = format!("/api/stacks/{}", path_segment(name));
        let mut request = self.request(Method::GET, &path);
        if let Some(version) = version {
            request = request.query(&[("version", version)]);
        }
        self.send(&path, request).await
    }

    /// `DELETE /api/stacks/{name}`: remove the stack and every version.
    pub async fn remove_stack(&self, name: &str) -> Result<StackRemoved, ApiError> {
        let path = format!("/api/stacks/{}", path_segment(name));
        self.call(Method::DELETE, &path).await
    }

    /// `POST /api/rollouts`: start rolling a stack version out.
    pub async fn start_rollout(&self, new: &NewRollout) -> Result<RolloutSummary, ApiError> {
        let path = "/api/rollouts";
        self.send(path, self.request(Method::POST, path).json(new))
            .await
    }

    /// `GET /api/rollouts`: one page of rollouts, newest first.
    pub async fn rollouts(&self, query: &StackListQuery) -> Result<RolloutPage, ApiError> {
        let path = "/api/rollouts";
        self.send(path, self.request(Method::GET, path).query(query))
            .await
    }

    /// `GET /api/rollouts/{id}`: state, counts and one page of targets.
    pub async fn rollout(
        &self,
        id: i64,
        query: &StackListQuery,
    ) -> Result<RolloutDetail, ApiError> {
        let path = format!("/api/rollouts/{id}");
        self.send(&path, self.request(Method::GET, &path).query(query))
            .await
    }

    /// `POST /api/rollouts/{id}/{pause|resume|abort}`.
    pub async fn control_rollout(
        &self,
        id: i64,
        action: &str,
        note: &str,
    ) -> Result<RolloutSummary, ApiError> {
        let path = format!("/api/rollouts/{id}/{}", path_segment(action));
        let body = PauseRollout { note: note.into() };
        self.send(&path, self.request(Method::POST, &path).json(&body))
            .await
    }

    /// `POST /api/jobs`: run something once on every device of a selection.
    pub async fn create_job(&self, new: &NewJob) -> Result<JobSummary, ApiError> {
        let path = "/api/jobs";
        self.send(path, self.request(Method::POST, path).json(new))
            .await
    }

    /// `GET /api/jobs`: one page of jobs, newest first.
    pub async fn jobs(&self, query: &StackListQuery) -> Result<JobPage, ApiError> {
        let path = "/api/jobs";
        self.send(path, self.request(Method::GET, path).query(query))
            .await
    }

    /// `GET /api/jobs/{id}`: state, counts and one page of devices (those in one state if asked).
    pub async fn job(&self, id: i64, query: &JobShowQuery) -> Result<JobDetail, ApiError> {
        let path = format!("/api/jobs/{id}");
        self.send(&path, self.request(Method::GET, &path).query(query))
            .await
    }

    /// `GET /api/jobs/{id}/devices/{endpoint}`: one device's result and kept output.
    pub async fn job_output(&self, id: i64, endpoint: u64) -> Result<JobOutput, ApiError> {
        self.call(Method::GET, &format!("/api/jobs/{id}/devices/{endpoint}"))
            .await
    }

    /// `POST /api/jobs/{id}/cancel`: devices that have not started it will not.
    pub async fn cancel_job(&self, id: i64) -> Result<JobSummary, ApiError> {
        self.call(Method::POST, &format!("/api/jobs/{id}/cancel"))
            .await
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ApiError> {
        self.send(path, self.request(method, path)).await
    }

    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        request: RequestBuilder,
    ) -> Result<T, ApiError> {
        let transport = |source| ApiError::Transport {
            path: path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body).ok();
            return Err(ApiError::Status {
                path: path.to_owned(),
                status,
                message: message.map(|m| m.message),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::BadReply {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// `text` as one path segment: every byte but the unreserved ones percent-encoded.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_escape_everything_but_unreserved_bytes() {
        assert_eq!(path_segment("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(path_segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }
}
