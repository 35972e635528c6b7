//! A rollout's plan as an admin writes it: `--waves 1%,10%,100% --max-failures 0 --soak 2m`.
//!
//! Why these defaults ([`Plan::default`]): a fleet on bad links is expensive to repair, so the
//! first deploy of a stack is staged like every later one.
//! - **Waves `1%,10%,100%`**: a canary, a sample, then everyone. Sizes round up, so on a small
//!   fleet the first two merge into one device: an admin trying Outpost on three devices sees one
//!   device get the stack first and the other two once it is healthy; on 10,000 devices the
//!   waves are 100, 1,000 and 10,000.
//! - **Max failures `0`**: the first device that fails pauses the rollout and the pause says
//!   which device and why. Resuming accepts the failures seen so far, so a broken disk costs one
//!   `rollout resume`, while a version that breaks one hardware variant never reaches the fleet
//!   because of a tolerance nobody chose. Large fleets where a few devices always fail set `1%`.
//! - **Soak [`DEFAULT_SOAK`]**: longer than the engine's default healthcheck needs to call a
//!   container unhealthy (3 retries 30 s apart), so a container that starts and then breaks is
//!   caught before its wave counts as done.
//!
//! Sizes are counts (`5`) or percentages (`5%`, `0.5%`, steps of 0.01%). Waves are cumulative:
//! wave k is the first `size_k` targets. They grow strictly within each kind, and the last must be
//! `100%` — written out rather than implied, so `--waves 10%` is refused instead of being read as
//! either "stop at 10%" or "then everyone". Across kinds (`5,1%,100%`) sizes are resolved against
//! the fleet, and a wave that would add nobody is skipped.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most waves in one plan: past a handful, waves only slow a rollout down.
pub const MAX_WAVES: usize = 16;

/// How long a device must stay healthy before it counts as done: the engine's default
/// healthcheck calls a container unhealthy after 3 failed checks 30 s apart, and two minutes
/// leaves room for the report to arrive over a slow link.
pub const DEFAULT_SOAK: Duration = Duration::from_secs(120);

/// Hundredths of a percent in 100%.
const ALL: u32 = 10_000;

/// Why a plan's text was refused; each names the token at fault.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlanError {
    /// A token is neither a count nor a percentage.
    #[error("{0:?} is not a count (5) or a percentage (5%, 0.5%)")]
    BadToken(String),
    /// A percentage above 100% or finer than 0.01%.
    #[error("{0:?}: a percentage is at most 100%, in steps of 0.01%")]
    PercentRange(String),
    /// A wave of nobody (`0`, `0%`).
    #[error("wave {0:?} holds no device; the first wave must hold at least one")]
    EmptyWave(String),
    /// A wave no larger than an earlier one of the same kind: waves are cumulative.
    #[error("wave {token:?} is not larger than the earlier {earlier:?} (waves are cumulative)")]
    NotGrowing {
        /// The wave at fault.
        token: String,
        /// The earlier wave of the same kind.
        earlier: String,
    },
    /// The last wave is not `100%`, so some targets would never be reached.
    #[error("the last wave is {0:?}; end with 100% so every target is reached (e.g. {0},100%)")]
    LastNotAll(String),
    /// More than [`MAX_WAVES`] waves.
    #[error("{0} waves; at most {MAX_WAVES}")]
    TooManyWaves(usize),
    /// An `--on-drift` that is neither `reapply` nor `report`.
    #[error("on-drift {0:?}: use reapply or report")]
    OnDrift(String),
}

/// A size: a count of devices, or a share of them in hundredths of a percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Share {
    /// That many devices.
    Count(u32),
    /// That many hundredths of a percent of the devices (`10_000` is 100%).
    Hundredths(u32),
}

impl Share {
    /// The share of `n` devices rounded up, so 1% of 3 devices is 1 device.
    pub fn rounded_up(self, n: usize) -> usize {
        match self {
            Self::Count(count) => count as usize,
            Self::Hundredths(h) => (u64::from(h) * n as u64).div_ceil(u64::from(ALL)) as usize,
        }
    }

    /// The share of `n` devices rounded down, so 5% of 19 devices is 0 devices.
    pub fn rounded_down(self, n: usize) -> usize {
        match self {
            Self::Count(count) => count as usize,
            Self::Hundredths(h) => (u64::from(h) * n as u64 / u64::from(ALL)) as usize,
        }
    }

    fn is_zero(self) -> bool {
        matches!(self, Self::Count(0) | Self::Hundredths(0))
    }

    /// Whether `self` is larger than `earlier`, if both are of one kind.
    fn grows_from(self, earlier: Self) -> Option<bool> {
        match (earlier, self) {
            (Self::Count(a), Self::Count(b)) | (Self::Hundredths(a), Self::Hundredths(b)) => {
                Some(b > a)
            }
            _ => None,
        }
    }
}

impl FromStr for Share {
    type Err = PlanError;

    fn from_str(token: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadToken(token.to_owned());
        let Some(percent) = token.strip_suffix('%') else {
            return digits(token).ok_or_else(bad).map(Self::Count);
        };
        let (whole, fraction) = match percent.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (percent, None),
        };
        let whole = digits(whole).ok_or_else(bad)?;
        let fraction = match fraction {
            None => 0,
            Some(fraction) => {
                let value = digits(fraction).ok_or_else(bad)?;
                if fraction.len() > 2 {
                    return Err(PlanError::PercentRange(token.to_owned()));
                }
                if fraction.len() == 1 {
                    value * 10
                } else {
                    value
                }
            }
        };
        let hundredths = u64::from(whole) * 100 + u64::from(fraction);
        match u32::try_from(hundredths) {
            Ok(h) if h <= ALL => Ok(Self::Hundredths(h)),
            _ => Err(PlanError::PercentRange(token.to_owned())),
        }
    }
}

/// Plain ASCII digits as a `u32` (no sign, no spaces, not empty).
fn digits(text: &str) -> Option<u32> {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| text.parse().ok()).flatten()
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Count(count) => write!(f, "{count}"),
            Self::Hundredths(h) if h % 100 == 0 => write!(f, "{}%", h / 100),
            Self::Hundredths(h) if h % 10 == 0 => write!(f, "{}.{}%", h / 100, h % 100 / 10),
            Self::Hundredths(h) => write!(f, "{}.{:02}%", h / 100, h % 100),
        }
    }
}

/// The waves of a rollout, cumulative; the last is `100%`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Waves(Vec<Share>);

impl Waves {
    /// How many waves.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// How many of `n` targets wave `index` (from 0) reaches, counting earlier waves, at most `n`.
    pub fn reach(&self, index: usize, n: usize) -> usize {
        self.0
            .get(index)
            .map_or(n, |share| share.rounded_up(n).min(n))
    }
}

impl Default for Waves {
    fn default() -> Self {
        Self(vec![
            Share::Hundredths(100),
            Share::Hundredths(1_000),
            Share::Hundredths(ALL),
        ])
    }
}

impl FromStr for Waves {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, PlanError> {
        let tokens: Vec<&str> = text.split(',').map(str::trim).collect();
        if tokens.len() > MAX_WAVES {
            return Err(PlanError::TooManyWaves(tokens.len()));
        }
        let mut waves: Vec<(Share, &str)> = Vec::with_capacity(tokens.len());
        for token in tokens {
            let share: Share = token.parse()?;
            if share.is_zero() {
                return Err(PlanError::EmptyWave(token.to_owned()));
            }
            let earlier = waves
                .iter()
                .rev()
                .find_map(|(earlier, t)| Some((share.grows_from(*earlier)?, *t)));
            if let Some((false, earlier)) = earlier {
                return Err(PlanError::NotGrowing {
                    token: token.to_owned(),
                    earlier: earlier.to_owned(),
                });
            }
            waves.push((share, token));
        }
        match waves.last() {
            Some((Share::Hundredths(ALL), _)) => Ok(Self(waves.into_iter().map(|w| w.0).collect())),
            Some((_, last)) => Err(PlanError::LastNotAll((*last).to_owned())),
            None => Err(PlanError::BadToken(String::new())),
        }
    }
}

impl fmt::Display for Waves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, share) in self.0.iter().enumerate() {
            let comma = if index == 0 { "" } else { "," };
            write!(f, "{comma}{share}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Waves {
    type Error = PlanError;
    fn try_from(text: String) -> Result<Self, PlanError> {
        text.parse()
    }
}

impl From<Waves> for String {
    fn from(waves: Waves) -> Self {
        waves.to_string()
    }
}

/// How many failed devices a rollout tolerates among those assigned so far before it pauses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MaxFailures(Share);

impl MaxFailures {
    /// Failures allowed among `assigned` devices: a count as is, a percentage rounded down (the
    /// rate may reach the threshold, not pass it: 5% of 20 allows 1, of 19 allows none).
    pub fn allowed(self, assigned: usize) -> usize {
        self.0.rounded_down(assigned)
    }
}

impl Default for MaxFailures {
    /// None: the first failure pauses (see the module's defaults).
    fn default() -> Self {
        Self(Share::Count(0))
    }
}

impl FromStr for MaxFailures {
    type Err = PlanError;
    fn from_str(text: &str) -> Result<Self, PlanError> {
        text.trim().parse().map(Self)
    }
}

impl fmt::Display for MaxFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for MaxFailures {
    type Error = PlanError;
    fn try_from(text: String) -> Result<Self, PlanError> {
        text.parse()
    }
}

impl From<MaxFailures> for String {
    fn from(max: MaxFailures) -> Self {
        max.to_string()
    }
}

/// What a device does when a container of the stack dies or is removed (`--on-drift`).
///
/// `Reapply` (the default) puts the stack back as deployed. `Report` leaves the device as it is
/// and says so — for devices a technician works on by hand, where the agent recreating a
/// container they just stopped would fight them. A drifted device under `Report` is settled
/// (nothing will repair it by itself) and counts as a failure of its wave, so a rollout that
/// breaks such devices pauses instead of waiting on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// Re-apply the stack.
    #[default]
    Reapply,
    /// Report the drift, change nothing.
    Report,
}

impl OnDrift {
    /// How the API and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reapply => "reapply",
            Self::Report => "report",
        }
    }
}

impl FromStr for OnDrift {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, PlanError> {
        match text {
            "reapply" => Ok(Self::Reapply),
            "report" => Ok(Self::Report),
            other => Err(PlanError::OnDrift(other.to_owned())),
        }
    }
}

impl fmt::Display for OnDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything `stack deploy` decides about how a version spreads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The waves.
    pub waves: Waves,
    /// The failure threshold.
    pub max_failures: MaxFailures,
    /// How long a device must stay healthy to count as done.
    pub soak: Duration,
    /// What its devices do on drift (rollouts saved before the policy re-apply).
    #[serde(default)]
    pub on_drift: OnDrift,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            waves: Waves::default(),
            max_failures: MaxFailures::default(),
            soak: DEFAULT_SOAK,
            on_drift: OnDrift::default(),
        }
    }
}
