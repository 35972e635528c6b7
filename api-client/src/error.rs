//! Why an admin API call failed, keeping what the hub said: its status and its message.

use reqwest::StatusCode;
use thiserror::Error;

/// Why an admin API call failed.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The client could not be built: the CA certificate is not PEM, or TLS cannot be set up.
    #[error("API client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request did not complete (connection refused, timeout, TLS): check the URL and that
    /// the hub runs.
    #[error("{path}: {source}")]
    Transport {
        /// The API path.
        path: String,
        /// The failure.
        #[source]
        source: reqwest::Error,
    },
    /// The hub answered with an error status; its message says why.
    #[error("{path}: {status}: {}", message.as_deref().unwrap_or(NO_MESSAGE))]
    Status {
        /// The API path.
        path: String,
        /// The status.
        status: StatusCode,
        /// The hub's `{"message": …}`, if the body carried one.
        message: Option<String>,
    },
    /// A success whose body is not what this API returns: client and hub versions differ.
    #[error("{path}: unexpected answer: {reason}")]
    BadReply {
        /// The API path.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// What an error answer without a message reads as.
pub const NO_MESSAGE: &str = "no message";

impl ApiError {
    /// The hub's status, if it answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The hub's message, if it answered with an error that carried one.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Status { message, .. } => message.as_deref(),
            _ => None,
        }
    }

    /// Whether the same request can never succeed: a client error other than "too many", or a
    /// client that cannot be built.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                status.is_client_error() && *status != StatusCode::TOO_MANY_REQUESTS
            }
            Self::Client(_) => true,
            Self::Transport { .. } | Self::BadReply { .. } => false,
        }
    }

    /// A short label for counting errors by kind: `timeout`, `transport`, the status code,
    /// `bad reply` or `client`.
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
