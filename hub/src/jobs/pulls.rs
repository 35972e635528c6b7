//! Image pulls as jobs (`outpost-hub image pull`, issue #16 item 3): which agents can run one, and
//! how far each device's pull has come.
//!
//! A pull job is a job like any other — queued for offline devices, at most `concurrency` at
//! once, its result stored — with two additions. It goes only to agents that announced
//! [`Features::IMAGE_PULL`](outpost_protocol::job::Features::IMAGE_PULL) (an older agent could not
//! decode it): another device is given a failed result at once, saying to upgrade its agent. And
//! while it runs the agent reports bytes done over bytes known at most once a second; the last
//! report of each device is kept in memory for `job show` until the job finishes (a restarted hub
//! hears the next one within a second), bounded by [`MAX_PROGRESS`] devices. The result itself
//! says how many bytes were downloaded, and is stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use outpost_api::PullProgress;
use outpost_protocol::job::{JobOutcome, JobProgress, JobResult, JobSpec, OutputCapture};
use outpost_protocol::EndpointId;

/// Devices whose pull progress is kept at once (a few dozen bytes each).
pub const MAX_PROGRESS: usize = 100_000;

/// Why a device is not sent a pull job.
const TOO_OLD: &str = "this device's agent does not pull images for jobs (it announces no \
                       image-pull feature): upgrade the agent, and run it with its loopback registry";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Agents that run pull jobs, and the pulls' progress.
#[derive(Debug, Default)]
pub struct Pulls {
    capable: Mutex<HashSet<EndpointId>>,
    progress: Mutex<HashMap<(u64, EndpointId), PullProgress>>,
}

impl Pulls {
    /// The device's session announced that its agent runs pull jobs.
    pub fn capable(&self, endpoint: EndpointId) {
        lock(&self.capable).insert(endpoint);
    }

    /// The device's session ended.
    pub fn gone(&self, endpoint: EndpointId) {
        lock(&self.capable).remove(&endpoint);
    }

    /// Whether the device's live session runs pull jobs.
    pub fn can_pull(&self, endpoint: EndpointId) -> bool {
        lock(&self.capable).contains(&endpoint)
    }

    /// The device's latest report on a job in progress.
    pub fn record(&self, endpoint: EndpointId, report: JobProgress) {
        let mut progress = lock(&self.progress);
        let key = (report.id, endpoint);
        if progress.len() >= MAX_PROGRESS && !progress.contains_key(&key) {
            return;
        }
        let seen = PullProgress {
            done: report.done,
            total: report.total,
            deferred: report.deferred,
        };
        progress.insert(key, seen);
    }

    /// The device's latest report on job `job`.
    pub fn of(&self, job: i64, endpoint: EndpointId) -> Option<PullProgress> {
        lock(&self.progress).get(&(job as u64, endpoint)).copied()
    }

    /// Job `job` finished: its reports go.
    pub fn forget(&self, job: i64) {
        lock(&self.progress).retain(|(id, _), _| *id != job as u64);
    }
}

impl super::Jobs {
    /// The device's session announced that its agent runs pull jobs.
    pub fn pulls_images(&self, endpoint: EndpointId) {
        self.pulls.capable(endpoint);
    }

    /// How far the device's pull job has come (kept while the job is open).
    pub fn progress(&self, endpoint: EndpointId, report: JobProgress) {
        if self.knows(report.id as i64) {
            self.pulls.record(endpoint, report);
        }
    }

    /// Whether the device's agent can run job `id`: any job but a pull, which needs
    /// [`Features::IMAGE_PULL`](outpost_protocol::job::Features::IMAGE_PULL).
    pub(super) fn can_run(&self, id: i64, endpoint: EndpointId) -> bool {
        let pulls = self
            .terms(id)
            .is_some_and(|terms| matches!(terms.spec, JobSpec::PullImage { .. }));
        !pulls || self.pulls.can_pull(endpoint)
    }
}

/// The result of a pull job for a device whose agent cannot run one.
pub fn too_old(id: u64) -> JobResult {
    OutputCapture::default().finish(id, JobOutcome::Failed(TOO_OLD.to_owned()), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_kept_per_device_until_the_job_finishes() {
        let pulls = Pulls::default();
        let (a, b) = (EndpointId(1), EndpointId(2));
        pulls.record(
            a,
            JobProgress {
                id: 7,
                done: 10,
                total: 100,
                deferred: None,
            },
        );
        pulls.record(
            a,
            JobProgress {
                id: 7,
                done: 60,
                total: 120,
                deferred: None,
            },
        );
        pulls.record(
            b,
            JobProgress {
                id: 7,
                done: 5,
                total: 100,
                deferred: None,
            },
        );
        assert_eq!(
            pulls.of(7, a),
            Some(PullProgress {
                done: 60,
                total: 120,
                deferred: None,
            })
        );
        assert_eq!(pulls.of(7, b).map(|p| p.done), Some(5));
        assert_eq!(pulls.of(8, a), None);
        pulls.forget(7);
        assert_eq!(pulls.of(7, a), None);
    }

    #[test]
    fn progress_is_bounded_and_capability_follows_the_session() {
        let pulls = Pulls::default();
        for n in 0..=MAX_PROGRESS as u64 {
            pulls.record(
                EndpointId(n),
                JobProgress {
                    id: 1,
                    done: 0,
                    total: 0,
                    deferred: None,
                },
            );
        }
        assert_eq!(lock(&pulls.progress).len(), MAX_PROGRESS);
        pulls.capable(EndpointId(3));
        assert!(pulls.can_pull(EndpointId(3)));
        pulls.gone(EndpointId(3));
        assert!(!pulls.can_pull(EndpointId(3)));
        assert!(matches!(too_old(4).outcome, JobOutcome::Failed(r) if r.contains("upgrade")));
    }
}
