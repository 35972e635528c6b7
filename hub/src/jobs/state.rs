//! Where a job is on one device: the states the dispatch moves targets through, as the store and
//! the API name them.

use outpost_protocol::job::JobOutcome;
use serde::{Deserialize, Serialize};

/// Where a job is on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Not sent yet: the device is offline, or others hold the job's places.
    Queued,
    /// Sent; the device has not said it started.
    Sent,
    /// The device started it.
    Running,
    /// It exited 0 (an Engine call: answered 2xx).
    Succeeded,
    /// It exited otherwise, could not run, timed out, or the agent stopped while it ran.
    Failed,
    /// The job expired before the device started it.
    Expired,
    /// It started, and no result came by expiry plus its timeout.
    Lost,
    /// Cancelled before the device started it, or stopped by the cancel (a one-shot container).
    Cancelled,
}

impl TargetState {
    /// Every state, in display order.
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Sent,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Expired,
        Self::Lost,
        Self::Cancelled,
    ];

    /// The state's name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Lost => "lost",
            Self::Cancelled => "cancelled",
        }
    }

    /// Read a name [`Self::as_str`] wrote.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state a result puts its target in.
    pub fn of(outcome: &JobOutcome) -> Self {
        match outcome {
            JobOutcome::Expired => Self::Expired,
            JobOutcome::Cancelled => Self::Cancelled,
            outcome if outcome.succeeded() => Self::Succeeded,
            _ => Self::Failed,
        }
    }

    /// Nothing more will happen to it (a late result may still replace expired or lost).
    pub fn settled(self) -> bool {
        !matches!(self, Self::Queued | Self::Sent | Self::Running)
    }

    /// The device has the job and no result yet.
    pub fn holds_the_job(self) -> bool {
        matches!(self, Self::Sent | Self::Running)
    }
}
