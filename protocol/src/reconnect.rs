//! When the agent dials the hub again, as a plain decision: how the last attempt ended and how long
//! its session lasted go in, a delay or a reason to stop comes out. The agent's loop only sleeps and
//! dials.
//!
//! The rules:
//! - **Final or retryable.** A failure retrying cannot cure (a revocation, a refused enrolment, a hub
//!   that is not itself any more) stops the agent with its reason; a lost session or an unreachable
//!   hub never does.
//! - **Backoff for failures**, with full jitter ([`Backoff`]): a fleet that lost its hub at the same
//!   instant spreads over the window instead of knocking in the same second.
//! - **Reset after a stable session.** A session that lasted `stable_after` proves the path works,
//!   so one flap after a day online starts again from the base instead of the cap.
//! - **Restart spread.** A stopping hub's [`RestartNotice`](crate::wire::RestartNotice) sizes the
//!   window its fleet should come back in (fleet size / the rate a hub sets sessions up); the agent
//!   redials at a moment drawn uniformly from it. That was no failure: the backoff does not grow.

use std::time::Duration;

use rand::Rng;

use crate::backoff::Backoff;

/// How an attempt to reach the hub ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<E> {
    /// The hub was unreachable, or the session was lost or ended: worth retrying.
    Lost,
    /// The hub is stopping and asked to be redialled at a random moment within `spread`.
    HubStopping {
        /// The window the moment is drawn from.
        spread: Duration,
    },
    /// Retrying cannot succeed: stop with this reason.
    Final(E),
}

/// What the agent does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next<E> {
    /// Dial again after this delay.
    Retry(Duration),
    /// Stop for good.
    Stop(E),
}

/// The reconnect policy of one agent.
#[derive(Clone, Debug)]
pub struct Reconnect {
    backoff: Backoff,
    stable_after: Duration,
}

impl Reconnect {
    /// Back off with `backoff`; a session that lasted `stable_after` resets it.
    pub fn new(backoff: Backoff, stable_after: Duration) -> Self {
        Self {
            backoff,
            stable_after,
        }
    }

    /// What to do after `outcome`, whose session (if any) lasted `lasted`.
    pub fn after<E>(
        &mut self,
        outcome: Outcome<E>,
        lasted: Duration,
        rng: &mut impl Rng,
    ) -> Next<E> {
        if lasted >= self.stable_after {
            self.backoff.reset();
        }
        match outcome {
            Outcome::Final(reason) => Next::Stop(reason),
            Outcome::HubStopping { spread } => Next::Retry(uniform_up_to(spread, rng)),
            Outcome::Lost => Next::Retry(self.backoff.next_delay(rng)),
        }
    }

    /// The attempt succeeded for good (an enrolment was accepted): start again from the base.
    pub fn succeeded(&mut self) {
        self.backoff.reset();
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }
}

/// A moment drawn uniformly from `[0, spread]`.
fn uniform_up_to(spread: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests;
