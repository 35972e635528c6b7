//! What a session accepts of the job messages (version 4), without I/O.
//!
//! An agent announces once per session that it runs jobs; only then may it send job messages,
//! each result within [`JobResult::check`]'s bounds. An agent keeps up to 1,000 unacknowledged
//! results and sends them all when a session starts, so a session may send [`JOB_BURST`] messages
//! back to back and one per [`JOB_PERIOD`] after — each costs a store write at most, batched by
//! the tick. Past that, or on a malformed result, the session is closed as a protocol violation;
//! the agent keeps its results and sends them again.
//!
//! Agents that never announce (older ones, the load tool) cost the session one empty `Option`.

use std::time::Duration;

use outpost_protocol::job::{Features, JobResult, JobResultError};
use thiserror::Error;
use tokio::time::Instant;

use super::snapshots::TokenBucket;

/// Job messages a session may send back to back: an agent's whole journal of held results
/// (1,000) and a few starts.
pub const JOB_BURST: u32 = 1_100;
/// One more job message per this long.
pub const JOB_PERIOD: Duration = Duration::from_millis(50);

/// Why a job message ends the session.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum JobRefused {
    /// A job message before the agent announced that it runs jobs.
    #[error("a job message from an agent that did not announce jobs")]
    NotAnnounced,
    /// A second announcement on one session.
    #[error("features announced twice on one session")]
    AnnouncedTwice,
    /// More than [`JOB_BURST`] plus one per [`JOB_PERIOD`].
    #[error("job messages faster than {JOB_BURST} at once and one per {JOB_PERIOD:?}")]
    OverRate,
    /// A result outside the bounds.
    #[error(transparent)]
    Result(#[from] JobResultError),
}

/// One session's job allowance; `None` until the agent announces jobs.
#[derive(Debug, Default)]
pub struct JobGate(Option<Box<Announced>>);

#[derive(Debug)]
struct Announced {
    features: Features,
    bucket: TokenBucket,
}

impl JobGate {
    /// The agent announced `features` at `now`: whether it runs jobs.
    pub fn announce(&mut self, now: Instant, features: Features) -> Result<bool, JobRefused> {
        if self.0.is_some() {
            return Err(JobRefused::AnnouncedTwice);
        }
        let bucket = TokenBucket::new(JOB_BURST, JOB_PERIOD, JOB_BURST, now);
        self.0 = Some(Box::new(Announced { features, bucket }));
        Ok(features.contains(Features::JOBS))
    }

    /// What the agent announced; nothing before it does.
    pub fn features(&self) -> Features {
        self.0
            .as_ref()
            .map_or_else(Features::default, |a| a.features)
    }

    /// Whether the agent announced that it runs jobs.
    pub fn runs_jobs(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|a| a.features.contains(Features::JOBS))
    }

    /// Whether a job message arriving at `now` (with its result, if it is one) may be kept.
    pub fn admit(&mut self, now: Instant, result: Option<&JobResult>) -> Result<(), JobRefused> {
        let announced = self
            .0
            .as_mut()
            .filter(|a| a.features.contains(Features::JOBS))
            .ok_or(JobRefused::NotAnnounced)?;
        if let Some(result) = result {
            result.check()?;
        }
        if announced.bucket.take(now) {
            Ok(())
        } else {
            Err(JobRefused::OverRate)
        }
    }
}

#[cfg(test)]
mod tests {
    use outpost_protocol::job::{JobOutcome, OutputCapture, MAX_OUTPUT_PART};

    use super::*;

    fn result() -> JobResult {
        OutputCapture::default().finish(1, JobOutcome::Exited(0), 5)
    }

    #[test]
    fn job_messages_need_the_announcement_first() {
        let now = Instant::now();
        let mut gate = JobGate::default();
        assert_eq!(gate.admit(now, None), Err(JobRefused::NotAnnounced));
        assert_eq!(gate.announce(now, Features::default()), Ok(false));
        assert_eq!(
            gate.admit(now, Some(&result())),
            Err(JobRefused::NotAnnounced),
            "announced, but not jobs"
        );
        let mut gate = JobGate::default();
        assert_eq!(gate.announce(now, Features::JOBS), Ok(true));
        assert_eq!(gate.admit(now, Some(&result())), Ok(()));
        assert_eq!(
            gate.announce(now, Features::JOBS),
            Err(JobRefused::AnnouncedTwice)
        );
    }

    #[test]
    fn a_whole_journal_passes_at_once_and_a_flood_does_not() {
        let start = Instant::now();
        let mut gate = JobGate::default();
        gate.announce(start, Features::JOBS).unwrap();
        for _ in 0..JOB_BURST {
            gate.admit(start, Some(&result())).unwrap();
        }
        assert_eq!(gate.admit(start, None), Err(JobRefused::OverRate));
        assert_eq!(gate.admit(start + JOB_PERIOD, None), Ok(()));
    }

    #[test]
    fn a_result_out_of_bounds_is_refused() {
        let now = Instant::now();
        let mut gate = JobGate::default();
        gate.announce(now, Features::JOBS).unwrap();
        let forged = JobResult {
            head: vec![0; MAX_OUTPUT_PART + 1],
            output_bytes: u64::MAX,
            ..result()
        };
        assert!(matches!(
            gate.admit(now, Some(&forged)),
            Err(JobRefused::Result(_))
        ));
    }
}
