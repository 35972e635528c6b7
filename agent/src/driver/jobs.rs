//! The session's side of jobs ([`crate::job`]): announce them, hand the runner what the hub
//! orders and acknowledges, and queue what the runner has for the hub.
//!
//! The runner's messages join the outbox only while fewer than [`JOB_ROOM`] frames wait: a
//! session that starts with a thousand held results sends them as the hub reads them, while a
//! summon's `Ready` still finds room, and the outbox never fills on jobs alone.

use outpost_protocol::job::Features;
use outpost_protocol::wire::AgentMessage;

use super::outbox::{Backlog, Outbox, JOB_ROOM};
use crate::job::{JobMail, JobRunner};

/// The runner as one session sees it.
#[derive(Debug)]
pub(super) struct Jobs {
    pub(super) runner: JobRunner,
    mail: JobMail,
}

impl Jobs {
    /// Announce [`Features::JOBS`] and start carrying the runner's messages, the results it
    /// holds first.
    pub(super) fn open(runner: JobRunner, outbox: &mut Outbox) -> Result<Self, Backlog> {
        outbox.push(&AgentMessage::Features(Features::JOBS))?;
        let mail = runner.attach();
        Ok(Self { runner, mail })
    }
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
