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
//! - **Not back yet.** A redial within the spread that nothing answers (the old hub still draining,
//!   the new one not started) gives up at once ([`Outcome::Unanswered`]) and draws again from the
//!   same spread, up to [`UNANSWERED_REDRAWS`] times. Waiting instead would retransmit its first
//!   packet into the new hub the moment it starts, together with every other agent whose moment
//!   fell while no hub was there: with the hub down for a second, a fifth of a 200-agent fleet
//!   arrived within 0.6 s of its start, 12 in one 100 ms (fair share 4; `reconnect_spread` test).

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
    /// Nothing answered the dial (only a dial told to give up on silence, after a restart notice,
    /// ends this way).
    Unanswered,
    /// Retrying cannot succeed: stop with this reason.
    Final(E),
}

/// How often a restarting hub's agent draws a new moment from its spread when nothing answered,
/// before it dials as after any failure (waiting for an answer, then backing off): a hub that
/// stays down longer than three spreads is down, not restarting.
pub const UNANSWERED_REDRAWS: u32 = 3;

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
    /// The spread of the last restart notice and the redraws left, while its hub is not back.
    restart: Option<(Duration, u32)>,
}

impl Reconnect {
    /// Back off with `backoff`; a session that lasted `stable_after` resets it.
    pub fn new(backoff: Backoff, stable_after: Duration) -> Self {
        Self {
            backoff,
            stable_after,
            restart: None,
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
            Outcome::HubStopping { spread } => {
                self.restart = Some((spread, UNANSWERED_REDRAWS));
                Next::Retry(uniform_up_to(spread, rng))
            }
            Outcome::Unanswered => match &mut self.restart {
                Some((spread, redraws)) if *redraws > 0 => {
                    *redraws -= 1;
                    Next::Retry(uniform_up_to(*spread, rng))
                }
                _ => self.back_off(rng),
            },
            Outcome::Lost => self.back_off(rng),
        }
    }

    fn back_off<E>(&mut self, rng: &mut impl Rng) -> Next<E> {
        self.restart = None;
        Next::Retry(self.backoff.next_delay(rng))
    }

    /// Whether the next dial should give up when nothing answers it ([`Outcome::Unanswered`]): it
    /// is a redial within a restart notice's spread, with redraws left.
    pub fn give_up_unanswered(&self) -> bool {
        self.restart.is_some_and(|(_, redraws)| redraws > 0)
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
