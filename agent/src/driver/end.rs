//! How a session ends, and who hears of it: the driver's one error type ([`SessionEnd`], what
//! the agent's reconnect loop decides on) with what it is made from (a connection's close, a
//! control-stream error, a full outbox), and the [`SessionObserver`] a load tool watches many
//! sessions through.

use std::fmt;
use std::time::Duration;

use outpost_protocol::wire::{CloseCode, RestartNotice, WireError};
use outpost_transport::close::CloseCodeVarint as _;
use thiserror::Error;

use super::outbox::Backlog;

/// How a session ended.
#[derive(Debug, Error)]
pub enum SessionEnd {
    /// The hub removed this endpoint or revoked its certificate: stop for good.
    #[error("the hub revoked this device: {0}")]
    Revoked(String),
    /// The hub is stopping and asked to be redialled at a random moment within `spread`, to
    /// another hub of the fleet first if `elsewhere`.
    #[error("the hub is stopping; reconnecting within {spread:?}{}", if *elsewhere { ", to another hub of the fleet first" } else { "" })]
    HubStopping {
        /// The window the reconnect moment is drawn from.
        spread: Duration,
        /// The hub handed its agents to the others.
        elsewhere: bool,
    },
    /// The connection was lost or closed; reconnect.
    #[error("connection lost: {0}")]
    Lost(String),
    /// Nothing came from the hub for the idle timeout: an outage, or a path that now drops UDP.
    #[error("connection lost: the hub went silent for the idle timeout")]
    Silent,
    /// Check-ins go unanswered while the hub answers over TCP: this network now drops UDP (or the
    /// session's tunnel died).
    #[error("the session's path is dead (check-ins unanswered) while the hub answers over TCP")]
    UdpBlocked,
    /// Check-ins go unanswered while another hub of the fleet answers (at `answering`): this
    /// session's hub is gone.
    #[error("the hub is silent while another hub of the fleet answers at {answering}")]
    HubGone {
        /// The hub that answered, to dial first.
        answering: String,
    },
}

impl From<quinn::ConnectionError> for SessionEnd {
    fn from(e: quinn::ConnectionError) -> Self {
        match &e {
            quinn::ConnectionError::ApplicationClosed(close)
                if CloseCode::from_varint(close.error_code) == Some(CloseCode::Revoked) =>
            {
                Self::Revoked(String::from_utf8_lossy(&close.reason).into_owned())
            }
            quinn::ConnectionError::ApplicationClosed(close)
                if CloseCode::from_varint(close.error_code) == Some(CloseCode::Stopping) =>
            {
                match RestartNotice::decode(&close.reason) {
                    Some(notice) => Self::HubStopping {
                        spread: notice.spread,
                        elsewhere: notice.elsewhere,
                    },
                    None => Self::Lost(e.to_string()),
                }
            }
            quinn::ConnectionError::TimedOut => Self::Silent,
            _ => Self::Lost(e.to_string()),
        }
    }
}

impl From<WireError> for SessionEnd {
    fn from(e: WireError) -> Self {
        Self::Lost(format!("control stream: {e}"))
    }
}

/// Prefer the connection's close reason (a revocation, say) over the stream error it caused.
pub(super) fn ended(conn: &quinn::Connection, error: SessionEnd) -> SessionEnd {
    match (conn.close_reason(), error) {
        (Some(reason), SessionEnd::Lost(_) | SessionEnd::Silent) => reason.into(),
        (_, error) => error,
    }
}

impl From<Backlog> for SessionEnd {
    fn from(e: Backlog) -> Self {
        Self::Lost(e.to_string())
    }
}

/// Watches sessions from outside: what a process running many agents counts. Every method has an
/// empty default.
pub trait SessionObserver: Send + Sync + fmt::Debug {
    /// The hub welcomed the agent: the session is up.
    fn established(&self) {}
    /// A check-in was acknowledged `rtt` after it was sent.
    fn checkin_acked(&self, _rtt: Duration) {}
    /// No session could be set up, or it was lost; the agent retries after a backoff.
    fn interrupted(&self, _cause: &Interruption) {}
}

/// Why the agent is about to reconnect.
#[derive(Debug, Error)]
pub enum Interruption {
    /// The hub could not be reached.
    #[error(transparent)]
    Dial(crate::dial::DialError),
    /// The session ended (not by revocation).
    #[error(transparent)]
    Session(SessionEnd),
}
