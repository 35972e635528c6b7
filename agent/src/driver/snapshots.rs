//! Engine snapshots for the session: taken on a task of their own and handed back to the driver
//! to send, so a slow engine never stalls check-ins.

use outpost_protocol::snapshot::EngineSnapshot;
use tokio::sync::mpsc;

use crate::docker_host::DockerHost;
use crate::snapshot;

/// Engine snapshots are taken off the driver (a slow engine must not stall check-ins) and handed
/// back through a channel to be sent on the control stream. The session paces them
/// ([`AgentEvent::TakeSnapshot`](outpost_protocol::agent_session::AgentEvent::TakeSnapshot)); [`snapshot::take`] trims each to the hub's budget.
#[derive(Debug)]
pub(super) struct Snapshots {
    pub(super) docker: DockerHost,
    taken: mpsc::Sender<EngineSnapshot>,
    pub(super) ready: mpsc::Receiver<EngineSnapshot>,
}

impl Snapshots {
    pub(super) fn new(docker: DockerHost) -> Self {
        let (taken, ready) = mpsc::channel(1);
        Self {
            docker,
            taken,
            ready,
        }
    }

    pub(super) fn take(&self) {
        let docker = self.docker.clone();
        let taken = self.taken.clone();
        tokio::spawn(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default();
            let _ = taken.send(snapshot::take_from(&docker, now).await).await;
        });
    }
}
