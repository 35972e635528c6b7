//! The bodies of `/api/tokens` and the role and scope every admin credential carries.
//!
//! A role is `viewer` (read), `operator` (the Docker proxy, jobs and rollouts as well) or `admin`
//! (everything, credentials included). A scope limits a credential to the devices in one of its
//! groups or carrying one of its tags; without one it reaches the whole fleet.

use serde::{Deserialize, Serialize};

/// Which devices a credential reaches: those in one of the groups or with one of the tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tag names.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `POST /api/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    /// A name for the token, unique among the tokens not revoked (audit records name it).
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// The devices it reaches; the whole fleet when absent.
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// A named API token as listed (never the token itself: the hub keeps only its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The devices it reaches; the whole fleet when absent.
    pub scope: Option<Scope>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
}

/// The answer to `POST /api/tokens`: the token, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    /// What was recorded.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token.
    pub token: String,
}
