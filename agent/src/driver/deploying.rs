//! The session's side of the stack worker ([`crate::deploy`]): hand it the states the hub
//! orders, and tell the session and the hub what it applied, from the state it was in when the
//! session began (which may have ended while the device was offline).

use std::sync::Arc;

use outpost_protocol::agent_session::AgentSession;
use outpost_protocol::wire::AgentMessage;
use tokio::sync::watch;

use super::outbox::{Backlog, Outbox};
use crate::deploy::{DeployStatus, Deployer};

/// The stack worker as one session sees it.
#[derive(Debug)]
pub(super) struct Deploying {
    pub(super) deployer: Arc<Deployer>,
    status: watch::Receiver<DeployStatus>,
}

impl Deploying {
    /// Start watching the worker: the session learns what is applied, and the hub at once how
    /// the last state ended.
    pub(super) fn open(
        deployer: Arc<Deployer>,
        session: &mut AgentSession,
        outbox: &mut Outbox,
    ) -> Result<Self, Backlog> {
        let mut status = deployer.status();
        let now = status.borrow_and_update().clone();
        session.set_applied(now.applied);
        if let Some(report) = now.report {
            outbox.push(&AgentMessage::StackStatus(report))?;
        }
        Ok(Self { deployer, status })
    }
}

/// The worker's next status, or never without a worker (or once it has stopped).
pub(super) async fn next_status(deploying: &mut Option<Deploying>) -> DeployStatus {
    if let Some(d) = deploying {
        if d.status.changed().await.is_ok() {
            return d.status.borrow_and_update().clone();
        }
    }
    std::future::pending().await
}
