//! The session's side of jobs ([`crate::job`]): hand the runner what the hub orders and
//! acknowledges, and queue what the runner has for the hub (the session announces the feature,
//! [`features`]).
//!
//! The runner's messages join the outbox only while fewer than [`JOB_ROOM`] frames wait: a
//! session that starts with a thousand held results sends them as the hub reads them, while a
//! summon's `Ready` still finds room, and the outbox never fills on jobs alone.

use outpost_protocol::job::Features;
use outpost_protocol::wire::AgentMessage;

use super::outbox::{Outbox, JOB_ROOM};
use crate::job::{JobMail, JobRunner};

/// The runner as one session sees it.
#[derive(Debug)]
pub(super) struct Jobs {
    pub(super) runner: JobRunner,
    mail: JobMail,
}

impl Jobs {
    /// Start carrying the runner's messages, the results it holds first.
    pub(super) fn open(runner: JobRunner) -> Self {
        let mail = runner.attach();
        Self { runner, mail }
    }
}

/// What this agent announces once per session: long check-in intervals and the fleet's hub
/// addresses mid-session always (`QUIET`, `HUB_ADDRS`), drift
/// policies when it applies stacks, jobs when it runs them, a loopback registry (with deferrals
/// and the refusal of an image not ordered onto the device) when it serves one, image pulls when
/// it does both. A version-3 hub closes a session that announces anything: upgrade hubs before
/// agents, as since version 4.
pub(super) fn features(deploys: bool, runs_jobs: bool, registry: bool) -> Features {
    let mut features = Features::QUIET.with(Features::HUB_ADDRS);
    if registry {
        features = features
            .with(Features::REGISTRY)
            .with(Features::DEFERRAL)
            .with(Features::FETCH_FORBIDDEN);
    }
    if deploys {
        features = features.with(Features::DRIFT_REPORT);
    }
    if runs_jobs {
        features = features.with(Features::JOBS);
    }
    if runs_jobs && registry {
        features = features.with(Features::IMAGE_PULL);
    }
    features
}

/// The runner's next message for the hub; never without a runner.
pub(super) async fn next_message(jobs: &mut Option<Jobs>) -> AgentMessage {
    if let Some(jobs) = jobs {
        if let Some(message) = jobs.mail.recv().await {
            return message;
        }
    }
    std::future::pending().await
}

/// Whether the outbox has room for a job message.
pub(super) fn room(outbox: &Outbox) -> bool {
    outbox.len() < JOB_ROOM
}
