//! The bodies of `/api/audit`: the append-only record of every state-changing call.

use serde::{Deserialize, Serialize};

/// One state-changing call: an API write, a proxied Docker call other than GET and HEAD, or a
/// hijacked session (`exec`, `attach`) with its whole duration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its id, increasing.
    pub id: i64,
    /// When the call arrived, Unix milliseconds.
    pub at_ms: i64,
    /// The credential's name.
    pub who: String,
    /// The device, when the call was about one.
    pub endpoint: Option<u64>,
    /// HTTP method.
    pub method: String,
    /// Path and query as the client sent them (never a header or a body).
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// Request body bytes (and, for a hijacked session, bytes from the client).
    pub bytes_in: u64,
    /// Response body bytes (and, for a hijacked session, bytes to the client).
    pub bytes_out: u64,
    /// From arrival to the answer's end (for a hijacked session, to its close).
    pub duration_ms: u64,
    /// Whether the call became a hijacked session.
    pub hijacked: bool,
}

/// `GET /api/audit` parameters, all optional: `who`, `endpoint`, `since` and `until` (Unix
/// milliseconds, `until` exclusive), `page` and `per_page` (1 to 1000, default 100).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only this credential's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    /// Only calls about this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// From this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Before this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Page, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Records per page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<String>,
}

/// A page of audit records, newest first, and how many match the filters.
pub type AuditPage = crate::Paged<AuditRecord>;
